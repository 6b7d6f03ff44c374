"""Every statement over `workspaces` and `workspaces_users`: the workspace's row lock that serialises
owner changes, membership reads locked FOR KEY SHARE, and keyset pages of members and memberships.
"""

import datetime as dt
import uuid
from typing import Any, Protocol

import sqlalchemy.exc
from sqlalchemy import Select, bindparam, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.roles import WorkspaceRole
from server.db import utcnow, violated_constraint
from server.read_pool import DirectTransaction, PreparedRead
from server.workspaces.exceptions import AlreadyMemberException, WorkspaceNameTakenException
from server.workspaces.models import Workspace, WorkspaceStatus, WorkspaceUser

_NAME_INDEX = "uq_workspaces_live_name"
_STATUS_OF = select(Workspace.status).where(Workspace.id == bindparam("workspace_id"))
_STATUS_OF_PREPARED = PreparedRead(_STATUS_OF)


class IWorkspaceRepository(Protocol):
    async def add(self, *, name: str, status: WorkspaceStatus) -> Workspace: ...
    async def get(self, workspace_id: uuid.UUID) -> Workspace | None: ...
    async def status_of(self, workspace_id: uuid.UUID) -> WorkspaceStatus | None: ...
    async def list(self, *, status: WorkspaceStatus | None, after: uuid.UUID | None, limit: int) -> list[Workspace]: ...
    async def update(
        self, workspace_id: uuid.UUID, *, expected_version: int | None, values: dict[str, Any]
    ) -> Workspace | None: ...


class WorkspaceRepository:
    def __init__(self, session: AsyncSession, *, direct: DirectTransaction | None = None) -> None:
        self._session = session
        # A unit of work on asyncpg directly: the statements that have a direct form run there.
        self._direct = direct

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

    async def status_of(self, workspace_id: uuid.UUID) -> WorkspaceStatus | None:
        """The workspace's status; None when there is no such workspace. One column of one row:
        what a write checks before it adds to a workspace."""
        parameters = {"workspace_id": workspace_id}
        if self._direct is not None:
            row = await self._direct.one(_STATUS_OF_PREPARED, parameters)
            return None if row is None else WorkspaceStatus(row[0])
        status: WorkspaceStatus | None = await self._session.scalar(_STATUS_OF, parameters)
        return status

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
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        if expected_version is not None:
            statement = statement.where(Workspace.version == expected_version)
        try:
            return (await self._session.scalars(statement)).one_or_none()
        except sqlalchemy.exc.IntegrityError as error:
            if violated_constraint(error) == _NAME_INDEX:
                raise WorkspaceNameTakenException(str(values.get("name"))) from None
            raise


class IWorkspaceMemberRepository(Protocol):
    async def lock_workspace(self, workspace_id: uuid.UUID) -> Workspace | None: ...
    async def get(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> WorkspaceUser | None: ...
    async def add(self, *, workspace_id: uuid.UUID, user_id: uuid.UUID, role: WorkspaceRole) -> WorkspaceUser: ...
    async def set_role(self, member: WorkspaceUser, role: WorkspaceRole) -> WorkspaceUser: ...
    async def remove(self, member: WorkspaceUser) -> None: ...
    async def count_owners(self, workspace_id: uuid.UUID) -> int: ...
    async def list_members(
        self, workspace_id: uuid.UUID, *, after: tuple[dt.datetime, uuid.UUID] | None, limit: int
    ) -> list[WorkspaceUser]: ...
    async def list_memberships(
        self, user_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> list[tuple[Workspace, WorkspaceRole]]: ...


class WorkspaceMemberRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def lock_workspace(self, workspace_id: uuid.UUID) -> Workspace | None:
        """Lock the workspace row: owner changes are serialised per workspace, so two concurrent
        demotions cannot both see a second owner and leave none."""
        return await self._session.scalar(select(Workspace).where(Workspace.id == workspace_id).with_for_update())

    async def get(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> WorkspaceUser | None:
        """The membership, its row locked FOR KEY SHARE until the transaction ends.

        Whatever a caller grants on the strength of this membership (an ad account's access) is
        then seen by a concurrent removal of the member: the removal's DELETE waits for the caller
        to commit, and `remove_account_access`, which runs after it, takes that grant away too.
        The lock does not conflict with role changes (plain UPDATEs) nor with other readers.
        """
        return await self._session.get(
            WorkspaceUser,
            (workspace_id, user_id),
            with_for_update={"read": True, "key_share": True},
            populate_existing=True,
        )

    async def add(self, *, workspace_id: uuid.UUID, user_id: uuid.UUID, role: WorkspaceRole) -> WorkspaceUser:
        self._session.add(WorkspaceUser(workspace_id=workspace_id, user_id=user_id, role=role))
        try:
            await self._session.flush()
        except sqlalchemy.exc.IntegrityError as error:
            if violated_constraint(error) == "pk_workspaces_users":
                raise AlreadyMemberException(workspace_id, user_id) from None
            raise
        member = await self._session.get(WorkspaceUser, (workspace_id, user_id), populate_existing=True)
        assert member is not None
        return member

    async def set_role(self, member: WorkspaceUser, role: WorkspaceRole) -> WorkspaceUser:
        member.role = role
        await self._session.flush()
        return member

    async def remove(self, member: WorkspaceUser) -> None:
        await self._session.delete(member)
        await self._session.flush()

    async def count_owners(self, workspace_id: uuid.UUID) -> int:
        statement = select(func.count()).where(
            WorkspaceUser.workspace_id == workspace_id, WorkspaceUser.role == WorkspaceRole.OWNER
        )
        return int(await self._session.scalar(statement) or 0)

    async def list_members(
        self, workspace_id: uuid.UUID, *, after: tuple[dt.datetime, uuid.UUID] | None, limit: int
    ) -> list[WorkspaceUser]:
        """Members in joining order (created_at, user_id), users joined in the same query."""
        statement = (
            select(WorkspaceUser)
            .where(WorkspaceUser.workspace_id == workspace_id)
            .order_by(WorkspaceUser.created_at, WorkspaceUser.user_id)
            .limit(limit)
        )
        if after is not None:
            statement = statement.where(tuple_(WorkspaceUser.created_at, WorkspaceUser.user_id) > tuple_(*after))
        return list(await self._session.scalars(statement))

    async def list_memberships(
        self, user_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> list[tuple[Workspace, WorkspaceRole]]:
        """The user's live workspaces in id order, with the user's role in each."""
        statement = (
            select(Workspace, WorkspaceUser.role)
            .join(WorkspaceUser, WorkspaceUser.workspace_id == Workspace.id)
            .where(WorkspaceUser.user_id == user_id, Workspace.status != WorkspaceStatus.ARCHIVED)
            .order_by(Workspace.id)
            .limit(limit)
        )
        if after is not None:
            statement = statement.where(Workspace.id > after)
        return [(workspace, role) for workspace, role in (await self._session.execute(statement)).all()]
