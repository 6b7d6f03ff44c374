"""Every statement over `audit_logs`: inserts (one, or many in one executemany) and the keyset-paged
list, newest first.
"""

import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Select, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit_logs.models import AuditLog
from server.audit_logs.schemas import AuditLogListRequestSchema
from server.db import new_id, utcnow
from server.read_pool import DirectTransaction, PreparedRead

_COLUMNS = (
    "id",
    "actor_type",
    "actor_id",
    "workspace_id",
    "entity_type",
    "entity_id",
    "action",
    "before",
    "after",
    "trace_id",
    "created_at",
)
_ADD_PREPARED = PreparedRead(insert(AuditLog).values({name: bindparam(name) for name in _COLUMNS}))


class IAuditLogRepository(Protocol):
    async def add_many(self, rows: Sequence[dict[str, Any]]) -> None: ...
    async def list_entries(
        self, query: AuditLogListRequestSchema, *, before: uuid.UUID | None, limit: int
    ) -> list[AuditLog]: ...


class AuditLogRepository:
    def __init__(self, session: AsyncSession, *, direct: DirectTransaction | None = None) -> None:
        self._session = session
        # A unit of work on asyncpg directly: the statements that have a direct form run there.
        self._direct = direct

    async def add_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Entries (dicts of AuditLog columns, without `id`) in one executemany INSERT, in order: the
        ids are UUIDv7 given here, so list order (id order) is the order of `rows`. No rows, no SQL."""
        if not rows:
            return
        if self._direct is not None:
            now = utcnow()
            entries = [{**row, "id": new_id(), "created_at": now} for row in rows]
            if len(entries) == 1:
                await self._direct.execute(_ADD_PREPARED, entries[0])
            else:
                await self._direct.execute_many(_ADD_PREPARED, entries)
            return
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
