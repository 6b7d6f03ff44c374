"""Every statement over `exports`: reads narrowed to the caller's workspace, pages, and the upsert of
a day's export under a lock per workspace and day.
"""

import datetime as dt
import uuid
from typing import Protocol

from sqlalchemy import Select, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import first_id_at, new_id, utcnow
from server.exports.models import Export
from server.exports.schemas import ExportListRequestSchema
from server.tenancy import TenantScope, WorkspaceScope, conflicts, narrowed


class IExportRepository(Protocol):
    async def get(self, export_id: uuid.UUID, *, scope: TenantScope) -> Export | None: ...
    async def list_exports(
        self,
        query: ExportListRequestSchema,
        *,
        scope: TenantScope,
        before: uuid.UUID | None,
        limit: int,
        made_since: dt.datetime | None = None,
    ) -> list[Export]: ...
    async def lock_expired(self, *, made_before: dt.datetime, limit: int) -> list[Export]: ...
    async def delete(self, export_ids: list[uuid.UUID]) -> None: ...
    async def lock_workspace_day(self, workspace_id: uuid.UUID, day: dt.date) -> None: ...
    async def get_for_day(self, workspace_id: uuid.UUID, day: dt.date) -> Export | None: ...
    async def upsert(
        self, *, workspace_id: uuid.UUID, export_date: dt.date, object_key: str, row_count: int, size_bytes: int
    ) -> Export: ...


class ExportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def _readable(self, scope: TenantScope) -> Select[Export]:
        """Every query of exports starts here: narrowed to what `scope` may see."""
        return narrowed(select(Export), Export.workspace_id, scope)

    async def get(self, export_id: uuid.UUID, *, scope: TenantScope) -> Export | None:
        """The export, or None when it does not exist or is outside `scope`."""
        return await self._session.scalar(self._readable(scope).where(Export.id == export_id))

    async def list_exports(
        self,
        query: ExportListRequestSchema,
        *,
        scope: TenantScope,
        before: uuid.UUID | None,
        limit: int,
        made_since: dt.datetime | None = None,
    ) -> list[Export]:
        """`limit` exports of `scope` before `before`, newest first (ids are UUIDv7: id order is
        creation order), made at `made_since` or later; `query.workspace_id` narrows further (a
        staff filter)."""
        if conflicts(scope, query.workspace_id):
            return []
        statement = self._readable(scope)
        if made_since is not None:
            statement = statement.where(Export.created_at >= made_since)
        if query.workspace_id is not None:
            statement = statement.where(Export.workspace_id == query.workspace_id)
        statement = statement.order_by(Export.id.desc()).limit(limit)
        if before is not None:
            statement = statement.where(Export.id < before)
        return list(await self._session.scalars(statement))

    async def lock_expired(self, *, made_before: dt.datetime, limit: int) -> list[Export]:
        """Up to `limit` exports made before `made_before`, oldest first, locked until the transaction
        ends (a range of the primary key: ids are UUIDv7); exports locked elsewhere are skipped."""
        statement = (
            select(Export)
            .where(Export.id < first_id_at(made_before), Export.created_at < made_before)
            .order_by(Export.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(await self._session.scalars(statement))

    async def delete(self, export_ids: list[uuid.UUID]) -> None:
        if export_ids:
            await self._session.execute(delete(Export).where(Export.id.in_(export_ids)))

    async def lock_workspace_day(self, workspace_id: uuid.UUID, day: dt.date) -> None:
        """Hold a transaction-scoped advisory lock on (workspace, day) until commit or rollback.

        A row lock cannot serve: the first export of a day has no row yet to lock.
        """
        key = f"exports:{workspace_id}:{day.isoformat()}"
        await self._session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))

    async def get_for_day(self, workspace_id: uuid.UUID, day: dt.date) -> Export | None:
        statement = self._readable(WorkspaceScope(workspace_id)).where(Export.export_date == day)
        return await self._session.scalar(statement)

    async def upsert(
        self, *, workspace_id: uuid.UUID, export_date: dt.date, object_key: str, row_count: int, size_bytes: int
    ) -> Export:
        """Insert the workspace's export of the day, or update the one it has (same id, same
        created_at): one statement, so a concurrent insert cannot turn into a duplicate."""
        statement = insert(Export).values(
            id=new_id(),
            workspace_id=workspace_id,
            export_date=export_date,
            object_key=object_key,
            row_count=row_count,
            size_bytes=size_bytes,
            created_at=utcnow(),
        )
        statement = statement.on_conflict_do_update(
            index_elements=[Export.workspace_id, Export.export_date],
            set_={
                "object_key": statement.excluded.object_key,
                "row_count": statement.excluded.row_count,
                "size_bytes": statement.excluded.size_bytes,
            },
        )
        returning = statement.returning(Export).execution_options(populate_existing=True)
        return (await self._session.scalars(returning)).one()
