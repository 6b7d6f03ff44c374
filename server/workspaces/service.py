"""Workspaces and their members: staff create and manage workspaces; owners and admins manage
members (at least one owner stays). The workspaces module owns `workspaces` and `workspaces_users`;
users are asked of the users module, and a leaving member's ad account access of the accounts
module, through the Protocols below.
"""

import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from server.audit_logs.service import IAuditTrail
from server.auth.permissions import MEMBERS_MANAGE
from server.auth.principal import Principal
from server.auth.roles import WorkspaceRole
from server.etags import version_of
from server.idempotency.service import IdempotencyService
from server.outbox.repository import IOutbox
from server.pagination import Page, PageTokenCodec, paginate
from server.workspaces.exceptions import (
    LastOwnerException,
    MemberNotFoundException,
    MemberUserInactiveException,
    MemberUserNotFoundException,
    OwnerRequiredException,
    WorkspaceArchivedException,
    WorkspaceEtagMismatchException,
    WorkspaceNotFoundException,
)
from server.workspaces.models import Workspace, WorkspaceStatus, WorkspaceUser
from server.workspaces.repository import IWorkspaceMemberRepository, IWorkspaceRepository
from server.workspaces.schemas import (
    MemberAddRequestSchema,
    MemberListRequestSchema,
    MemberResponseSchema,
    MembershipResponseSchema,
    MemberUpdateRequestSchema,
    MyWorkspacesRequestSchema,
    WorkspaceCreateRequestSchema,
    WorkspaceListRequestSchema,
    WorkspaceResponseSchema,
    WorkspaceUpdateRequestSchema,
)

# Audit entity types of this module.
WORKSPACE = "workspace"
MEMBER = "workspace_member"


class UserState(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def email(self) -> str: ...
    @property
    def full_name(self) -> str: ...
    @property
    def is_active(self) -> bool: ...


class IUserLookup(Protocol):
    """What memberships need to know of users (the users module's repository)."""

    async def contacts(self, user_ids: Collection[uuid.UUID]) -> Sequence[UserState]: ...


class IMemberAccess(Protocol):
    """What a member has in the workspace beyond the membership: their ad account access, which the
    accounts module owns (wired in the composition root, so this module needs to know none of it)."""

    async def revoke_member_access(self, workspace_id: uuid.UUID, user_id: uuid.UUID, *, email: str) -> None:
        """Take it all away (audited, and on Meta through background work)."""
        ...


class IWorkspaceService(Protocol):
    async def create_workspace(
        self, data: WorkspaceCreateRequestSchema, *, actor: Principal | None = None, idempotency_key: str | None = None
    ) -> WorkspaceResponseSchema: ...
    async def get_workspace(self, workspace_id: uuid.UUID) -> WorkspaceResponseSchema: ...
    async def list_workspaces(self, query: WorkspaceListRequestSchema) -> Page[WorkspaceResponseSchema]: ...
    async def update_workspace(
        self, workspace_id: uuid.UUID, data: WorkspaceUpdateRequestSchema
    ) -> WorkspaceResponseSchema: ...
    async def delete_workspace(self, workspace_id: uuid.UUID, *, etag: str = "") -> WorkspaceResponseSchema: ...
    async def list_my_workspaces(
        self, user_id: uuid.UUID, query: MyWorkspacesRequestSchema
    ) -> Page[MembershipResponseSchema]: ...
    async def list_members(
        self, workspace_id: uuid.UUID, query: MemberListRequestSchema
    ) -> Page[MemberResponseSchema]: ...
    async def add_member(
        self, workspace_id: uuid.UUID, data: MemberAddRequestSchema, *, actor: Principal
    ) -> MemberResponseSchema: ...
    async def update_member(
        self, workspace_id: uuid.UUID, user_id: uuid.UUID, data: MemberUpdateRequestSchema, *, actor: Principal
    ) -> MemberResponseSchema: ...
    async def remove_member(self, workspace_id: uuid.UUID, user_id: uuid.UUID, *, actor: Principal) -> None: ...


class WorkspaceService:
    def __init__(
        self,
        *,
        repository: IWorkspaceRepository,
        members: IWorkspaceMemberRepository,
        member_access: IMemberAccess,
        users: IUserLookup,
        audit: IAuditTrail,
        outbox: IOutbox,
        idempotency: IdempotencyService,
        page_tokens: PageTokenCodec,
    ) -> None:
        self._audit = audit
        self._outbox = outbox
        self._repository = repository
        self._members = members
        self._member_access = member_access
        self._users = users
        self._idempotency = idempotency
        self._page_tokens = page_tokens

    async def create_workspace(
        self, data: WorkspaceCreateRequestSchema, *, actor: Principal | None = None, idempotency_key: str | None = None
    ) -> WorkspaceResponseSchema:
        """Create a workspace; a user who creates one becomes its first owner."""

        # Audited inside `create`: a replayed retry changes nothing, so it records nothing.
        async def create() -> tuple[uuid.UUID, WorkspaceResponseSchema]:
            workspace = await self._repository.add(name=data.name, status=data.status)
            created = _to_schema(workspace)
            await self._audit.record(
                entity_type=WORKSPACE, entity_id=workspace.id, action="create", workspace_id=workspace.id, after=created
            )
            if actor is not None and actor.user_id is not None:
                owner = await self._members.add(
                    workspace_id=workspace.id, user_id=actor.user_id, role=WorkspaceRole.OWNER
                )
                await self._audit.record(
                    entity_type=MEMBER,
                    entity_id=owner.user_id,
                    action="create",
                    workspace_id=workspace.id,
                    after=await self._member_schema(owner),
                )
            return workspace.id, created

        return await self._idempotency.run_once(
            scope="workspaces.create",
            caller=actor.id if actor is not None else None,
            idempotency_key=idempotency_key,
            payload=data,
            create=create,
            replay=self.get_workspace,
        )

    async def get_workspace(self, workspace_id: uuid.UUID) -> WorkspaceResponseSchema:
        return _to_schema(await self._get(workspace_id))

    async def list_workspaces(self, query: WorkspaceListRequestSchema) -> Page[WorkspaceResponseSchema]:
        return await self._page_tokens.page(
            query,
            "workspaces",
            fetch=lambda after, limit: self._repository.list(
                status=query.status,
                after=after,
                limit=limit,
            ),
            convert=_to_schema,
        )

    async def update_workspace(
        self, workspace_id: uuid.UUID, data: WorkspaceUpdateRequestSchema
    ) -> WorkspaceResponseSchema:
        values: dict[str, Any] = {field: getattr(data, field) for field in data.update_mask}
        expected = _version_of(data.etag, workspace_id)
        before = _to_schema(await self._locked(workspace_id))
        updated = await self._repository.update(workspace_id, expected_version=expected, values=values)
        if updated is None:
            raise await self._why_not_updatable(workspace_id)
        after = _to_schema(updated)
        await self._audit.record(
            entity_type=WORKSPACE,
            entity_id=workspace_id,
            action="update",
            workspace_id=workspace_id,
            before=before,
            after=after,
        )
        return after

    async def delete_workspace(self, workspace_id: uuid.UUID, *, etag: str = "") -> WorkspaceResponseSchema:
        """Archive the workspace; archiving an archived workspace returns it unchanged."""
        expected = _version_of(etag, workspace_id)
        before = _to_schema(await self._locked(workspace_id))
        archived = await self._repository.update(
            workspace_id, expected_version=expected, values={"status": WorkspaceStatus.ARCHIVED}
        )
        if archived is not None:
            after = _to_schema(archived)
            await self._audit.record(
                entity_type=WORKSPACE,
                entity_id=workspace_id,
                action="delete",
                workspace_id=workspace_id,
                before=before,
                after=after,
            )
            return after
        # Unchanged under the lock: `before` is the workspace as it is.
        if before.status is WorkspaceStatus.ARCHIVED and expected in (None, before.version):
            return before
        raise await self._why_not_updatable(workspace_id)

    async def list_my_workspaces(
        self, user_id: uuid.UUID, query: MyWorkspacesRequestSchema
    ) -> Page[MembershipResponseSchema]:
        # The user is part of the filters, so one user's page token is useless to another.
        return await self._page_tokens.page(
            query,
            "my_workspaces",
            filters={"user_id": str(user_id)},
            fetch=lambda after, limit: self._members.list_memberships(user_id, after=after, limit=limit),
            convert=lambda row: MembershipResponseSchema(workspace=_to_schema(row[0]), role=row[1]),
        )

    async def list_members(self, workspace_id: uuid.UUID, query: MemberListRequestSchema) -> Page[MemberResponseSchema]:
        await self._get(workspace_id)
        filters = {"workspace_id": str(workspace_id)}
        after = self._page_tokens.decode(query.page_token, collection="members", filters=filters)
        rows = await self._members.list_members(
            workspace_id,
            after=(dt.datetime.fromisoformat(after[0]), uuid.UUID(after[1])) if after else None,
            limit=query.limit + 1,
        )
        users = {user.id: user for user in await self._users.contacts([row.user_id for row in rows[: query.limit]])}
        return paginate(
            rows,
            convert=lambda member: _member_schema(member, users[member.user_id]),
            limit=query.limit,
            codec=self._page_tokens,
            collection="members",
            filters=filters,
            sort_key=lambda member: [member.created_at.isoformat(), str(member.user_id)],
        )

    async def add_member(
        self, workspace_id: uuid.UUID, data: MemberAddRequestSchema, *, actor: Principal
    ) -> MemberResponseSchema:
        if data.role is WorkspaceRole.OWNER:
            _require_owner(actor, workspace_id)
        await self._live_workspace(workspace_id)
        user = await self._user(data.user_id)
        if user is None:
            raise MemberUserNotFoundException(data.user_id)
        if not user.is_active:
            raise MemberUserInactiveException(data.user_id)
        added = _member_schema(
            await self._members.add(workspace_id=workspace_id, user_id=data.user_id, role=data.role), user
        )
        await self._audit.record(
            entity_type=MEMBER, entity_id=data.user_id, action="create", workspace_id=workspace_id, after=added
        )
        return added

    async def update_member(
        self, workspace_id: uuid.UUID, user_id: uuid.UUID, data: MemberUpdateRequestSchema, *, actor: Principal
    ) -> MemberResponseSchema:
        member = await self._locked_member(workspace_id, user_id)
        if WorkspaceRole.OWNER in (member.role, data.role) and member.role is not data.role:
            _require_owner(actor, workspace_id)
        if member.role is WorkspaceRole.OWNER and data.role is not WorkspaceRole.OWNER:
            await self._keep_an_owner(workspace_id)
        if member.role is data.role:
            return await self._member_schema(member)  # nothing changes, so nothing to audit
        # Snapshot first: set_role changes `member` in place.
        before = await self._member_schema(member)
        after = before.model_copy(update=_role_change(await self._members.set_role(member, data.role)))
        await self._audit.record(
            entity_type=MEMBER,
            entity_id=user_id,
            action="update",
            workspace_id=workspace_id,
            before=before,
            after=after,
        )
        return after

    async def remove_member(self, workspace_id: uuid.UUID, user_id: uuid.UUID, *, actor: Principal) -> None:
        """Remove the member and, in the same transaction, their access to the workspace's ad
        accounts: each access removed is audited and queued (`account_user.unassigned`) for the
        workers to take away on Meta, as UnassignAccountUser does."""
        member = await self._locked_member(workspace_id, user_id)
        if member.role is WorkspaceRole.OWNER:
            _require_owner(actor, workspace_id)
            await self._keep_an_owner(workspace_id)
        before = await self._member_schema(member)
        # The membership first: an assignment still in flight holds the member row (see
        # WorkspaceMemberRepository.get), so this waits for it and the access below includes it.
        await self._members.remove(member)
        await self._audit.record(
            entity_type=MEMBER, entity_id=user_id, action="delete", workspace_id=workspace_id, before=before
        )
        await self._member_access.revoke_member_access(workspace_id, user_id, email=before.email)

    async def _user(self, user_id: uuid.UUID) -> UserState | None:
        found = await self._users.contacts([user_id])
        return found[0] if found else None

    async def _member_schema(self, member: WorkspaceUser) -> MemberResponseSchema:
        user = await self._user(member.user_id)
        if user is None:  # pragma: no cover - a foreign key, and users are never deleted
            raise MemberUserNotFoundException(member.user_id)
        return _member_schema(member, user)

    async def _locked_member(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> WorkspaceUser:
        """The member, read after taking the workspace's lock: role changes of one workspace run one
        at a time, so the owner rules are checked against the role as it is, not as it was."""
        await self._members.lock_workspace(workspace_id)
        member = await self._members.get(workspace_id, user_id)
        if member is None:
            raise MemberNotFoundException(workspace_id, user_id)
        return member

    async def _locked(self, workspace_id: uuid.UUID) -> Workspace:
        """The workspace, read under its row lock: the audited `before` is then the state the
        update starts from, not one a concurrent update has since replaced."""
        workspace = await self._members.lock_workspace(workspace_id)
        if workspace is None:
            raise WorkspaceNotFoundException(workspace_id)
        return workspace

    async def _live_workspace(self, workspace_id: uuid.UUID) -> Workspace:
        workspace = await self._get(workspace_id)
        if workspace.status is WorkspaceStatus.ARCHIVED:
            raise WorkspaceArchivedException(workspace_id)
        return workspace

    async def _keep_an_owner(self, workspace_id: uuid.UUID) -> None:
        """Fail unless another owner stays (called under the workspace lock)."""
        if await self._members.count_owners(workspace_id) <= 1:
            raise LastOwnerException(workspace_id)

    async def _get(self, workspace_id: uuid.UUID) -> Workspace:
        workspace = await self._repository.get(workspace_id)
        if workspace is None:
            raise WorkspaceNotFoundException(workspace_id)
        return workspace

    async def _why_not_updatable(self, workspace_id: uuid.UUID) -> Exception:
        """The conditional update matched nothing: say whether it was missing, archived or stale."""
        workspace = await self._get(workspace_id)
        if workspace.status is WorkspaceStatus.ARCHIVED:
            return WorkspaceArchivedException(workspace_id)
        return WorkspaceEtagMismatchException(workspace_id)


def _to_schema(workspace: Workspace) -> WorkspaceResponseSchema:
    return WorkspaceResponseSchema.model_validate(workspace)


def _member_schema(member: WorkspaceUser, user: UserState) -> MemberResponseSchema:
    return MemberResponseSchema(
        workspace_id=member.workspace_id,
        user_id=member.user_id,
        email=user.email,
        full_name=user.full_name,
        role=member.role,
        created_at=member.created_at,
        updated_at=member.updated_at,
    )


def _role_change(member: WorkspaceUser) -> dict[str, Any]:
    return {"role": member.role, "updated_at": member.updated_at}


def _require_owner(actor: Principal, workspace_id: uuid.UUID) -> None:
    """Owner roles are granted, changed and removed by owners, or by staff managing members."""
    is_owner = actor.workspace_id == workspace_id and actor.workspace_role is WorkspaceRole.OWNER
    if not (is_owner or actor.has_system_permission(MEMBERS_MANAGE)):
        raise OwnerRequiredException()


def _version_of(etag: str, workspace_id: uuid.UUID) -> int | None:
    return version_of(etag, mismatch=lambda: WorkspaceEtagMismatchException(workspace_id))
