import uuid
from typing import Any, Protocol

import sqlalchemy.exc
from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import utcnow, violated_constraint
from server.workspaces.exceptions import WorkspaceNameTakenException
from server.workspaces.models import Workspace, WorkspaceStatus

_NAME_INDEX = "uq_workspaces_live_name"


class IWorkspaceRepository(Protocol):
    async def add(self, *, name: str, status: WorkspaceStatus) -> Workspace: ...
    async def get(self, workspace_id: uuid.UUID) -> Workspace | None: ...
    async def list(self, *, status: WorkspaceStatus | None, after: uuid.UUID | None, limit: int) -> list[Workspace]: ...
    async def update(
        self, workspace_id: uuid.UUID, *, expected_version: int | None, values: dict[str, Any]
    ) -> Workspace | None: ...


class WorkspaceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, *, name: str, status: WorkspaceStatus) -> Workspace:
        workspace = Workspace(name=name, status=status)
        self._session.add(workspace)
        try:
            await self._session.flush()
        except sqlalchemy.exc.IntegrityError as error:
            if violated_constraint(error) == _NAME_INDEX:
                raise WorkspaceNameTakenException(name) from None
            raise
        return workspace

    async def get(self, workspace_id: uuid.UUID) -> Workspace | None:
        return await self._session.get(Workspace, workspace_id)

    async def list(self, *, status: WorkspaceStatus | None, after: uuid.UUID | None, limit: int) -> list[Workspace]:
        """`limit` rows after `after` in id (= creation) order; ids are UUIDv7."""
        statement: Select[Workspace] = select(Workspace).order_by(Workspace.id).limit(limit)
        if status is not None:
            statement = statement.where(Workspace.status == status)
        if after is not None:
            statement = statement.where(Workspace.id > after)
        return list(await self._session.scalars(statement))

    async def update(
        self, workspace_id: uuid.UUID, *, expected_version: int | None, values: dict[str, Any]
    ) -> Workspace | None:
        """Apply `values` to a live workspace at `expected_version` (any when None).

        None when no row matched: the workspace is missing, archived or at another version.
        """
        statement = (
            update(Workspace)
            .where(Workspace.id == workspace_id, Workspace.status != WorkspaceStatus.ARCHIVED)
            .values(**values, version=Workspace.version + 1, updated_at=utcnow())
            .returning(Workspace)
            .execution_options(populate_existing=True)
        )
        if expected_version is not None:
            statement = statement.where(Workspace.version == expected_version)
        try:
            return (await self._session.scalars(statement)).one_or_none()
        except sqlalchemy.exc.IntegrityError as error:
            if violated_constraint(error) == _NAME_INDEX:
                raise WorkspaceNameTakenException(str(values.get("name"))) from None
            raise
