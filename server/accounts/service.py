"""Ad accounts: what workspaces may do with their accounts (request one, request a spend-cap change,
give members access with Meta tasks) and what staff do to them (rename, archive, move to another
workspace). The accounts module owns `accounts` and `accounts_users`; accounts themselves are created
by the approved request's work (`request_work.py`), never by this service. Business managers, members,
users and pixel shares are asked of their owners through the Protocols below.
"""

import uuid
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from server.accounts.exceptions import (
    AccountAlreadyInWorkspaceException,
    AccountArchivedException,
    AccountEtagMismatchException,
    AccountInClientBusinessManagerException,
    AccountNotFoundException,
    AccountUserLimitException,
    AccountUserNotFoundException,
    BusinessManagerNotUsableException,
    NotAMemberException,
    SpendCapCurrencyMismatchException,
)
from server.accounts.models import MAX_USERS_PER_ACCOUNT, Account, AccountStatus, AccountUser, AccountUserTask
from server.accounts.repository import IAccountRepository, account_schema
from server.accounts.schemas import (
    AccountListRequestSchema,
    AccountMoveRequestSchema,
    AccountResponseSchema,
    AccountUpdateRequestSchema,
    AccountUserAssignRequestSchema,
    AccountUserResponseSchema,
)
from server.audit_logs.service import IAuditTrail
from server.auth.principal import Principal
from server.business_managers.models import BusinessManager, BusinessManagerOwnership
from server.etags import version_of
from server.outbox.repository import IOutbox
from server.pagination import Page, PageTokenCodec
from server.requests.schemas import AccountCreationPayload, RequestResponseSchema, SpendCapChangePayload
from server.requests.service import IRequestService
from server.tenancy import SYSTEM, TenantScope, WorkspaceScope
from server.workspaces.exceptions import WorkspaceNotActiveException, WorkspaceNotFoundException
from server.workspaces.models import WorkspaceStatus
from server.workspaces.repository import IWorkspaceMemberRepository, IWorkspaceRepository

ACCOUNT_ENTITY = "account"
ACCOUNT_USER_ENTITY = "account_user"
# Published by the outbox relay; the workers carry the change over to Meta.
ACCOUNT_USER_ASSIGNED_TOPIC = "account_user.assigned"
ACCOUNT_USER_UNASSIGNED_TOPIC = "account_user.unassigned"
ACCOUNT_MOVED_TOPIC = "account.moved"


class IBusinessManagerLookup(Protocol):
    """What account rules need to know of business managers (the business managers repository)."""

    async def get(self, business_manager_id: uuid.UUID) -> BusinessManager | None: ...

    async def is_usable(self, business_manager_id: uuid.UUID, *, workspace_id: uuid.UUID) -> bool:
        """An ACTIVE platform business manager, or an ACTIVE client one of the workspace (locked
        FOR KEY SHARE until the transaction ends)."""
        ...


class UserState(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def email(self) -> str: ...


class IUserLookup(Protocol):
    """The emails of users with access (the users module's repository)."""

    async def contacts(self, user_ids: Collection[uuid.UUID]) -> Sequence[UserState]: ...


class IAccountPixelShares(Protocol):
    """The pixels shared with an account (the pixels module owns them, wired in the composition root)."""

    async def unshare_account(self, account_id: uuid.UUID) -> list[uuid.UUID]:
        """Stop sharing every pixel with the account, here now and on Meta through background work;
        the ids of those pixels."""
        ...


class IAccountService(Protocol):
    async def request_account(
        self, workspace_id: uuid.UUID, payload: AccountCreationPayload, *, actor: Principal, idempotency_key: str | None
    ) -> RequestResponseSchema: ...
    async def list_workspace_accounts(
        self, workspace_id: uuid.UUID, query: AccountListRequestSchema
    ) -> Page[AccountResponseSchema]: ...
    async def get_account(self, account_id: uuid.UUID, *, workspace_id: uuid.UUID) -> AccountResponseSchema: ...
    async def request_spend_cap_change(
        self, workspace_id: uuid.UUID, payload: SpendCapChangePayload, *, actor: Principal, idempotency_key: str | None
    ) -> RequestResponseSchema: ...
    async def list_account_users(
        self, account_id: uuid.UUID, *, workspace_id: uuid.UUID
    ) -> list[AccountUserResponseSchema]: ...
    async def assign_account_user(
        self,
        account_id: uuid.UUID,
        user_id: uuid.UUID,
        data: AccountUserAssignRequestSchema,
        *,
        workspace_id: uuid.UUID,
    ) -> AccountUserResponseSchema: ...
    async def unassign_account_user(
        self, account_id: uuid.UUID, user_id: uuid.UUID, *, workspace_id: uuid.UUID
    ) -> None: ...
    async def revoke_member_access(self, workspace_id: uuid.UUID, user_id: uuid.UUID, *, email: str) -> None: ...
    async def list_accounts(self, query: AccountListRequestSchema) -> Page[AccountResponseSchema]: ...
    async def update_account(
        self, account_id: uuid.UUID, data: AccountUpdateRequestSchema
    ) -> AccountResponseSchema: ...
    async def move_account(self, account_id: uuid.UUID, data: AccountMoveRequestSchema) -> AccountResponseSchema: ...


class AccountService:
    """Ad accounts: workspaces request them and give their members access; staff manage them.

    Accounts themselves are created by the workers once an account request is approved; this
    service never inserts one.
    """

    def __init__(
        self,
        *,
        repository: IAccountRepository,
        business_managers: IBusinessManagerLookup,
        pixel_shares: IAccountPixelShares,
        members: IWorkspaceMemberRepository,
        users: IUserLookup,
        workspaces: IWorkspaceRepository,
        requests: IRequestService,
        audit: IAuditTrail,
        outbox: IOutbox,
        page_tokens: PageTokenCodec,
    ) -> None:
        self._repository = repository
        self._business_managers = business_managers
        self._pixel_shares = pixel_shares
        self._members = members
        self._users = users
        self._workspaces = workspaces
        self._requests = requests
        self._audit = audit
        self._outbox = outbox
        self._page_tokens = page_tokens

    # -- workspace RPCs ------------------------------------------------------------------------

    async def request_account(
        self, workspace_id: uuid.UUID, payload: AccountCreationPayload, *, actor: Principal, idempotency_key: str | None
    ) -> RequestResponseSchema:
        """Queue an account request. The business manager must be usable by the workspace; one that
        does not exist is refused the same way, so another workspace's cannot be told apart."""
        if not await self._business_managers.is_usable(payload.business_manager_id, workspace_id=workspace_id):
            raise BusinessManagerNotUsableException(payload.business_manager_id)
        return await self._requests.submit(workspace_id, payload, actor=actor, idempotency_key=idempotency_key)

    async def list_workspace_accounts(
        self, workspace_id: uuid.UUID, query: AccountListRequestSchema
    ) -> Page[AccountResponseSchema]:
        # The workspace is in the query too: page tokens are bound to it.
        return await self._list(
            query.model_copy(update={"workspace_id": workspace_id}),
            scope=WorkspaceScope(workspace_id),
            collection="workspace_accounts",
        )

    async def get_account(self, account_id: uuid.UUID, *, workspace_id: uuid.UUID) -> AccountResponseSchema:
        return await self._get(account_id, scope=WorkspaceScope(workspace_id))

    async def request_spend_cap_change(
        self, workspace_id: uuid.UUID, payload: SpendCapChangePayload, *, actor: Principal, idempotency_key: str | None
    ) -> RequestResponseSchema:
        """Queue a spend-cap change of an active account of the workspace, in the account's currency."""
        account = await self._get(payload.account_id, scope=WorkspaceScope(workspace_id))
        if account.status is AccountStatus.ARCHIVED:
            raise AccountArchivedException(account.id)
        if payload.currency != account.currency:
            raise SpendCapCurrencyMismatchException(asked=payload.currency, currency=account.currency)
        return await self._requests.submit(workspace_id, payload, actor=actor, idempotency_key=idempotency_key)

    async def list_account_users(
        self, account_id: uuid.UUID, *, workspace_id: uuid.UUID
    ) -> list[AccountUserResponseSchema]:
        rows = await self._repository.list_users(account_id, scope=WorkspaceScope(workspace_id))
        if rows is None:
            raise AccountNotFoundException(account_id)
        emails = await self._emails_of([row.user_id for row in rows])
        return [_user_schema(row, emails[row.user_id]) for row in rows]

    async def assign_account_user(
        self,
        account_id: uuid.UUID,
        user_id: uuid.UUID,
        data: AccountUserAssignRequestSchema,
        *,
        workspace_id: uuid.UUID,
    ) -> AccountUserResponseSchema:
        """Give a member access with these tasks, or replace the tasks they have.

        Runs under the account's row lock, so of concurrent assignments only as many new users
        as the limit allows get in. Assigning the tasks a user already has changes nothing.
        """
        account = await self._locked(account_id, scope=WorkspaceScope(workspace_id))
        if account.status is AccountStatus.ARCHIVED:
            raise AccountArchivedException(account_id)
        if await self._members.get(workspace_id, user_id) is None:
            raise NotAMemberException(workspace_id, user_id)
        tasks = [task.value for task in data.tasks]
        email = (await self._emails_of([user_id]))[user_id]
        current = await self._repository.get_user(account_id, user_id)
        if current is not None:
            before = _user_schema(current, email)
            if set(current.tasks) == set(tasks):
                return before
            after = _user_schema(await self._repository.set_user_tasks(current, tasks), email)
            action = "update"
        else:
            if await self._repository.count_users(account_id) >= MAX_USERS_PER_ACCOUNT:
                raise AccountUserLimitException(account_id, limit=MAX_USERS_PER_ACCOUNT)
            added = await self._repository.add_user(account_id=account_id, user_id=user_id, tasks=tasks)
            before, after, action = None, _user_schema(added, email), "assign"
        await self._audit.record(
            entity_type=ACCOUNT_USER_ENTITY,
            entity_id=account_id,
            action=action,
            workspace_id=workspace_id,
            before=before,
            after=after,
        )
        await self._outbox.add(ACCOUNT_USER_ASSIGNED_TOPIC, _user_event(after, workspace_id=workspace_id))
        return after

    async def unassign_account_user(
        self, account_id: uuid.UUID, user_id: uuid.UUID, *, workspace_id: uuid.UUID
    ) -> None:
        """Take a user's access away.

        A user who still has access loses it even if they have left the workspace meanwhile;
        without access, a non-member is NOT_A_MEMBER and a member ACCOUNT_USER_NOT_FOUND.
        """
        await self._locked(account_id, scope=WorkspaceScope(workspace_id))
        existing = await self._repository.get_user(account_id, user_id)
        if existing is None:
            if await self._members.get(workspace_id, user_id) is None:
                raise NotAMemberException(workspace_id, user_id)
            raise AccountUserNotFoundException(account_id, user_id)
        before = _user_schema(existing, (await self._emails_of([user_id]))[user_id])
        if not await self._repository.remove_user(account_id, user_id):  # pragma: no cover - we hold the lock
            raise AccountUserNotFoundException(account_id, user_id)
        await self._audit.record(
            entity_type=ACCOUNT_USER_ENTITY,
            entity_id=account_id,
            action="unassign",
            workspace_id=workspace_id,
            before=before,
        )
        await self._outbox.add(ACCOUNT_USER_UNASSIGNED_TOPIC, _user_event(before, workspace_id=workspace_id))

    async def revoke_member_access(self, workspace_id: uuid.UUID, user_id: uuid.UUID, *, email: str) -> None:
        """A member left the workspace: take away their access to its ad accounts, each removal
        audited and queued (`account_user.unassigned`) for the workers to take away on Meta, as
        `unassign_account_user` does. Access to other workspaces' accounts stays."""
        for access in await self._repository.remove_member_access(workspace_id, user_id):
            removed = _user_schema(access, email)
            await self._audit.record(
                entity_type=ACCOUNT_USER_ENTITY,
                entity_id=access.account_id,
                action="unassign",
                workspace_id=workspace_id,
                before=removed,
            )
            await self._outbox.add(ACCOUNT_USER_UNASSIGNED_TOPIC, _user_event(removed, workspace_id=workspace_id))

    # -- system RPCs ---------------------------------------------------------------------------

    async def list_accounts(self, query: AccountListRequestSchema) -> Page[AccountResponseSchema]:
        return await self._list(query, scope=SYSTEM, collection="accounts")

    async def update_account(self, account_id: uuid.UUID, data: AccountUpdateRequestSchema) -> AccountResponseSchema:
        """Rename and/or change the status. The `before` snapshot is read under the row lock, so it is
        exactly the version the update replaces (a concurrent change waits, or is waited for)."""
        expected = _version_of(data.etag, account_id)
        current = await self._repository.lock(account_id, scope=SYSTEM)
        if current is None:
            raise AccountNotFoundException(account_id)
        if expected is not None and expected != current.version:
            raise AccountEtagMismatchException(account_id)
        before = _to_schema(current)
        values: dict[str, Any] = {field: getattr(data, field) for field in data.update_mask}
        updated = await self._repository.update(account_id, expected_version=current.version, values=values)
        if updated is None:  # pragma: no cover - the row is locked
            raise AccountEtagMismatchException(account_id)
        after = _to_schema(updated)
        await self._audit.record(
            entity_type=ACCOUNT_ENTITY,
            entity_id=account_id,
            action="update",
            workspace_id=after.workspace_id,
            before=before,
            after=after,
        )
        return after

    async def move_account(self, account_id: uuid.UUID, data: AccountMoveRequestSchema) -> AccountResponseSchema:
        """Hand an account to another active workspace, in one transaction with its clean-up: the
        user assignments and pixel shares belonged to the old workspace and are removed.

        The audit entry names no workspace: either workspace's own log would show the other one.
        """
        expected = _version_of(data.etag, account_id)
        account = await self._locked(account_id, scope=SYSTEM)
        business_manager = await self._business_managers.get(account.business_manager_id)
        if business_manager is None:  # pragma: no cover - a foreign key
            raise AccountNotFoundException(account_id)
        if expected is not None and expected != account.version:
            raise AccountEtagMismatchException(account_id)
        if account.workspace_id == data.target_workspace_id:
            raise AccountAlreadyInWorkspaceException(account_id, account.workspace_id)
        target = await self._workspaces.get(data.target_workspace_id)
        if target is None:
            raise WorkspaceNotFoundException(data.target_workspace_id)
        if target.status is not WorkspaceStatus.ACTIVE:
            raise WorkspaceNotActiveException(target.id, target.status.value)
        if (
            business_manager.ownership is BusinessManagerOwnership.CLIENT
            and business_manager.workspace_id == account.workspace_id
        ):
            raise AccountInClientBusinessManagerException(account_id, business_manager.id)

        before = _to_schema(account)
        moved = await self._repository.update(
            account_id, expected_version=account.version, values={"workspace_id": target.id}
        )
        if moved is None:  # pragma: no cover - the row is locked
            raise AccountEtagMismatchException(account_id)
        after = _to_schema(moved)
        unassigned_user_ids = await self._repository.remove_all_users(account_id)
        unshared_pixel_ids = await self._pixel_shares.unshare_account(account_id)
        await self._audit.record(
            entity_type=ACCOUNT_ENTITY,
            entity_id=account_id,
            action="move",
            workspace_id=None,
            before=before,
            after=after,
        )
        await self._outbox.add(
            ACCOUNT_MOVED_TOPIC,
            {
                "account_id": str(account_id),
                "from_workspace_id": str(before.workspace_id),
                "to_workspace_id": str(after.workspace_id),
                "unassigned_user_ids": [str(user_id) for user_id in unassigned_user_ids],
                "unshared_pixel_ids": [str(pixel_id) for pixel_id in unshared_pixel_ids],
            },
        )
        return after

    # -- helpers -------------------------------------------------------------------------------

    async def _emails_of(self, user_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The users' emails (every user with access, or a member, exists: a foreign key)."""
        return {user.id: user.email for user in await self._users.contacts(user_ids)}

    async def _get(self, account_id: uuid.UUID, *, scope: TenantScope) -> AccountResponseSchema:
        account = await self._repository.get(account_id, scope=scope)
        if account is None:
            raise AccountNotFoundException(account_id)
        return account

    async def _locked(self, account_id: uuid.UUID, *, scope: TenantScope) -> Account:
        account = await self._repository.lock(account_id, scope=scope)
        if account is None:
            raise AccountNotFoundException(account_id)
        return account

    async def _list(
        self, query: AccountListRequestSchema, *, scope: TenantScope, collection: str
    ) -> Page[AccountResponseSchema]:
        return await self._page_tokens.page(
            query,
            collection,
            fetch=lambda after, limit: self._repository.list_accounts(query, scope=scope, after=after, limit=limit),
            convert=account_schema,
        )


def _to_schema(account: Account) -> AccountResponseSchema:
    return AccountResponseSchema.model_validate(account)


def _user_schema(account_user: AccountUser, email: str) -> AccountUserResponseSchema:
    return AccountUserResponseSchema(
        account_id=account_user.account_id,
        user_id=account_user.user_id,
        email=email,
        tasks=[AccountUserTask(task) for task in account_user.tasks],
        created_at=account_user.created_at,
        updated_at=account_user.updated_at,
    )


def _user_event(account_user: AccountUserResponseSchema, *, workspace_id: uuid.UUID) -> dict[str, Any]:
    return {
        "account_id": str(account_user.account_id),
        "user_id": str(account_user.user_id),
        "workspace_id": str(workspace_id),
        "tasks": [task.value for task in account_user.tasks],
    }


def _version_of(etag: str, account_id: uuid.UUID) -> int | None:
    return version_of(etag, mismatch=lambda: AccountEtagMismatchException(account_id))
