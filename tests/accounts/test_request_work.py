"""The work of approved account requests against the simulator: creating an ad account, changing its
spend cap (the lifecycle around it: tests/requests/test_request_work.py)."""

from devstack.meta_simulator import SimulatorControl
from server.accounts.models import Account, AccountStatus, MetaAccountStatus
from server.composition import Infrastructure, UnitOfWork
from server.requests.models import RequestStatus
from server.requests.schemas import SpendCapChangePayload
from server.requests.work import RequestWork
from tests.meta_work import (
    MetaWorld,
    account_payload,
    add_account,
    approved_request,
    audit_entries,
    rows,
    stored_request,
)

# --- account creation ----------------------------------------------------------------------------


async def test_account_creation_creates_the_account_on_meta_and_here(
    infrastructure: Infrastructure,
    work: RequestWork[UnitOfWork],
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    request_id = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    request = await stored_request(infrastructure, request_id)
    assert request.status is RequestStatus.COMPLETED
    assert request.result is not None
    assert request.result.account_id is not None
    meta_id = request.result.meta_id
    assert meta_id is not None
    assert meta_id.startswith("act_")
    on_meta = control.ad_account(meta_id)
    assert (on_meta["name"], on_meta["currency"], on_meta["business_id"]) == (
        "Spring sale",
        "EUR",
        meta_world.meta_business_id,
    )
    (account,) = await rows(infrastructure, Account, Account.id == request.result.account_id)
    assert (account.workspace_id, account.business_manager_id, account.meta_account_id) == (
        meta_world.workspace_id,
        meta_world.business_manager_id,
        meta_id,
    )
    assert (account.name, account.currency, account.timezone) == ("Spring sale", "EUR", "Europe/Berlin")
    assert (account.status, account.meta_status) == (AccountStatus.ACTIVE, MetaAccountStatus.ACTIVE)
    assert account.synced_at is not None
    (created,) = await audit_entries(infrastructure, entity_type="account", entity_id=account.id)
    assert (created.action, created.workspace_id, created.actor_id) == ("create", meta_world.workspace_id, None)
    assert created.after is not None
    assert created.after["meta_account_id"] == meta_id
    actions = [
        entry.action for entry in await audit_entries(infrastructure, entity_type="request", entity_id=request_id)
    ]
    assert actions == ["request", "approve", "complete"]


# --- spend cap -----------------------------------------------------------------------------------


async def test_spend_cap_change_sets_the_cap_on_meta_and_here(
    infrastructure: Infrastructure,
    work: RequestWork[UnitOfWork],
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    meta_account_id = control.add_ad_account(meta_world.meta_business_id, "Always on", currency="EUR")
    account_id = await add_account(
        infrastructure,
        workspace_id=meta_world.workspace_id,
        business_manager_id=meta_world.business_manager_id,
        meta_account_id=meta_account_id,
        spend_cap_minor=10_000,
        spend_cap_alert_percent=80,
    )
    payload = SpendCapChangePayload(account_id=account_id, currency="EUR", amount_minor=250_075)
    request_id = await approved_request(infrastructure, meta_world.workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    assert control.ad_account(meta_account_id)["spend_cap"] == 250_075
    (account,) = await rows(infrastructure, Account, Account.id == account_id)
    assert (account.spend_cap_minor, account.spend_cap_alert_percent, account.version) == (250_075, 0, 2)
    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert (result.account_id, result.meta_id) == (account_id, meta_account_id)
    (updated,) = await audit_entries(infrastructure, entity_type="account", entity_id=account_id)
    assert updated.action == "update"
    assert updated.before is not None
    assert updated.before["spend_cap_minor"] == 10_000
    assert updated.after is not None
    assert updated.after["spend_cap_minor"] == 250_075


async def test_a_zero_spend_cap_removes_the_cap(
    infrastructure: Infrastructure,
    work: RequestWork[UnitOfWork],
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    meta_account_id = control.add_ad_account(meta_world.meta_business_id, "Capped", currency="EUR", spend_cap=5_000)
    account_id = await add_account(
        infrastructure,
        workspace_id=meta_world.workspace_id,
        business_manager_id=meta_world.business_manager_id,
        meta_account_id=meta_account_id,
        spend_cap_minor=5_000,
    )
    payload = SpendCapChangePayload(account_id=account_id, currency="EUR", amount_minor=0)
    request_id = await approved_request(infrastructure, meta_world.workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    assert control.ad_account(meta_account_id)["spend_cap"] == 0
    (account,) = await rows(infrastructure, Account, Account.id == account_id)
    assert account.spend_cap_minor is None
