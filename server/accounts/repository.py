import uuid
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.accounts.models import Account, AccountUser
from server.accounts.schemas import AccountListRequestSchema
from server.business_managers.models import BusinessManager
from server.db import utcnow
from server.pixels.models import Pixel, PixelAccount
from server.users.models import User


class IAccountRepository(Protocol):
    async def get(self, account_id: uuid.UUID, *, workspace_id: uuid.UUID | None = None) -> Account | None: ...
    async def get_many(self, account_ids: Collection[uuid.UUID], *, workspace_id: uuid.UUID) -> list[Account]: ...
    async def lock(self, account_id: uuid.UUID, *, workspace_id: uuid.UUID | None = None) -> Account | None: ...
    async def lock_with_business_manager(self, account_id: uuid.UUID) -> tuple[Account, BusinessManager] | None: ...
    async def list_accounts(
        self, query: AccountListRequestSchema, *, after: uuid.UUID | None, limit: int
    ) -> list[Account]: ...
    async def update(
        self, account_id: uuid.UUID, *, expected_version: int | None, values: dict[str, Any]
    ) -> Account | None: ...
    async def list_users(
        self, account_id: uuid.UUID, *, workspace_id: uuid.UUID
    ) -> list[tuple[AccountUser, str]] | None: ...
    async def get_user(self, account_id: uuid.UUID, user_id: uuid.UUID) -> tuple[AccountUser, str] | None: ...
    async def count_users(self, account_id: uuid.UUID) -> int: ...
    async def add_user(self, *, account_id: uuid.UUID, user_id: uuid.UUID, tasks: list[str]) -> AccountUser: ...
    async def set_user_tasks(self, account_user: AccountUser, tasks: list[str]) -> AccountUser: ...
    async def remove_user(self, account_id: uuid.UUID, user_id: uuid.UUID) -> bool: ...
    async def remove_all_users(self, account_id: uuid.UUID) -> list[uuid.UUID]: ...
    async def remove_pixel_shares(self, account_id: uuid.UUID) -> list[uuid.UUID]: ...


class AccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def _readable(self, workspace_id: uuid.UUID | None) -> Select[Account]:
        """Every query starts here: narrowed to one workspace when the caller is scoped to one."""
        statement = select(Account)
        return statement if workspace_id is None else statement.where(Account.workspace_id == workspace_id)

    async def get(self, account_id: uuid.UUID, *, workspace_id: uuid.UUID | None = None) -> Account | None:
        """The account, or None when it does not exist or belongs to another workspace than `workspace_id`."""
        return await self._session.scalar(self._readable(workspace_id).where(Account.id == account_id))

    async def get_many(self, account_ids: Collection[uuid.UUID], *, workspace_id: uuid.UUID) -> list[Account]:
        """Those of `account_ids` that belong to `workspace_id` (the others are left out), in id order."""
        if not account_ids:
            return []
        statement = self._readable(workspace_id).where(Account.id.in_(set(account_ids))).order_by(Account.id)
        return list(await self._session.scalars(statement))

    async def lock(self, account_id: uuid.UUID, *, workspace_id: uuid.UUID | None = None) -> Account | None:
        """The account, its row locked until the transaction ends (`SELECT ... FOR UPDATE`): changes
        to its users run one at a time, so a count taken under the lock stays true until commit."""
        statement = (
            self._readable(workspace_id)
            .where(Account.id == account_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return await self._session.scalar(statement)

    async def lock_with_business_manager(self, account_id: uuid.UUID) -> tuple[Account, BusinessManager] | None:
        """The account (row locked) and the business manager it lives in, in one statement."""
        statement = (
            select(Account, BusinessManager)
            .join(BusinessManager, BusinessManager.id == Account.business_manager_id)
            .where(Account.id == account_id)
            .with_for_update(of=Account)
            .execution_options(populate_existing=True)
        )
        row = (await self._session.execute(statement)).one_or_none()
        return None if row is None else (row[0], row[1])

    async def list_accounts(
        self, query: AccountListRequestSchema, *, after: uuid.UUID | None, limit: int
    ) -> list[Account]:
        """`limit` accounts after `after` in id (= creation) order; one statement whatever the page size."""
        statement = self._readable(query.workspace_id).order_by(Account.id).limit(limit)
        if query.business_manager_id is not None:
            statement = statement.where(Account.business_manager_id == query.business_manager_id)
        if query.status is not None:
            statement = statement.where(Account.status == query.status)
        if query.meta_status is not None:
            statement = statement.where(Account.meta_status == query.meta_status)
        if after is not None:
            statement = statement.where(Account.id > after)
        return list(await self._session.scalars(statement))

    async def update(
        self, account_id: uuid.UUID, *, expected_version: int | None, values: dict[str, Any]
    ) -> Account | None:
        """Apply `values` at `expected_version` (any when None) and bump the version; None when no
        row matched (missing, or at another version)."""
        statement = (
            update(Account)
            .where(Account.id == account_id)
            .values(**values, version=Account.version + 1, updated_at=utcnow())
            .returning(Account)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        if expected_version is not None:
            statement = statement.where(Account.version == expected_version)
        return (await self._session.scalars(statement)).one_or_none()

    def _users(self) -> Select[AccountUser, str]:
        return select(AccountUser, User.email).join(User, User.id == AccountUser.user_id)

    async def list_users(
        self, account_id: uuid.UUID, *, workspace_id: uuid.UUID
    ) -> list[tuple[AccountUser, str]] | None:
        """Every user with access and their email, in the order they were given it; None when the
        account is not one of the workspace's. One statement: the account outer-joined to its users."""
        statement = (
            self._readable(workspace_id)
            .with_only_columns(Account.id, AccountUser, User.email)
            .select_from(Account)
            .outerjoin(AccountUser, AccountUser.account_id == Account.id)
            .outerjoin(User, User.id == AccountUser.user_id)
            .where(Account.id == account_id)
            .order_by(AccountUser.created_at, AccountUser.user_id)
        )
        rows = (await self._session.execute(statement)).all()
        if not rows:
            return None
        return [(account_user, email) for _, account_user, email in rows if account_user is not None]

    async def get_user(self, account_id: uuid.UUID, user_id: uuid.UUID) -> tuple[AccountUser, str] | None:
        """The user's access and their email, or None when they have none."""
        statement = (
            self._users()
            .where(AccountUser.account_id == account_id, AccountUser.user_id == user_id)
            .execution_options(populate_existing=True)
        )
        row = (await self._session.execute(statement)).one_or_none()
        return None if row is None else (row[0], row[1])

    async def count_users(self, account_id: uuid.UUID) -> int:
        statement = select(func.count()).select_from(AccountUser).where(AccountUser.account_id == account_id)
        return int(await self._session.scalar(statement) or 0)

    async def add_user(self, *, account_id: uuid.UUID, user_id: uuid.UUID, tasks: list[str]) -> AccountUser:
        account_user = AccountUser(account_id=account_id, user_id=user_id, tasks=tasks)
        self._session.add(account_user)
        await self._session.flush()
        return account_user

    async def set_user_tasks(self, account_user: AccountUser, tasks: list[str]) -> AccountUser:
        account_user.tasks = tasks
        account_user.updated_at = utcnow()
        await self._session.flush()
        return account_user

    async def remove_user(self, account_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        """Take the user's access away; False when they had none."""
        statement = (
            delete(AccountUser)
            .where(AccountUser.account_id == account_id, AccountUser.user_id == user_id)
            .returning(AccountUser.user_id)
        )
        return (await self._session.scalars(statement)).one_or_none() is not None

    async def remove_all_users(self, account_id: uuid.UUID) -> list[uuid.UUID]:
        """Take everyone's access away; the ids of the users who had it."""
        statement = delete(AccountUser).where(AccountUser.account_id == account_id).returning(AccountUser.user_id)
        return sorted(await self._session.scalars(statement))

    async def remove_pixel_shares(self, account_id: uuid.UUID) -> list[uuid.UUID]:
        """Unshare every pixel shared with the account; the ids of those pixels.

        Their versions are bumped: a pixel's shares are part of what its etag stands for.
        """
        statement = delete(PixelAccount).where(PixelAccount.account_id == account_id).returning(PixelAccount.pixel_id)
        pixel_ids: Sequence[uuid.UUID] = sorted(await self._session.scalars(statement))
        if pixel_ids:
            await self._session.execute(
                update(Pixel)
                .where(Pixel.id.in_(pixel_ids))
                .values(version=Pixel.version + 1, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        return list(pixel_ids)
