"""Every statement over `audit_logs`: inserts (one, or many in one executemany) and the keyset-paged
list, newest first.
"""

import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Select, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit_logs.models import AuditLog
from server.audit_logs.schemas import AuditLogListRequestSchema
from server.db import new_id


class IAuditLogRepository(Protocol):
    async def add_many(self, rows: Sequence[dict[str, Any]]) -> None: ...
    async def list_entries(
        self, query: AuditLogListRequestSchema, *, before: uuid.UUID | None, limit: int
    ) -> list[AuditLog]: ...


class AuditLogRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Entries (dicts of AuditLog columns, without `id`) in one executemany INSERT, in order: the
        ids are UUIDv7 given here, so list order (id order) is the order of `rows`. No rows, no SQL."""
        if rows:
            await self._session.execute(insert(AuditLog), [{**row, "id": new_id()} for row in rows])

    async def list_entries(
        self, query: AuditLogListRequestSchema, *, before: uuid.UUID | None, limit: int
    ) -> list[AuditLog]:
        """Newest first (ids are UUIDv7, so id order is time order)."""
        statement: Select[AuditLog] = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
        if query.workspace_id is not None:
            statement = statement.where(AuditLog.workspace_id == query.workspace_id)
        if query.entity_type is not None:
            statement = statement.where(AuditLog.entity_type == query.entity_type)
        if query.entity_id is not None:
            statement = statement.where(AuditLog.entity_id == query.entity_id)
        if query.actor_id is not None:
            statement = statement.where(AuditLog.actor_id == query.actor_id)
        if query.start_time is not None:
            statement = statement.where(AuditLog.created_at >= query.start_time)
        if query.end_time is not None:
            statement = statement.where(AuditLog.created_at < query.end_time)
        if before is not None:
            statement = statement.where(AuditLog.id < before)
        return list(await self._session.scalars(statement))
