"""AccountServicer: the translation between the contract and the service."""

import datetime as dt
import uuid
from typing import cast

import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import update

from adplane.v1 import account_pb2, money_pb2, request_pb2
from adplane.v1 import account_service_pb2 as pb
from server.accounts.api import AccountServicer, Context
from server.accounts.models import Account, MetaAccountStatus
from server.auth.principal import Principal
from server.composition import Infrastructure
from server.exceptions import InvalidRequestException, NotFoundException
from tests.accounts.conftest import World, new_account

# The servicer never touches its context: errors are raised for the interceptor to map.
NO_CONTEXT = cast(Context, None)


@pytest.fixture
def servicer(infrastructure: Infrastructure) -> AccountServicer:
    return AccountServicer(infrastructure.unit_of_work)


def fields_of(error: InvalidRequestException) -> list[str]:
    return [violation.field for violation in error.violations]


async def test_account_fields_and_money(
    servicer: AccountServicer, infrastructure: Infrastructure, world: World
) -> None:
    synced_at = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    capped = await new_account(
        infrastructure,
        workspace_id=world.workspace_id,
        business_manager_id=world.platform_bm_id,
        name="Capped",
        currency="JPY",
        timezone="Asia/Tokyo",
        spend_cap_minor=1_000_000,
        amount_spent_minor=1234,
        meta_status=MetaAccountStatus.DISABLED,
        disable_reason="ADS_INTEGRITY_POLICY",
        synced_at=synced_at,
    )
    got = (
        await servicer.GetAccount(
            pb.GetAccountRequest(workspace_id=str(world.workspace_id), account_id=str(capped)), NO_CONTEXT
        )
    ).account
    assert got.id == str(capped)
    assert got.workspace_id == str(world.workspace_id)
    assert got.business_manager_id == str(world.platform_bm_id)
    assert got.meta_account_id.startswith("act_")
    assert (got.name, got.currency, got.timezone) == ("Capped", "JPY", "Asia/Tokyo")
    assert got.spend_cap == money_pb2.Money(currency="JPY", amount_minor=1_000_000)
    assert got.amount_spent == money_pb2.Money(currency="JPY", amount_minor=1234)
    assert got.status == account_pb2.ACCOUNT_STATUS_ACTIVE
    assert got.meta_status == account_pb2.META_ACCOUNT_STATUS_DISABLED
    assert got.disable_reason == "ADS_INTEGRITY_POLICY"
    assert got.sync_time.ToDatetime(tzinfo=dt.UTC) == synced_at
    assert got.HasField("create_time")
    assert got.HasField("update_time")
    assert got.etag == 'W/"1"'

    async with infrastructure.unit_of_work() as uow:
        await uow.session.execute(
            update(Account).where(Account.id == world.account_id).values(meta_status=None, meta_account_id=None)
        )
    uncapped = (
        await servicer.GetAccount(
            pb.GetAccountRequest(workspace_id=str(world.workspace_id), account_id=str(world.account_id)), NO_CONTEXT
        )
    ).account
    assert not uncapped.HasField("spend_cap")
    assert uncapped.amount_spent == money_pb2.Money(currency="EUR", amount_minor=0)
    assert uncapped.meta_status == account_pb2.META_ACCOUNT_STATUS_UNSPECIFIED
    assert uncapped.meta_account_id == ""
    assert not uncapped.HasField("sync_time")


async def test_get_malformed_and_foreign_ids(servicer: AccountServicer, world: World) -> None:
    with pytest.raises(InvalidRequestException) as raised:
        await servicer.GetAccount(
            pb.GetAccountRequest(workspace_id=str(world.workspace_id), account_id="act_1"), NO_CONTEXT
        )
    assert raised.value.violations[0].reason == "INVALID_ID"
    assert fields_of(raised.value) == ["account_id"]
    with pytest.raises(NotFoundException):
        await servicer.GetAccount(
            pb.GetAccountRequest(workspace_id=str(world.workspace_id), account_id=str(world.other_account_id)),
            NO_CONTEXT,
        )


async def test_request_account_returns_the_request(servicer: AccountServicer, world: World, actor: Principal) -> None:
    response = await servicer.RequestAccount(
        pb.RequestAccountRequest(
            workspace_id=str(world.workspace_id),
            account=pb.AccountDraft(
                name="Launch", currency="eur", timezone="Europe/Berlin", business_manager_id=str(world.platform_bm_id)
            ),
            request_id="k1",
        ),
        NO_CONTEXT,
    )
    request = response.request
    assert request.status == request_pb2.REQUEST_STATUS_WAITING_FOR_APPROVAL
    assert request.type == request_pb2.REQUEST_TYPE_ACCOUNT_CREATION
    assert request.requester_id == str(actor.id)
    assert request.account_creation == request_pb2.AccountCreationPayload(
        name="Launch", currency="EUR", timezone="Europe/Berlin", business_manager_id=str(world.platform_bm_id)
    )


@pytest.mark.parametrize(
    ("draft", "fields"),
    [
        (
            pb.AccountDraft(name="", currency="EUR", timezone="Europe/Berlin"),
            ["account.name", "account.business_manager_id"],
        ),
        (
            pb.AccountDraft(name="A", currency="XYZ", timezone="UTC", business_manager_id=str(uuid.uuid4())),
            ["account.currency"],
        ),
        (
            pb.AccountDraft(name="A", currency="EUR", timezone="Moon/Base", business_manager_id=str(uuid.uuid4())),
            ["account.timezone"],
        ),
        (
            pb.AccountDraft(name="A\x00", currency="EUR", timezone="UTC", business_manager_id="bm"),
            ["account.name", "account.business_manager_id"],
        ),
    ],
)
async def test_request_account_validation_names_the_request_fields(
    servicer: AccountServicer, world: World, actor: Principal, draft: pb.AccountDraft, fields: list[str]
) -> None:
    with pytest.raises(InvalidRequestException) as raised:
        await servicer.RequestAccount(
            pb.RequestAccountRequest(workspace_id=str(world.workspace_id), account=draft), NO_CONTEXT
        )
    assert fields_of(raised.value) == fields


async def test_spend_cap_change_through_the_contract(servicer: AccountServicer, world: World, actor: Principal) -> None:
    def ask(currency: str, amount: int) -> pb.RequestSpendCapChangeRequest:
        return pb.RequestSpendCapChangeRequest(
            workspace_id=str(world.workspace_id),
            account_id=str(world.account_id),
            spend_cap=money_pb2.Money(currency=currency, amount_minor=amount),
        )

    response = await servicer.RequestSpendCapChange(ask("EUR", 250_00), NO_CONTEXT)
    assert response.request.type == request_pb2.REQUEST_TYPE_SPEND_CAP_CHANGE
    assert response.request.spend_cap_change == request_pb2.SpendCapChangePayload(
        account_id=str(world.account_id), spend_cap=money_pb2.Money(currency="EUR", amount_minor=250_00)
    )
    for currency, amount, field in [
        ("USD", 1, "spend_cap.currency"),
        ("E1", 1, "spend_cap.currency"),
        ("EUR", -1, "spend_cap.amount_minor"),
        ("EUR", 10**15 + 1, "spend_cap.amount_minor"),
    ]:
        with pytest.raises(InvalidRequestException) as raised:
            await servicer.RequestSpendCapChange(ask(currency, amount), NO_CONTEXT)
        assert fields_of(raised.value) == [field]


async def test_list_filters_through_the_contract(
    servicer: AccountServicer, infrastructure: Infrastructure, world: World
) -> None:
    disabled = await new_account(
        infrastructure,
        workspace_id=world.workspace_id,
        business_manager_id=world.platform_bm_id,
        meta_status=MetaAccountStatus.DISABLED,
    )
    listed = await servicer.ListAccounts(
        pb.ListAccountsRequest(workspace_id=str(world.workspace_id), page_size=1), NO_CONTEXT
    )
    assert [a.id for a in listed.accounts] == [str(world.account_id)]
    second = await servicer.ListAccounts(
        pb.ListAccountsRequest(workspace_id=str(world.workspace_id), page_size=1, page_token=listed.next_page_token),
        NO_CONTEXT,
    )
    assert [a.id for a in second.accounts] == [str(disabled)]
    assert second.next_page_token == ""

    only_disabled = await servicer.ListAccounts(
        pb.ListAccountsRequest(
            workspace_id=str(world.workspace_id), meta_status=account_pb2.META_ACCOUNT_STATUS_DISABLED
        ),
        NO_CONTEXT,
    )
    assert [a.id for a in only_disabled.accounts] == [str(disabled)]

    everywhere = await servicer.ListAllAccounts(
        pb.ListAllAccountsRequest(workspace_id=str(world.other_workspace_id), status=account_pb2.ACCOUNT_STATUS_ACTIVE),
        NO_CONTEXT,
    )
    assert [a.id for a in everywhere.accounts] == [str(world.other_account_id)]

    for bad, field in [
        (pb.ListAllAccountsRequest(workspace_id="nope"), "workspace_id"),
        (pb.ListAllAccountsRequest(business_manager_id="nope"), "business_manager_id"),
        (pb.ListAllAccountsRequest(page_size=-1), "page_size"),
        (pb.ListAllAccountsRequest(status=cast(account_pb2.AccountStatus.ValueType, 42)), "status"),
    ]:
        with pytest.raises(InvalidRequestException) as raised:
            await servicer.ListAllAccounts(bad, NO_CONTEXT)
        assert fields_of(raised.value) == [field]


async def test_assign_and_unassign_through_the_contract(servicer: AccountServicer, world: World) -> None:
    def assign(*tasks: account_pb2.AccountUserTask.ValueType) -> pb.AssignAccountUserRequest:
        return pb.AssignAccountUserRequest(
            workspace_id=str(world.workspace_id),
            account_id=str(world.account_id),
            user_id=str(world.member_id),
            assignment=pb.AccountUserAssignment(tasks=list(tasks)),
        )

    assigned = await servicer.AssignAccountUser(
        assign(account_pb2.ACCOUNT_USER_TASK_MANAGE, account_pb2.ACCOUNT_USER_TASK_ANALYZE), NO_CONTEXT
    )
    assert assigned.user.user_id == str(world.member_id)
    assert assigned.user.email.endswith("@example.com")
    assert list(assigned.user.tasks) == [account_pb2.ACCOUNT_USER_TASK_MANAGE, account_pb2.ACCOUNT_USER_TASK_ANALYZE]
    assert assigned.user.HasField("update_time")

    listed = await servicer.ListAccountUsers(
        pb.ListAccountUsersRequest(workspace_id=str(world.workspace_id), account_id=str(world.account_id)), NO_CONTEXT
    )
    assert list(listed.users) == [assigned.user]

    for tasks, field in [
        ((), "assignment.tasks"),
        ((account_pb2.ACCOUNT_USER_TASK_UNSPECIFIED,), "assignment.tasks[0]"),
        ((account_pb2.ACCOUNT_USER_TASK_MANAGE, account_pb2.ACCOUNT_USER_TASK_MANAGE), "assignment.tasks"),
    ]:
        with pytest.raises(InvalidRequestException) as raised:
            await servicer.AssignAccountUser(assign(*tasks), NO_CONTEXT)
        assert fields_of(raised.value) == [field]

    await servicer.UnassignAccountUser(
        pb.UnassignAccountUserRequest(
            workspace_id=str(world.workspace_id), account_id=str(world.account_id), user_id=str(world.member_id)
        ),
        NO_CONTEXT,
    )
    listed = await servicer.ListAccountUsers(
        pb.ListAccountUsersRequest(workspace_id=str(world.workspace_id), account_id=str(world.account_id)), NO_CONTEXT
    )
    assert list(listed.users) == []


async def test_update_through_the_contract(servicer: AccountServicer, world: World) -> None:
    def ask(paths: list[str], account: account_pb2.Account) -> pb.UpdateAccountRequest:
        return pb.UpdateAccountRequest(
            account_id=str(world.account_id), account=account, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )

    updated = await servicer.UpdateAccount(
        ask(
            ["name", "status"],
            account_pb2.Account(name="New", status=account_pb2.ACCOUNT_STATUS_ARCHIVED, etag='W/"1"'),
        ),
        NO_CONTEXT,
    )
    assert updated.account.name == "New"
    assert updated.account.status == account_pb2.ACCOUNT_STATUS_ARCHIVED
    assert updated.account.etag == 'W/"2"'

    for paths, account, field in [
        ([], account_pb2.Account(), "update_mask.paths"),
        (["currency"], account_pb2.Account(currency="USD"), "update_mask.paths"),
        (["status"], account_pb2.Account(), "account.status"),
        (["name"], account_pb2.Account(name=" "), "account.name"),
    ]:
        with pytest.raises(InvalidRequestException) as raised:
            await servicer.UpdateAccount(ask(paths, account), NO_CONTEXT)
        assert [f.split("[")[0] for f in fields_of(raised.value)] == [field]


async def test_move_through_the_contract(servicer: AccountServicer, world: World) -> None:
    with pytest.raises(InvalidRequestException) as raised:
        await servicer.MoveAccountToWorkspace(
            pb.MoveAccountToWorkspaceRequest(account_id=str(world.account_id), target_workspace_id=""), NO_CONTEXT
        )
    assert fields_of(raised.value) == ["target_workspace_id"]
    moved = await servicer.MoveAccountToWorkspace(
        pb.MoveAccountToWorkspaceRequest(
            account_id=str(world.account_id), target_workspace_id=str(world.other_workspace_id), etag='W/"1"'
        ),
        NO_CONTEXT,
    )
    assert moved.account.workspace_id == str(world.other_workspace_id)
    assert moved.account.etag == 'W/"2"'
