"""AccountService against the real database."""

import asyncio
import uuid
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import delete, select

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
from server.accounts.models import MAX_USERS_PER_ACCOUNT, Account, AccountStatus, AccountUserTask
from server.accounts.models import MetaAccountStatus as Meta
from server.accounts.repository import AccountRepository
from server.accounts.schemas import (
    AccountListRequestSchema,
    AccountMoveRequestSchema,
    AccountUpdateRequestSchema,
    AccountUserAssignRequestSchema,
)
from server.auth.principal import Principal
from server.business_managers.models import BusinessManagerOwnership, BusinessManagerStatus
from server.composition import Infrastructure
from server.exceptions import InvalidRequestException
from server.pixels.models import Pixel, PixelAccount
from server.requests.models import Request, RequestStatus, RequestType
from server.requests.schemas import AccountCreationPayload, SpendCapChangePayload
from server.statement_log import sent_statements
from server.tenancy import SYSTEM, WorkspaceScope
from server.workspaces.exceptions import WorkspaceNotActiveException, WorkspaceNotFoundException
from server.workspaces.models import WorkspaceStatus, WorkspaceUser
from tests.accounts.conftest import (
    World,
    account_users,
    audit_entries,
    count,
    new_account,
    new_business_manager,
    new_pixel,
    new_user,
    new_workspace,
    outbox_messages,
)
from tests.waits import blocked_on_a_lock

MANAGE, ADVERTISE, ANALYZE = AccountUserTask.MANAGE, AccountUserTask.ADVERTISE, AccountUserTask.ANALYZE


def draft(business_manager_id: uuid.UUID, **values: Any) -> AccountCreationPayload:
    return AccountCreationPayload.model_validate(
        {"name": "Spring sale", "currency": "EUR", "timezone": "Europe/Berlin"}
        | values
        | {"business_manager_id": business_manager_id}
    )


def tasks(*values: AccountUserTask) -> AccountUserAssignRequestSchema:
    return AccountUserAssignRequestSchema(tasks=list(values))


# --- RequestAccount ------------------------------------------------------------------------------


async def test_request_account_queues_a_waiting_request_with_the_payload(
    infrastructure: Infrastructure, world: World, actor: Principal
) -> None:
    async with infrastructure.unit_of_work() as uow:
        request = await uow.accounts.request_account(
            world.workspace_id,
            draft(world.platform_bm_id, name="  Spring sale  ", currency="usd"),
            actor=actor,
            idempotency_key=None,
        )
    assert request.status is RequestStatus.WAITING_FOR_APPROVAL
    assert request.type is RequestType.ACCOUNT_CREATION
    assert request.workspace_id == world.workspace_id
    assert request.requester_id == actor.id
    assert request.payload == AccountCreationPayload(
        name="Spring sale", currency="USD", timezone="Europe/Berlin", business_manager_id=world.platform_bm_id
    )
    async with infrastructure.unit_of_work() as uow:
        stored = await uow.requests.get_request(request.id, workspace_id=world.workspace_id)
    assert stored == request


async def test_request_account_in_the_workspaces_own_client_business_manager(
    infrastructure: Infrastructure, world: World, actor: Principal
) -> None:
    client_bm = await new_business_manager(
        infrastructure, ownership=BusinessManagerOwnership.CLIENT, workspace_id=world.workspace_id
    )
    async with infrastructure.unit_of_work() as uow:
        request = await uow.accounts.request_account(
            world.workspace_id, draft(client_bm), actor=actor, idempotency_key=None
        )
    assert isinstance(request.payload, AccountCreationPayload)
    assert request.payload.business_manager_id == client_bm


@pytest.mark.parametrize("which", ["archived_platform", "needs_attention_platform", "other_client", "missing"])
async def test_request_account_refuses_a_business_manager_the_workspace_cannot_use(
    infrastructure: Infrastructure, world: World, actor: Principal, which: str
) -> None:
    match which:
        case "archived_platform":
            bm_id = await new_business_manager(infrastructure, status=BusinessManagerStatus.ARCHIVED)
        case "needs_attention_platform":
            bm_id = await new_business_manager(infrastructure, status=BusinessManagerStatus.NEEDS_ATTENTION)
        case "other_client":
            bm_id = await new_business_manager(
                infrastructure, ownership=BusinessManagerOwnership.CLIENT, workspace_id=world.other_workspace_id
            )
        case _:
            bm_id = uuid.uuid4()
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(BusinessManagerNotUsableException) as raised:
            await uow.accounts.request_account(world.workspace_id, draft(bm_id), actor=actor, idempotency_key=None)
    assert raised.value.reason == "BUSINESS_MANAGER_NOT_USABLE"
    assert await count(infrastructure, Request) == 0


async def test_request_account_with_a_request_id_is_done_once(
    infrastructure: Infrastructure, world: World, actor: Principal
) -> None:
    results = []
    for _ in range(2):
        async with infrastructure.unit_of_work() as uow:
            results.append(
                await uow.accounts.request_account(
                    world.workspace_id, draft(world.platform_bm_id), actor=actor, idempotency_key="once"
                )
            )
    assert results[0] == results[1]
    assert await count(infrastructure, Request) == 1


@pytest.mark.parametrize(
    ("values", "field"),
    [({"currency": "XYZ"}, "currency"), ({"timezone": "Mars/Olympus"}, "timezone"), ({"name": " "}, "name")],
)
def test_account_payload_validation(values: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        draft(uuid.uuid4(), **values)
    assert field in str(raised.value)


# --- GetAccount / ListAccounts -------------------------------------------------------------------


async def test_get_account_of_the_workspace(infrastructure: Infrastructure, world: World) -> None:
    async with infrastructure.unit_of_work() as uow:
        account = await uow.accounts.get_account(world.account_id, workspace_id=world.workspace_id)
    assert account.id == world.account_id
    assert account.name == "Mine"
    assert account.workspace_id == world.workspace_id
    assert account.etag == 'W/"1"'


async def test_an_account_of_another_workspace_is_not_found(infrastructure: Infrastructure, world: World) -> None:
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(AccountNotFoundException) as raised:
            await uow.accounts.get_account(world.other_account_id, workspace_id=world.workspace_id)
        assert raised.value.reason == "ACCOUNT_NOT_FOUND"
        with pytest.raises(AccountNotFoundException):
            await uow.accounts.get_account(uuid.uuid4(), workspace_id=world.workspace_id)
        with pytest.raises(AccountNotFoundException):
            await uow.accounts.list_account_users(world.other_account_id, workspace_id=world.workspace_id)


async def test_list_accounts_shows_only_the_workspaces_accounts(infrastructure: Infrastructure, world: World) -> None:
    async with infrastructure.unit_of_work() as uow:
        page = await uow.accounts.list_workspace_accounts(world.workspace_id, AccountListRequestSchema())
        # A workspace_id in the query cannot widen a workspace list.
        sneaky = await uow.accounts.list_workspace_accounts(
            world.workspace_id, AccountListRequestSchema(workspace_id=world.other_workspace_id)
        )
    assert [a.id for a in page.items] == [world.account_id]
    assert [a.id for a in sneaky.items] == [world.account_id]
    assert page.next_page_token == ""


async def test_list_filters_and_pages_in_creation_order(infrastructure: Infrastructure, world: World) -> None:
    ws, bm = world.workspace_id, world.platform_bm_id
    other_bm = await new_business_manager(infrastructure)
    disabled = [
        await new_account(infrastructure, workspace_id=ws, business_manager_id=bm, meta_status=Meta.DISABLED)
        for _ in range(5)
    ]
    archived = await new_account(infrastructure, workspace_id=ws, business_manager_id=bm, status=AccountStatus.ARCHIVED)
    in_other_bm = await new_account(infrastructure, workspace_id=ws, business_manager_id=other_bm)
    never_synced = await new_account(infrastructure, workspace_id=ws, business_manager_id=other_bm, meta_status=None)

    async def ids(query: AccountListRequestSchema) -> list[uuid.UUID]:
        collected: list[uuid.UUID] = []
        while True:
            async with infrastructure.unit_of_work() as uow:
                page = await uow.accounts.list_workspace_accounts(ws, query)
            collected += [account.id for account in page.items]
            assert len(page.items) <= query.limit
            if not page.next_page_token:
                return collected
            query = query.model_copy(update={"page_token": page.next_page_token})

    everything = [world.account_id, *disabled, archived, in_other_bm, never_synced]
    assert await ids(AccountListRequestSchema(page_size=2)) == everything
    assert await ids(AccountListRequestSchema(page_size=2, meta_status=Meta.DISABLED)) == disabled
    assert await ids(AccountListRequestSchema(page_size=3, status=AccountStatus.ARCHIVED)) == [archived]
    assert await ids(AccountListRequestSchema(status=AccountStatus.ACTIVE)) == [
        world.account_id,
        *disabled,
        in_other_bm,
        never_synced,
    ]
    assert await ids(AccountListRequestSchema(page_size=1, business_manager_id=other_bm)) == [
        in_other_bm,
        never_synced,
    ]
    assert await ids(AccountListRequestSchema(business_manager_id=other_bm, meta_status=Meta.ACTIVE)) == [in_other_bm]


async def test_a_page_token_is_bound_to_its_filters_and_list(infrastructure: Infrastructure, world: World) -> None:
    for _ in range(2):
        await new_account(infrastructure, workspace_id=world.workspace_id, business_manager_id=world.platform_bm_id)
    async with infrastructure.unit_of_work() as uow:
        page = await uow.accounts.list_workspace_accounts(world.workspace_id, AccountListRequestSchema(page_size=1))
        token = page.next_page_token
        assert token
        with pytest.raises(InvalidRequestException):
            await uow.accounts.list_workspace_accounts(
                world.workspace_id, AccountListRequestSchema(page_token=token, status=AccountStatus.ACTIVE)
            )
        with pytest.raises(InvalidRequestException):
            await uow.accounts.list_workspace_accounts(
                world.other_workspace_id, AccountListRequestSchema(page_token=token)
            )
        with pytest.raises(InvalidRequestException):
            await uow.accounts.list_accounts(AccountListRequestSchema(page_token=token))


async def test_list_all_accounts_filters_by_workspace(infrastructure: Infrastructure, world: World) -> None:
    async with infrastructure.unit_of_work() as uow:
        everything = await uow.accounts.list_accounts(AccountListRequestSchema())
        theirs = await uow.accounts.list_accounts(AccountListRequestSchema(workspace_id=world.other_workspace_id))
        archived = await uow.accounts.list_accounts(AccountListRequestSchema(status=AccountStatus.ARCHIVED))
    assert [a.id for a in everything.items] == [world.account_id, world.other_account_id]
    assert [a.id for a in theirs.items] == [world.other_account_id]
    assert archived.items == []


async def test_lists_cost_the_same_statements_at_any_page_size(infrastructure: Infrastructure, world: World) -> None:
    for _ in range(4):
        account_id = await new_account(
            infrastructure, workspace_id=world.workspace_id, business_manager_id=world.platform_bm_id
        )
    for _ in range(4):
        async with infrastructure.unit_of_work() as uow:
            await uow.accounts.assign_account_user(
                account_id,
                await new_user(infrastructure, member_of=world.workspace_id),
                tasks(ANALYZE),
                workspace_id=world.workspace_id,
            )
    counts = []
    for size in (1, 200):
        async with infrastructure.unit_of_work() as uow:
            with sent_statements(infrastructure) as sent:
                page = await uow.accounts.list_workspace_accounts(
                    world.workspace_id, AccountListRequestSchema(page_size=size)
                )
                await uow.accounts.list_accounts(AccountListRequestSchema(page_size=size))
                users = await uow.accounts.list_account_users(account_id, workspace_id=world.workspace_id)
            counts.append(len(sent))
        assert len(users) == 4
        assert len(page.items) == min(size, 5)
    # Each list one statement, and the account's users one more for their emails (the users module's).
    assert counts[0] == counts[1] == 4


async def test_read_only_units_read_accounts_from_the_read_pool_as_transactions_do(
    infrastructure: Infrastructure, world: World
) -> None:
    listing = AccountListRequestSchema(page_size=1)
    async with infrastructure.unit_of_work() as uow:
        in_transaction = await uow.accounts.get_account(world.account_id, workspace_id=world.workspace_id)
        page_in_transaction = await uow.accounts.list_workspace_accounts(world.workspace_id, listing)
    async with infrastructure.unit_of_work(read_only=True) as uow:
        with sent_statements(infrastructure) as sent:
            read_only = await uow.accounts.get_account(world.account_id, workspace_id=world.workspace_id)
            page = await uow.accounts.list_workspace_accounts(world.workspace_id, listing)
            # Neither read took a connection from SQLAlchemy's pool: no ORM session was made.
            assert infrastructure.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        with pytest.raises(AccountNotFoundException):
            await uow.accounts.get_account(world.other_account_id, workspace_id=world.workspace_id)
    assert read_only == in_transaction
    assert page == page_in_transaction
    assert len(sent) == 2


async def test_get_many_returns_only_accounts_of_the_workspace(infrastructure: Infrastructure, world: World) -> None:
    second = await new_account(
        infrastructure, workspace_id=world.workspace_id, business_manager_id=world.platform_bm_id
    )
    async with infrastructure.unit_of_work() as uow:
        repository = AccountRepository(uow.session)
        found = await repository.get_many(
            [second, world.other_account_id, world.account_id, uuid.uuid4()], scope=WorkspaceScope(world.workspace_id)
        )
        assert await repository.get_many([], scope=WorkspaceScope(world.workspace_id)) == []
        assert await repository.get(world.other_account_id, scope=WorkspaceScope(world.workspace_id)) is None
        assert await repository.get(world.other_account_id, scope=SYSTEM) is not None
    assert [a.id for a in found] == [world.account_id, second]


# --- RequestSpendCapChange -----------------------------------------------------------------------


def spend_cap(account_id: uuid.UUID, currency: str = "EUR", amount_minor: int = 500_00) -> SpendCapChangePayload:
    return SpendCapChangePayload(account_id=account_id, currency=currency, amount_minor=amount_minor)


async def test_spend_cap_change_is_queued(infrastructure: Infrastructure, world: World, actor: Principal) -> None:
    async with infrastructure.unit_of_work() as uow:
        request = await uow.accounts.request_spend_cap_change(
            world.workspace_id, spend_cap(world.account_id), actor=actor, idempotency_key=None
        )
        removal = await uow.accounts.request_spend_cap_change(
            world.workspace_id, spend_cap(world.account_id, amount_minor=0), actor=actor, idempotency_key=None
        )
    assert request.type is RequestType.SPEND_CAP_CHANGE
    assert request.status is RequestStatus.WAITING_FOR_APPROVAL
    assert request.payload == spend_cap(world.account_id)
    assert isinstance(removal.payload, SpendCapChangePayload)
    assert removal.payload.amount_minor == 0


async def test_spend_cap_in_another_currency_is_invalid(
    infrastructure: Infrastructure, world: World, actor: Principal
) -> None:
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(SpendCapCurrencyMismatchException) as raised:
            await uow.accounts.request_spend_cap_change(
                world.workspace_id, spend_cap(world.account_id, currency="USD"), actor=actor, idempotency_key=None
            )
    assert [v.field for v in raised.value.violations] == ["spend_cap.currency"]
    assert await count(infrastructure, Request) == 0


async def test_spend_cap_of_an_archived_or_foreign_account_is_refused(
    infrastructure: Infrastructure, world: World, actor: Principal
) -> None:
    archived = await new_account(
        infrastructure,
        workspace_id=world.workspace_id,
        business_manager_id=world.platform_bm_id,
        status=AccountStatus.ARCHIVED,
    )
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(AccountArchivedException) as raised:
            await uow.accounts.request_spend_cap_change(
                world.workspace_id, spend_cap(archived), actor=actor, idempotency_key=None
            )
        assert raised.value.reason == "ACCOUNT_ARCHIVED"
        with pytest.raises(AccountNotFoundException):
            await uow.accounts.request_spend_cap_change(
                world.workspace_id, spend_cap(world.other_account_id), actor=actor, idempotency_key=None
            )


@pytest.mark.parametrize("amount", [-1, 10**15 + 1])
def test_spend_cap_amount_bounds(amount: int) -> None:
    with pytest.raises(ValidationError):
        spend_cap(uuid.uuid4(), amount_minor=amount)


# --- account users -------------------------------------------------------------------------------


async def test_assign_list_and_unassign(infrastructure: Infrastructure, world: World, actor: Principal) -> None:
    async with infrastructure.unit_of_work() as uow:
        assigned = await uow.accounts.assign_account_user(
            world.account_id, world.member_id, tasks(ADVERTISE, ANALYZE), workspace_id=world.workspace_id
        )
    assert assigned.user_id == world.member_id
    assert assigned.email.startswith("user-")
    assert assigned.tasks == [ADVERTISE, ANALYZE]
    [stored] = await account_users(infrastructure, world.account_id)
    assert stored.tasks == ["advertise", "analyze"]

    async with infrastructure.unit_of_work() as uow:
        listed = await uow.accounts.list_account_users(world.account_id, workspace_id=world.workspace_id)
    assert listed == [assigned]

    [event_] = await outbox_messages(infrastructure, "account_user.assigned")
    assert event_ == {
        "account_id": str(world.account_id),
        "user_id": str(world.member_id),
        "workspace_id": str(world.workspace_id),
        "tasks": ["advertise", "analyze"],
    }
    [entry] = await audit_entries(infrastructure, "account_user", world.account_id)
    assert entry.action == "assign"
    assert entry.workspace_id == world.workspace_id
    assert entry.actor_id == actor.id
    assert entry.before is None
    assert entry.after is not None
    assert entry.after["user_id"] == str(world.member_id)

    async with infrastructure.unit_of_work() as uow:
        await uow.accounts.unassign_account_user(world.account_id, world.member_id, workspace_id=world.workspace_id)
    assert await account_users(infrastructure, world.account_id) == []
    [removed] = await outbox_messages(infrastructure, "account_user.unassigned")
    assert removed["user_id"] == str(world.member_id)
    assert removed["tasks"] == ["advertise", "analyze"]
    entries = await audit_entries(infrastructure, "account_user", world.account_id)
    assert [e.action for e in entries] == ["assign", "unassign"]
    assert entries[1].before is not None
    assert entries[1].before["user_id"] == str(world.member_id)
    assert entries[1].after is None

    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(AccountUserNotFoundException) as raised:
            await uow.accounts.unassign_account_user(world.account_id, world.member_id, workspace_id=world.workspace_id)
    assert raised.value.reason == "ACCOUNT_USER_NOT_FOUND"


async def test_only_members_of_the_workspace_can_be_assigned(infrastructure: Infrastructure, world: World) -> None:
    outsider = await new_user(infrastructure)
    for user_id in (outsider, world.other_member_id):
        async with infrastructure.unit_of_work() as uow:
            with pytest.raises(NotAMemberException) as raised:
                await uow.accounts.assign_account_user(
                    world.account_id, user_id, tasks(MANAGE), workspace_id=world.workspace_id
                )
            assert raised.value.reason == "NOT_A_MEMBER"
            with pytest.raises(NotAMemberException):
                await uow.accounts.unassign_account_user(world.account_id, user_id, workspace_id=world.workspace_id)
    assert await account_users(infrastructure, world.account_id) == []
    assert await outbox_messages(infrastructure, "account_user.assigned") == []


async def test_users_of_another_workspaces_account_cannot_be_changed(
    infrastructure: Infrastructure, world: World
) -> None:
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(AccountNotFoundException):
            await uow.accounts.assign_account_user(
                world.other_account_id, world.member_id, tasks(MANAGE), workspace_id=world.workspace_id
            )
        with pytest.raises(AccountNotFoundException):
            await uow.accounts.unassign_account_user(
                world.other_account_id, world.member_id, workspace_id=world.workspace_id
            )


async def test_assigning_again_replaces_the_tasks(infrastructure: Infrastructure, world: World) -> None:
    first_member = await new_user(infrastructure, member_of=world.workspace_id)
    for user_id, given in ((first_member, tasks(ANALYZE)), (world.member_id, tasks(MANAGE, ADVERTISE))):
        async with infrastructure.unit_of_work() as uow:
            await uow.accounts.assign_account_user(world.account_id, user_id, given, workspace_id=world.workspace_id)
    async with infrastructure.unit_of_work() as uow:
        replaced = await uow.accounts.assign_account_user(
            world.account_id, world.member_id, tasks(ANALYZE), workspace_id=world.workspace_id
        )
        # The same tasks again change nothing.
        await uow.accounts.assign_account_user(
            world.account_id, world.member_id, tasks(ANALYZE), workspace_id=world.workspace_id
        )
        listed = await uow.accounts.list_account_users(world.account_id, workspace_id=world.workspace_id)
    assert replaced.tasks == [ANALYZE]
    # Still in the order access was first given.
    assert [(u.user_id, u.tasks) for u in listed] == [(first_member, [ANALYZE]), (world.member_id, [ANALYZE])]
    entries = await audit_entries(infrastructure, "account_user", world.account_id)
    assert [e.action for e in entries] == ["assign", "assign", "update"]
    assert entries[2].before is not None
    assert entries[2].before["tasks"] == ["manage", "advertise"]
    assert entries[2].after is not None
    assert entries[2].after["tasks"] == ["analyze"]
    events = await outbox_messages(infrastructure, "account_user.assigned")
    assert [e["tasks"] for e in events] == [["analyze"], ["manage", "advertise"], ["analyze"]]


@pytest.mark.parametrize("given", [[], [MANAGE, MANAGE], [MANAGE, ADVERTISE, ANALYZE, MANAGE]])
def test_tasks_are_one_to_three_distinct(given: list[AccountUserTask]) -> None:
    with pytest.raises(ValidationError):
        AccountUserAssignRequestSchema(tasks=given)


async def test_at_most_25_users_per_account(infrastructure: Infrastructure, world: World) -> None:
    members = [await new_user(infrastructure, member_of=world.workspace_id) for _ in range(MAX_USERS_PER_ACCOUNT)]
    for user_id in members:
        async with infrastructure.unit_of_work() as uow:
            await uow.accounts.assign_account_user(
                world.account_id, user_id, tasks(ANALYZE), workspace_id=world.workspace_id
            )
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(AccountUserLimitException) as raised:
            await uow.accounts.assign_account_user(
                world.account_id, world.member_id, tasks(ANALYZE), workspace_id=world.workspace_id
            )
    assert raised.value.reason == "ACCOUNT_USER_LIMIT"
    assert len(await account_users(infrastructure, world.account_id)) == MAX_USERS_PER_ACCOUNT
    # Changing the tasks of someone who has access is no new user.
    async with infrastructure.unit_of_work() as uow:
        changed = await uow.accounts.assign_account_user(
            world.account_id, members[0], tasks(MANAGE), workspace_id=world.workspace_id
        )
    assert changed.tasks == [MANAGE]


async def test_the_user_limit_holds_under_concurrent_assignments(infrastructure: Infrastructure, world: World) -> None:
    members = [await new_user(infrastructure, member_of=world.workspace_id) for _ in range(MAX_USERS_PER_ACCOUNT + 2)]
    for user_id in members[: MAX_USERS_PER_ACCOUNT - 1]:
        async with infrastructure.unit_of_work() as uow:
            await uow.accounts.assign_account_user(
                world.account_id, user_id, tasks(ANALYZE), workspace_id=world.workspace_id
            )

    async def assign(user_id: uuid.UUID) -> None:
        async with infrastructure.unit_of_work() as uow:
            await uow.accounts.assign_account_user(
                world.account_id, user_id, tasks(ANALYZE), workspace_id=world.workspace_id
            )
            # Whoever holds the account's lock keeps it until the others wait for it: they all try
            # while it is open, and only one of them may take the last place.
            await blocked_on_a_lock(infrastructure, len(contenders) - 1)

    contenders = members[MAX_USERS_PER_ACCOUNT - 1 :]
    results = await asyncio.gather(*(assign(u) for u in contenders), return_exceptions=True)
    assert sum(result is None for result in results) == 1
    assert all(isinstance(r, AccountUserLimitException) for r in results if r is not None)
    assert len(await account_users(infrastructure, world.account_id)) == MAX_USERS_PER_ACCOUNT


async def test_a_former_member_keeps_access_until_unassigned(infrastructure: Infrastructure, world: World) -> None:
    async with infrastructure.unit_of_work() as uow:
        await uow.accounts.assign_account_user(
            world.account_id, world.member_id, tasks(ANALYZE), workspace_id=world.workspace_id
        )
    async with infrastructure.unit_of_work() as uow:
        await uow.session.execute(
            delete(WorkspaceUser).where(
                WorkspaceUser.workspace_id == world.workspace_id, WorkspaceUser.user_id == world.member_id
            )
        )
    async with infrastructure.unit_of_work() as uow:
        await uow.accounts.unassign_account_user(world.account_id, world.member_id, workspace_id=world.workspace_id)
    assert await account_users(infrastructure, world.account_id) == []


async def test_an_archived_account_gets_no_new_users(infrastructure: Infrastructure, world: World) -> None:
    archived = await new_account(
        infrastructure,
        workspace_id=world.workspace_id,
        business_manager_id=world.platform_bm_id,
        status=AccountStatus.ARCHIVED,
    )
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(AccountArchivedException):
            await uow.accounts.assign_account_user(
                archived, world.member_id, tasks(ANALYZE), workspace_id=world.workspace_id
            )


# --- UpdateAccount -------------------------------------------------------------------------------


def update(etag: str = "", **values: Any) -> AccountUpdateRequestSchema:
    return AccountUpdateRequestSchema.model_validate({"update_mask": list(values), "etag": etag, **values})


async def test_update_name_and_status_with_etags(infrastructure: Infrastructure, world: World) -> None:
    async with infrastructure.unit_of_work() as uow:
        renamed = await uow.accounts.update_account(world.account_id, update('W/"1"', name="  Renamed  "))
    assert renamed.name == "Renamed"
    assert renamed.status is AccountStatus.ACTIVE
    assert renamed.etag == 'W/"2"'

    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(AccountEtagMismatchException) as raised:
            await uow.accounts.update_account(world.account_id, update('W/"1"', status=AccountStatus.ARCHIVED))
        assert raised.value.reason == "ETAG_MISMATCH"
        with pytest.raises(AccountEtagMismatchException):
            await uow.accounts.update_account(world.account_id, update("garbage", status=AccountStatus.ARCHIVED))

    async with infrastructure.unit_of_work() as uow:
        archived = await uow.accounts.update_account(world.account_id, update(status=AccountStatus.ARCHIVED))
        fetched = await uow.accounts.get_account(world.account_id, workspace_id=world.workspace_id)
    assert archived.status is AccountStatus.ARCHIVED
    assert archived.name == "Renamed"
    assert fetched == archived

    entries = await audit_entries(infrastructure, "account", world.account_id)
    assert [e.action for e in entries] == ["update", "update"]
    assert entries[0].before is not None
    assert entries[0].before["name"] == "Mine"
    assert entries[0].after is not None
    assert entries[0].after["name"] == "Renamed"
    assert entries[0].workspace_id == world.workspace_id


async def test_an_update_waiting_for_another_audits_what_that_one_wrote_as_before(
    infrastructure: Infrastructure, world: World
) -> None:
    """The `before` snapshot is read under the row lock: an update that had to wait for another one
    starts from what that one wrote, not from what was there when it began."""
    async with infrastructure.unit_of_work() as first:
        await first.accounts.update_account(world.account_id, update(name="First"))

        async def second() -> None:
            async with infrastructure.unit_of_work() as uow:
                await uow.accounts.update_account(world.account_id, update(name="Second"))

        waiting = asyncio.create_task(second())
        await blocked_on_a_lock(infrastructure)  # the second update waits for the row
        assert not waiting.done()
    await waiting

    entries = await audit_entries(infrastructure, "account", world.account_id)
    assert [(e.before or {}).get("name") for e in entries] == ["Mine", "First"]
    assert [(e.after or {}).get("name") for e in entries] == ["First", "Second"]
    assert [(e.before or {}).get("version") for e in entries] == [1, 2]
    assert entries[1].before == entries[0].after


async def test_update_unknown_account_is_not_found(infrastructure: Infrastructure) -> None:
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(AccountNotFoundException):
            await uow.accounts.update_account(uuid.uuid4(), update(name="x"))


@pytest.mark.parametrize(
    "data",
    [
        {"update_mask": []},
        {"update_mask": ["currency"]},
        {"update_mask": ["name"]},
        {"update_mask": ["status"], "status": "deleted"},
    ],
)
def test_update_schema_rejects(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AccountUpdateRequestSchema.model_validate(data)


# --- MoveAccountToWorkspace ----------------------------------------------------------------------


async def test_move_removes_assignments_and_pixel_shares(infrastructure: Infrastructure, world: World) -> None:
    ws, bm = world.workspace_id, world.platform_bm_id
    staying = await new_account(infrastructure, workspace_id=ws, business_manager_id=bm)
    pixel = await new_pixel(infrastructure, workspace_id=ws, business_manager_id=bm, shared_with=[world.account_id])
    other_pixel = await new_pixel(
        infrastructure, workspace_id=ws, business_manager_id=bm, shared_with=[world.account_id, staying]
    )
    for account_id in (world.account_id, staying):
        async with infrastructure.unit_of_work() as uow:
            await uow.accounts.assign_account_user(account_id, world.member_id, tasks(MANAGE), workspace_id=ws)

    async with infrastructure.unit_of_work() as uow:
        moved = await uow.accounts.move_account(
            world.account_id, AccountMoveRequestSchema(target_workspace_id=world.other_workspace_id, etag='W/"1"')
        )
    assert moved.workspace_id == world.other_workspace_id
    assert moved.etag == 'W/"2"'

    async with infrastructure.unit_of_work() as uow:
        assert (await uow.accounts.get_account(world.account_id, workspace_id=world.other_workspace_id)) == moved
        with pytest.raises(AccountNotFoundException):
            await uow.accounts.get_account(world.account_id, workspace_id=ws)
        remaining_shares = list(await uow.session.scalars(select(PixelAccount.account_id)))
        versions = dict((await uow.session.execute(select(Pixel.id, Pixel.version))).all())
    assert await account_users(infrastructure, world.account_id) == []
    assert [u.account_id for u in await account_users(infrastructure, staying)] == [staying]
    assert remaining_shares == [staying]
    assert versions == {pixel: 2, other_pixel: 2}

    [entry] = await audit_entries(infrastructure, "account", world.account_id)
    assert entry.action == "move"
    assert entry.before is not None
    assert entry.before["workspace_id"] == str(ws)
    assert entry.after is not None
    assert entry.after["workspace_id"] == str(world.other_workspace_id)
    [message] = await outbox_messages(infrastructure, "account.moved")
    assert message == {
        "account_id": str(world.account_id),
        "from_workspace_id": str(ws),
        "to_workspace_id": str(world.other_workspace_id),
        "unassigned_user_ids": [str(world.member_id)],
        "unshared_pixel_ids": sorted([str(pixel), str(other_pixel)]),
    }
    # The pixels module queued the unsharing on Meta, one message per pixel.
    unshared = await outbox_messages(infrastructure, "pixel.unshared")
    assert sorted(m["pixel_id"] for m in unshared if m["account_id"] == str(world.account_id)) == sorted(
        [str(pixel), str(other_pixel)]
    )


async def test_move_is_refused_and_changes_nothing(infrastructure: Infrastructure, world: World) -> None:
    suspended = await new_workspace(infrastructure, status=WorkspaceStatus.SUSPENDED)
    archived = await new_workspace(infrastructure, status=WorkspaceStatus.ARCHIVED)
    client_bm = await new_business_manager(
        infrastructure, ownership=BusinessManagerOwnership.CLIENT, workspace_id=world.workspace_id
    )
    clients_own = await new_account(infrastructure, workspace_id=world.workspace_id, business_manager_id=client_bm)
    async with infrastructure.unit_of_work() as uow:
        await uow.accounts.assign_account_user(
            world.account_id, world.member_id, tasks(MANAGE), workspace_id=world.workspace_id
        )

    cases: list[tuple[uuid.UUID, uuid.UUID, str, type[Exception], str]] = [
        (world.account_id, world.workspace_id, "", AccountAlreadyInWorkspaceException, "ACCOUNT_ALREADY_IN_WORKSPACE"),
        (world.account_id, archived, "", WorkspaceNotActiveException, "WORKSPACE_NOT_ACTIVE"),
        (world.account_id, suspended, "", WorkspaceNotActiveException, "WORKSPACE_NOT_ACTIVE"),
        (world.account_id, uuid.uuid4(), "", WorkspaceNotFoundException, "WORKSPACE_NOT_FOUND"),
        (world.account_id, world.other_workspace_id, 'W/"7"', AccountEtagMismatchException, "ETAG_MISMATCH"),
        (uuid.uuid4(), world.other_workspace_id, "", AccountNotFoundException, "ACCOUNT_NOT_FOUND"),
        (
            clients_own,
            world.other_workspace_id,
            "",
            AccountInClientBusinessManagerException,
            "ACCOUNT_IN_CLIENT_BUSINESS_MANAGER",
        ),
    ]
    for account_id, target, etag, exception, reason in cases:
        async with infrastructure.unit_of_work() as uow:
            with pytest.raises(exception) as raised:
                await uow.accounts.move_account(
                    account_id, AccountMoveRequestSchema(target_workspace_id=target, etag=etag)
                )
        assert getattr(raised.value, "reason", None) == reason

    async with infrastructure.unit_of_work() as uow:
        account = await uow.session.get(Account, world.account_id)
    assert account is not None
    assert (account.workspace_id, account.version) == (world.workspace_id, 1)
    assert len(await account_users(infrastructure, world.account_id)) == 1
    assert await outbox_messages(infrastructure, "account.moved") == []


async def test_assignment_after_a_move_belongs_to_the_new_workspace(
    infrastructure: Infrastructure, world: World
) -> None:
    async with infrastructure.unit_of_work() as uow:
        await uow.accounts.move_account(
            world.account_id, AccountMoveRequestSchema(target_workspace_id=world.other_workspace_id)
        )
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(AccountNotFoundException):
            await uow.accounts.assign_account_user(
                world.account_id, world.member_id, tasks(MANAGE), workspace_id=world.workspace_id
            )
        assigned = await uow.accounts.assign_account_user(
            world.account_id, world.other_member_id, tasks(MANAGE), workspace_id=world.other_workspace_id
        )
    assert assigned.user_id == world.other_member_id
