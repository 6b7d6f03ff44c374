"""Every statement over the accounts module's tables, `accounts` and `accounts_users`: the one read
path of an account (Core rows turned into `AccountResponseSchema`, on the read pool in read-only
units), the locked reads and conditional updates of the rules, and the set-based statements of the
sync, the spend-cap alerts and the spend export.
"""

import datetime as dt
import functools
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Boolean,
    Integer,
    Select,
    Text,
    Uuid,
    any_,
    bindparam,
    case,
    cast,
    column,
    delete,
    exists,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.accounts.models import Account, AccountStatus, AccountUser, MetaAccountStatus
from server.accounts.schemas import AccountListRequestSchema, AccountResponseSchema
from server.db import utcnow
from server.read_pool import PreparedRead, ReadPool
from server.tenancy import TenantScope, WorkspaceScope, conflicts, narrowed, scope_filter


@dataclass(frozen=True)
class AccountMetaState:
    """What the account sync writes to one account: Meta's view, applied at `version` only."""

    account_id: uuid.UUID
    version: int
    meta_status: MetaAccountStatus | None
    disable_reason: str
    amount_spent_minor: int
    spend_cap_minor: int | None
    # The spend cap changed: spend-cap alerts start over for the new cap.
    reset_spend_cap_alert: bool


_accounts = Account.__table__
# The one way an account is read (Get, List, and every read of the rules and the background work):
# with Core, rows straight from the driver, no ORM identity map or instance state, turned into the
# response schema by `account_schema`. The ORM `Account` is for writes only (lock, update, insert).
# The fields of an AccountRow, in order.
ACCOUNT_ROW_FIELDS = tuple(AccountResponseSchema.model_fields)
_READ_COLUMNS = [_accounts.c[name] for name in ACCOUNT_ROW_FIELDS]
# A row of these columns, in this order: SQLAlchemy's Row on a session, an asyncpg Record on the
# read pool (both sequences of the values).
type AccountRow = Sequence[Any]
# Built once, narrowed to the workspace like every read (or to none: the system scope). Read-only
# units run them on the read pool (compiled once for asyncpg); inside a transaction they run on the
# session's connection.
_READ_ONE = select(*_READ_COLUMNS).where(_accounts.c.id == bindparam("account_id"))
_READ_ONE_IN_WORKSPACE = _READ_ONE.where(_accounts.c.workspace_id == bindparam("workspace_id"))
_READ_ONE_PREPARED = PreparedRead(_READ_ONE)
_READ_ONE_IN_WORKSPACE_PREPARED = PreparedRead(_READ_ONE_IN_WORKSPACE)
_validate_account = AccountResponseSchema.__pydantic_validator__.validate_python


def account_schema(row: AccountRow) -> AccountResponseSchema:
    """An account row as the response schema (validating a dict, through the model's validator
    directly: the cheapest way pydantic offers, which counts at 50 rows a page)."""
    schema: AccountResponseSchema = _validate_account(dict(zip(ACCOUNT_ROW_FIELDS, row, strict=True)))
    return schema


@functools.cache
def _page_statement(filters: frozenset[str]) -> Select[Any]:
    """The list statement for one combination of filters, built once per process (SQLAlchemy
    memoizes its cache key): a page spends nothing on building its statement. `filters` names the
    bound parameters given; `workspace_id` narrows to a workspace like every read."""
    statement = select(*_READ_COLUMNS)
    for name in ("workspace_id", "business_manager_id", "status", "meta_status"):
        if name in filters:
            statement = statement.where(_accounts.c[name] == bindparam(name))
    if "after" in filters:
        statement = statement.where(_accounts.c.id > bindparam("after"))
    return statement.order_by(_accounts.c.id).limit(bindparam("limit", type_=Integer))


@functools.cache
def _page_read(filters: frozenset[str]) -> PreparedRead:
    return PreparedRead(_page_statement(filters))


class IAccountRepository(Protocol):
    async def list_accounts(
        self, query: AccountListRequestSchema, *, scope: TenantScope, after: uuid.UUID | None, limit: int
    ) -> Sequence[AccountRow]: ...
    async def get(self, account_id: uuid.UUID, *, scope: TenantScope) -> AccountResponseSchema | None: ...
    async def get_many(
        self, account_ids: Collection[uuid.UUID], *, scope: TenantScope
    ) -> list[AccountResponseSchema]: ...
    async def lock(self, account_id: uuid.UUID, *, scope: TenantScope) -> Account | None: ...
    async def update(
        self, account_id: uuid.UUID, *, expected_version: int | None, values: dict[str, Any]
    ) -> Account | None: ...
    async def list_users(self, account_id: uuid.UUID, *, scope: TenantScope) -> list[AccountUser] | None: ...
    async def get_user(self, account_id: uuid.UUID, user_id: uuid.UUID) -> AccountUser | None: ...
    async def count_users(self, account_id: uuid.UUID) -> int: ...
    async def add_user(self, *, account_id: uuid.UUID, user_id: uuid.UUID, tasks: list[str]) -> AccountUser: ...
    async def set_user_tasks(self, account_user: AccountUser, tasks: list[str]) -> AccountUser: ...
    async def remove_user(self, account_id: uuid.UUID, user_id: uuid.UUID) -> bool: ...
    async def remove_all_users(self, account_id: uuid.UUID) -> list[uuid.UUID]: ...
    async def remove_member_access(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> list[AccountUser]: ...


class AccountRepository:
    def __init__(self, session: AsyncSession, *, reader: ReadPool | None = None) -> None:
        self._session = session
        # A read-only unit's reads of committed data: Gets and Lists run there, not on the session.
        self._reader = reader

    async def get(self, account_id: uuid.UUID, *, scope: TenantScope) -> AccountResponseSchema | None:
        """The account, or None when it does not exist or is outside `scope`."""
        if isinstance(scope, WorkspaceScope):
            statement, prepared = _READ_ONE_IN_WORKSPACE, _READ_ONE_IN_WORKSPACE_PREPARED
            parameters = {"workspace_id": scope.workspace_id, "account_id": account_id}
        else:
            statement, prepared = _READ_ONE, _READ_ONE_PREPARED
            parameters = {"account_id": account_id}
        row: AccountRow | None
        if self._reader is not None:
            row = await self._reader.one(prepared, parameters)
        else:
            row = (await (await self._session.connection()).execute(statement, parameters)).first()
        return None if row is None else account_schema(row)

    async def get_many(self, account_ids: Collection[uuid.UUID], *, scope: TenantScope) -> list[AccountResponseSchema]:
        """Those of `account_ids` inside `scope` (the others are left out), in id order."""
        if not account_ids:
            return []
        statement = narrowed(
            select(*_READ_COLUMNS).where(_accounts.c.id.in_(set(account_ids))), _accounts.c.workspace_id, scope
        ).order_by(_accounts.c.id)
        connection = await self._session.connection()
        return [account_schema(row) for row in await connection.execute(statement)]

    async def list_accounts(
        self, query: AccountListRequestSchema, *, scope: TenantScope, after: uuid.UUID | None, limit: int
    ) -> Sequence[AccountRow]:
        """`limit` accounts of `scope` after `after` in id (= creation) order, as rows; one statement."""
        if conflicts(scope, query.workspace_id):
            return []
        filters: dict[str, object] = {
            "workspace_id": scope_filter(scope, query.workspace_id),
            "business_manager_id": query.business_manager_id,
            "status": query.status,
            "meta_status": query.meta_status,
            "after": after,
        }
        parameters = {name: value for name, value in filters.items() if value is not None}
        filter_names = frozenset(parameters)
        parameters["limit"] = limit
        if self._reader is not None:
            return await self._reader.all(_page_read(filter_names), parameters)
        connection = await self._session.connection()
        rows: Sequence[AccountRow] = (await connection.execute(_page_statement(filter_names), parameters)).all()
        return rows

    def _readable(self, scope: TenantScope) -> Select[Account]:
        """Every query starts here: narrowed to what `scope` may see."""
        return narrowed(select(Account), Account.workspace_id, scope)

    async def lock(self, account_id: uuid.UUID, *, scope: TenantScope) -> Account | None:
        """The account, its row locked until the transaction ends (`SELECT ... FOR UPDATE`): changes
        to its users run one at a time, so a count taken under the lock stays true until commit."""
        statement = (
            self._readable(scope)
            .where(Account.id == account_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return await self._session.scalar(statement)

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

    async def list_users(self, account_id: uuid.UUID, *, scope: TenantScope) -> list[AccountUser] | None:
        """Every user with access, in the order they were given it; None when the account is not one
        of the workspace's. One statement: the account outer-joined to its users."""
        statement = (
            self._readable(scope)
            .with_only_columns(Account.id, AccountUser)
            .select_from(Account)
            .outerjoin(AccountUser, AccountUser.account_id == Account.id)
            .where(Account.id == account_id)
            .order_by(AccountUser.created_at, AccountUser.user_id)
        )
        rows = (await self._session.execute(statement)).all()
        if not rows:
            return None
        return [account_user for _, account_user in rows if account_user is not None]

    async def get_user(self, account_id: uuid.UUID, user_id: uuid.UUID) -> AccountUser | None:
        """The user's access, or None when they have none."""
        statement = (
            select(AccountUser)
            .where(AccountUser.account_id == account_id, AccountUser.user_id == user_id)
            .execution_options(populate_existing=True)
        )
        return await self._session.scalar(statement)

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

    async def remove_member_access(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> list[AccountUser]:
        """Take away the user's access to every ad account of the workspace; the rows removed
        (account order). Access to accounts of other workspaces stays."""
        statement = (
            delete(AccountUser)
            .where(
                AccountUser.user_id == user_id,
                AccountUser.account_id.in_(select(Account.id).where(Account.workspace_id == workspace_id)),
            )
            .returning(AccountUser)
            .execution_options(synchronize_session=False)
        )
        return sorted(await self._session.scalars(statement), key=lambda access: access.account_id)

    # The periodic sync with Meta (server/accounts/sync.py)

    async def count_syncable_by_business_manager(self) -> dict[uuid.UUID, int]:
        """How many ACTIVE accounts Meta created (they have a meta_account_id) each business manager
        holds; business managers without such accounts are left out. One statement."""
        statement = (
            select(Account.business_manager_id, func.count())
            .where(Account.status == AccountStatus.ACTIVE, Account.meta_account_id.is_not(None))
            .group_by(Account.business_manager_id)
        )
        return {
            business_manager_id: int(count) for business_manager_id, count in await self._session.execute(statement)
        }

    async def list_for_sync(self, business_manager_id: uuid.UUID) -> list[Account]:
        """The ACTIVE accounts of the business manager that Meta created (they have a meta_account_id)."""
        statement = (
            select(Account)
            .where(
                Account.business_manager_id == business_manager_id,
                Account.status == AccountStatus.ACTIVE,
                Account.meta_account_id.is_not(None),
            )
            .order_by(Account.id)
        )
        return list(await self._session.scalars(statement))

    async def apply_meta_states(self, states: Sequence[AccountMetaState], *, synced_at: dt.datetime) -> list[Account]:
        """Write Meta's view to many accounts in one statement (`UPDATE ... FROM unnest(arrays)`, so
        the statement and its parameters stay the same size whatever the number of accounts).

        Each account is written only at the version it was read at, and its version moves on (the
        etag stands for what Meta reports too); an account changed meanwhile is skipped, and the next
        sync picks it up. Returns the accounts written, as they are now.
        """
        if not states:
            return []
        rows = func.unnest(
            bindparam("ids", [s.account_id for s in states], type_=ARRAY(Uuid)),
            bindparam("versions", [s.version for s in states], type_=ARRAY(Integer)),
            bindparam("meta_statuses", [s.meta_status for s in states], type_=ARRAY(Text)),
            bindparam("disable_reasons", [s.disable_reason for s in states], type_=ARRAY(Text)),
            bindparam("amounts_spent", [s.amount_spent_minor for s in states], type_=ARRAY(BigInteger)),
            bindparam("spend_caps", [s.spend_cap_minor for s in states], type_=ARRAY(BigInteger)),
            bindparam("reset_alerts", [s.reset_spend_cap_alert for s in states], type_=ARRAY(Boolean)),
        ).table_valued(
            column("id", Uuid),
            column("version", Integer),
            column("meta_status", Text),
            column("disable_reason", Text),
            column("amount_spent_minor", BigInteger),
            column("spend_cap_minor", BigInteger),
            column("reset_alert", Boolean),
        )
        meta = rows.render_derived(name="meta")
        statement = (
            update(Account)
            .where(Account.id == meta.c.id, Account.version == meta.c.version)
            .values(
                meta_status=cast(meta.c.meta_status, Account.__table__.c.meta_status.type),
                disable_reason=meta.c.disable_reason,
                amount_spent_minor=meta.c.amount_spent_minor,
                spend_cap_minor=meta.c.spend_cap_minor,
                # Read from the row, not from the sync's snapshot: an alert raised meanwhile stays.
                spend_cap_alert_percent=case((meta.c.reset_alert, 0), else_=Account.spend_cap_alert_percent),
                synced_at=synced_at,
                version=Account.version + 1,
                updated_at=utcnow(),
            )
            .returning(Account)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        return list(await self._session.scalars(statement))

    async def mark_synced(self, account_ids: Sequence[uuid.UUID], *, synced_at: dt.datetime) -> None:
        """Record that Meta was read for accounts it reported unchanged: only `synced_at` moves (not
        the version nor `updated_at`, so a sync that found nothing new leaves etags alone)."""
        if not account_ids:
            return
        await self._session.execute(
            update(Account)
            .where(Account.id == any_(bindparam("ids", list(account_ids), type_=ARRAY(Uuid))))
            .values(synced_at=synced_at, updated_at=Account.updated_at)
            .execution_options(synchronize_session=False)
        )

    async def raise_spend_cap_alerts(self, thresholds: Sequence[int]) -> list[Account]:
        """Move `spend_cap_alert_percent` up to the highest of `thresholds` (percentages) each ACTIVE
        capped account has reached, where it is below that; the accounts moved, as they are now.

        One conditional UPDATE: a concurrent run waits for the row lock, then no longer matches the
        row, so each crossing is returned once. The version is left alone (the marker is not part of
        the resource callers see).
        """
        reached = case(
            *(
                (Account.amount_spent_minor * 100 >= Account.spend_cap_minor * threshold, threshold)
                for threshold in sorted(thresholds, reverse=True)
            ),
            else_=0,
        )
        statement = (
            update(Account)
            .where(
                Account.status == AccountStatus.ACTIVE,
                Account.spend_cap_minor > 0,
                Account.spend_cap_alert_percent < reached,
            )
            .values(spend_cap_alert_percent=reached, updated_at=Account.updated_at)
            .returning(Account)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        return list(await self._session.scalars(statement))

    async def lock_for_meta(self, key: str) -> None:
        """Take the transaction-scoped advisory lock named `key` (`account_lock_key`), waiting
        for whoever holds it; it is released when the transaction ends.

        For Meta-side work on one object that must not interleave (two workers carrying the same
        object's state over to Meta), without locking any row: RPCs and syncs that write the row
        are not kept waiting while Meta is called. Keys are hashed to 64 bits.
        """
        await self._session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})

    async def known_meta_account_ids(self, meta_account_ids: Collection[str]) -> set[str]:
        """Those of the Meta ad account ids that an account row already has (in any workspace)."""
        if not meta_account_ids:
            return set()
        statement = select(Account.meta_account_id).where(Account.meta_account_id.in_(set(meta_account_ids)))
        return {meta_id for meta_id in await self._session.scalars(statement) if meta_id is not None}

    async def add_created(self, **values: Any) -> Account | None:
        """Insert an account an approved request created on Meta; None when another row took its
        `meta_account_id` first.

        ON CONFLICT DO NOTHING instead of a failing flush: when a concurrent transaction inserts the
        same Meta id, this waits for it and then reports the conflict, and the transaction stays
        usable.
        """
        statement = (
            pg_insert(Account)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Account.meta_account_id])
            .returning(Account)
            .execution_options(populate_existing=True)
        )
        return (await self._session.scalars(statement)).one_or_none()

    async def holds_objects_in(self, business_manager_id: uuid.UUID) -> bool:
        """Whether any ad account (whatever its status) lives in the business manager."""
        return bool(
            await self._session.scalar(select(exists().where(Account.business_manager_id == business_manager_id)))
        )

    # The daily spend export (server/exports/)

    async def workspaces_with_accounts(self, *, after: uuid.UUID | None, limit: int) -> list[uuid.UUID]:
        """Ids of workspaces that own at least one ad account, in id order, after `after`."""
        statement = select(Account.workspace_id).distinct().order_by(Account.workspace_id).limit(limit)
        if after is not None:
            statement = statement.where(Account.workspace_id > after)
        return list(await self._session.scalars(statement))

    async def accounts_of(self, workspace_id: uuid.UUID) -> list[Account]:
        """Every ad account of the workspace, archived ones included, in creation order."""
        statement = select(Account).where(Account.workspace_id == workspace_id).order_by(Account.id)
        return list(await self._session.scalars(statement))
