"""Carrying out approved requests: each type against the simulator, and what makes it safe to repeat."""

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, cast

import pytest
from cryptography.fernet import Fernet

from devstack.meta_simulator import FaultKind, SimulatorControl
from server.accounts.models import Account, AccountStatus, MetaAccountStatus
from server.business_managers.exceptions import BusinessManagerInUseException
from server.business_managers.models import (
    BusinessManager,
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.clients.meta import IMetaClient
from server.clients.meta.models import MetaAdAccount, MetaPixel
from server.composition import Infrastructure
from server.config import Settings
from server.db import utcnow
from server.pixels.models import Pixel, PixelAccount
from server.requests.models import Request, RequestStatus
from server.requests.schemas import (
    AccountCreationPayload,
    BusinessManagerConnectionPayload,
    PixelCreationPayload,
    PixelSharePayload,
    SpendCapChangePayload,
)
from server.requests.work import RequestWork
from server.workspaces.schemas import WorkspaceCreateRequestSchema
from tests.meta_work import (
    MAX_ATTEMPTS,
    MetaWorld,
    add_account,
    add_business_manager,
    add_pixel,
    approved_request,
    audit_entries,
    count,
    rows,
    staff,
    stored_request,
)

CREATE_ACCOUNT_ROUTE = "POST /{business_id}/adaccount"


def account_payload(meta_world: MetaWorld, name: str = "Spring sale") -> AccountCreationPayload:
    return AccountCreationPayload(
        name=name, currency="EUR", timezone="Europe/Berlin", business_manager_id=meta_world.business_manager_id
    )


# --- account creation ------------------------------------------------------------------------


async def test_account_creation_creates_the_account_on_meta_and_here(
    infrastructure: Infrastructure,
    work: RequestWork,
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


async def test_a_redelivery_after_completion_does_nothing(
    infrastructure: Infrastructure,
    work: RequestWork,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    request_id = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))
    await work.carry_out(request_id)
    before = control.counters()
    completed = await stored_request(infrastructure, request_id)

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    after = control.counters()
    assert after.objects == before.objects
    assert after.calls.http_calls == before.calls.http_calls  # not even a lookup
    assert await stored_request(infrastructure, request_id) == completed
    assert await count(infrastructure, Account) == 1


async def test_a_same_name_account_already_in_the_business_is_not_adopted_on_a_first_attempt(
    infrastructure: Infrastructure,
    work: RequestWork,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    """An account of the same name that no row of ours knows is someone else's (another client of
    the agency, staff): a first attempt cannot have created it, so it creates its own."""
    someone_elses = control.add_ad_account(meta_world.meta_business_id, "Spring sale", currency="EUR")
    request_id = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.meta_id not in (None, someone_elses)
    counters = control.counters()
    assert counters.objects.ad_accounts == 2
    assert counters.calls.by_route[CREATE_ACCOUNT_ROUTE] == 1
    (account,) = await rows(infrastructure, Account)
    assert account.meta_account_id == result.meta_id


class CrashOnCreate:
    """The Meta client of a worker killed at its create call: right after Meta created the object
    (`created=True`), or just before the call reached Meta."""

    def __init__(self, meta: IMetaClient, *, created: bool) -> None:
        self._meta = meta
        self._created = created

    def __getattr__(self, name: str) -> object:
        return getattr(self._meta, name)

    async def create_ad_account(
        self, business_id: str, *, name: str, currency: str, timezone_name: str, token: str
    ) -> MetaAdAccount:
        if self._created:
            await self._meta.create_ad_account(
                business_id, name=name, currency=currency, timezone_name=timezone_name, token=token
            )
        raise SystemExit("worker killed")

    async def create_pixel(self, business_id: str, *, name: str, token: str) -> MetaPixel:
        if self._created:
            await self._meta.create_pixel(business_id, name=name, token=token)
        raise SystemExit("worker killed")


async def crash_on_create(
    infrastructure: Infrastructure, meta: IMetaClient, settings: Settings, request_id: uuid.UUID, *, created: bool
) -> None:
    crashing = infrastructure.request_work(cast(IMetaClient, CrashOnCreate(meta, created=created)), settings)
    with pytest.raises(SystemExit):
        await crashing.carry_out(request_id)
    assert (await stored_request(infrastructure, request_id)).status is RequestStatus.APPROVED


async def creation_marker(infrastructure: Infrastructure, request_id: uuid.UUID) -> dict[str, Any]:
    """The request's raw `result`, where the work keeps its creation marker."""
    async with infrastructure.unit_of_work() as uow:
        request = await uow.session.get(Request, request_id)
        assert request is not None
        assert request.result is not None
        return request.result


async def test_a_rerun_after_a_crash_between_meta_and_the_commit_makes_one_account(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    request_id = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))
    await crash_on_create(infrastructure, meta, work_settings, request_id, created=True)
    assert await count(infrastructure, Account) == 0
    assert control.counters().objects.ad_accounts == 1
    # Recorded (and committed) before Meta was asked: the crash could not take it back.
    marker = await creation_marker(infrastructure, request_id)
    assert marker["creation_started_at"]
    assert marker["preexisting_meta_ids"] == []

    rerun = infrastructure.request_work(meta, work_settings)
    assert await rerun.carry_out(request_id) is RequestStatus.COMPLETED

    assert control.counters().objects.ad_accounts == 1
    assert control.counters().calls.by_route[CREATE_ACCOUNT_ROUTE] == 1
    (account,) = await rows(infrastructure, Account)
    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert (result.account_id, result.meta_id) == (account.id, account.meta_account_id)
    # Completing replaced the marker with the result.
    assert "creation_started_at" not in await creation_marker(infrastructure, request_id)


async def test_a_rerun_adopts_only_what_appeared_after_the_creation_started(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    """Someone else's unrecorded account of the same name (and the lowest id) was there before the
    first attempt; the rerun adopts the one that attempt created, not that one."""
    someone_elses = control.add_ad_account(meta_world.meta_business_id, "Spring sale", currency="EUR")
    request_id = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))
    await crash_on_create(infrastructure, meta, work_settings, request_id, created=True)
    assert (await creation_marker(infrastructure, request_id))["preexisting_meta_ids"] == [someone_elses]

    assert await infrastructure.request_work(meta, work_settings).carry_out(request_id) is RequestStatus.COMPLETED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.meta_id not in (None, someone_elses)
    assert control.counters().objects.ad_accounts == 2
    assert control.counters().calls.by_route[CREATE_ACCOUNT_ROUTE] == 1
    (account,) = await rows(infrastructure, Account)
    assert account.meta_account_id == result.meta_id


async def test_a_rerun_after_a_crash_before_meta_was_called_creates_the_account(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    someone_elses = control.add_ad_account(meta_world.meta_business_id, "Spring sale", currency="EUR")
    request_id = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))
    await crash_on_create(infrastructure, meta, work_settings, request_id, created=False)

    assert await infrastructure.request_work(meta, work_settings).carry_out(request_id) is RequestStatus.COMPLETED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.meta_id not in (None, someone_elses)
    assert control.counters().objects.ad_accounts == 2


async def test_an_account_known_here_is_not_adopted(
    infrastructure: Infrastructure,
    work: RequestWork,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    """Another request's account of the same name is someone else's: a new one is created."""
    existing = control.add_ad_account(meta_world.meta_business_id, "Spring sale", currency="EUR")
    await add_account(
        infrastructure,
        workspace_id=meta_world.workspace_id,
        business_manager_id=meta_world.business_manager_id,
        meta_account_id=existing,
        name="Spring sale",
    )
    request_id = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.meta_id not in (None, existing)
    assert control.counters().objects.ad_accounts == 2


async def test_two_concurrent_deliveries_make_one_account(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    request_id = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))
    # Slow Meta down so that both deliveries are surely in flight at once.
    control.set_latency(150)
    first, second = infrastructure.request_work(meta, work_settings), infrastructure.request_work(meta, work_settings)

    outcomes = await asyncio.gather(first.carry_out(request_id), second.carry_out(request_id))

    assert list(outcomes) == [RequestStatus.COMPLETED, RequestStatus.COMPLETED]
    counters = control.counters()
    assert counters.objects.ad_accounts == 1
    assert counters.calls.by_route[CREATE_ACCOUNT_ROUTE] == 1
    assert await count(infrastructure, Account) == 1
    actions = [
        entry.action for entry in await audit_entries(infrastructure, entity_type="request", entity_id=request_id)
    ]
    assert actions.count("complete") == 1


async def test_requests_that_are_not_approved_are_left_alone(
    infrastructure: Infrastructure,
    work: RequestWork,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    async with infrastructure.unit_of_work() as uow:
        waiting = await uow.requests.submit(
            meta_world.workspace_id, account_payload(meta_world), actor=staff(), idempotency_key=None
        )

    assert await work.carry_out(waiting.id) is RequestStatus.WAITING_FOR_APPROVAL
    assert await work.carry_out(uuid.uuid4()) is None

    assert (await stored_request(infrastructure, waiting.id)).status is RequestStatus.WAITING_FOR_APPROVAL
    assert control.counters().calls.http_calls == 0


# --- errors ------------------------------------------------------------------------------------


async def test_a_revoked_token_fails_the_request_and_flags_the_business_manager(
    infrastructure: Infrastructure,
    work: RequestWork,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    request_id = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))
    control.revoke_token(meta_world.business.token)

    assert await work.carry_out(request_id) is RequestStatus.FAILED

    request = await stored_request(infrastructure, request_id)
    assert request.status is RequestStatus.FAILED
    assert request.result is not None
    assert request.result.failure_reason is not None
    reason = request.result.failure_reason
    assert "token" in reason
    assert "code=190" in reason
    assert meta_world.meta_business_id in reason
    assert meta_world.business.token not in reason
    (business_manager,) = await rows(
        infrastructure, BusinessManager, BusinessManager.id == meta_world.business_manager_id
    )
    assert business_manager.status is BusinessManagerStatus.NEEDS_ATTENTION
    (flagged,) = await audit_entries(
        infrastructure, entity_type="business_manager", entity_id=meta_world.business_manager_id
    )
    assert flagged.action == "token_refused"
    assert flagged.before is not None
    assert flagged.before["status"] == "active"
    assert flagged.after is not None
    assert flagged.after["status"] == "needs_attention"
    # One call was refused; nothing was retried, and a redelivery calls Meta no more.
    assert control.counters().calls.http_calls == 1
    assert await work.carry_out(request_id) is RequestStatus.FAILED
    assert control.counters().calls.http_calls == 1
    assert await count(infrastructure, Account) == 0


async def test_a_business_manager_that_needs_attention_fails_the_request_without_calling_meta(
    infrastructure: Infrastructure, work: RequestWork, control: SimulatorControl, workspace_id: uuid.UUID
) -> None:
    business = control.add_business("Agency")
    business_manager_id = await add_business_manager(
        infrastructure,
        meta_business_id=business.id,
        token=business.token,
        status=BusinessManagerStatus.NEEDS_ATTENTION,
    )
    payload = AccountCreationPayload(
        name="A", currency="EUR", timezone="Europe/Berlin", business_manager_id=business_manager_id
    )
    request_id = await approved_request(infrastructure, workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.FAILED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.failure_reason is not None
    assert "needs_attention" in result.failure_reason
    assert control.counters().calls.http_calls == 0


async def test_a_short_rate_limit_is_waited_out_within_the_run(
    infrastructure: Infrastructure,
    work: RequestWork,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    request_id = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))
    # Meta asks for about 10 ms, under the test settings' longest back-off.
    control.add_fault(FaultKind.RATE_LIMIT, count=2, regain_minutes=0.0002)

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    counters = control.counters()
    assert counters.calls.faults_served == 2
    assert counters.objects.ad_accounts == 1


async def test_a_long_rate_limit_holds_the_request_until_metas_regain_time_then_it_completes(
    infrastructure: Infrastructure,
    work: RequestWork,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    request_id = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))
    # Meta asks for 5 minutes: more than a run sleeps, so the run ends and the request waits.
    control.add_fault(FaultKind.RATE_LIMIT, count=100, regain_minutes=5)
    before = utcnow()

    assert await work.carry_out(request_id) is RequestStatus.APPROVED

    held = await stored_request(infrastructure, request_id)
    assert held.retry_at is not None
    assert held.retry_at - before >= dt.timedelta(minutes=5)
    assert control.counters().calls.faults_served == 1  # no call after Meta said to wait
    async with infrastructure.unit_of_work() as uow:
        assert await uow.requests.requeue_stalled_requests(cutoff=utcnow()) == 0  # not before retry_at

    control.clear_faults()
    assert await work.carry_out(request_id) is RequestStatus.COMPLETED  # the requeued run
    assert control.counters().objects.ad_accounts == 1


async def test_server_errors_hold_the_request_and_fail_it_retryable_past_the_deadline(
    infrastructure: Infrastructure,
    work: RequestWork,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    request_id = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))
    control.add_fault(FaultKind.SERVER_ERROR, count=100)

    assert await work.carry_out(request_id) is RequestStatus.APPROVED
    assert control.counters().calls.faults_served == MAX_ATTEMPTS
    held = await stored_request(infrastructure, request_id)
    assert held.retry_at is not None
    assert held.retry_at - utcnow() > dt.timedelta(seconds=30)

    past_deadline = infrastructure.request_work(
        meta, work_settings.model_copy(update={"task_retry_deadline_seconds": 0.001})
    )
    assert await past_deadline.carry_out(request_id) is RequestStatus.FAILED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.retryable
    assert result.failure_reason is not None
    assert f"after {MAX_ATTEMPTS} attempts" in result.failure_reason
    assert "An unknown error has occurred" in result.failure_reason
    assert control.counters().calls.faults_served == 2 * MAX_ATTEMPTS
    (business_manager,) = await rows(
        infrastructure, BusinessManager, BusinessManager.id == meta_world.business_manager_id
    )
    assert business_manager.status is BusinessManagerStatus.ACTIVE
    assert await count(infrastructure, Account) == 0

    # Staff retry it: approved again, queued, audited; Meta is back and the work completes.
    approver = staff()
    async with infrastructure.unit_of_work() as uow:
        retried = await uow.requests.retry_request(request_id, actor=approver, idempotency_key="retry-1")
    assert retried.status is RequestStatus.APPROVED
    assert retried.result is None
    async with infrastructure.unit_of_work() as uow:
        again = await uow.requests.retry_request(request_id, actor=approver, idempotency_key="retry-1")
    assert again.id == request_id
    assert [entry.action for entry in await audit_entries(infrastructure, entity_type="request", entity_id=request_id)][
        -1
    ] == "retry"
    control.clear_faults()
    assert await work.carry_out(request_id) is RequestStatus.COMPLETED


async def test_a_permission_error_fails_the_request_at_once(
    infrastructure: Infrastructure,
    work: RequestWork,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    request_id = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))
    control.add_fault(FaultKind.PERMISSION, count=1)

    assert await work.carry_out(request_id) is RequestStatus.FAILED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.failure_reason is not None
    assert "code=200" in result.failure_reason
    assert control.counters().calls.http_calls == 1


# --- pixel creation ----------------------------------------------------------------------------


async def test_pixel_creation_creates_the_pixel_on_meta_and_here(
    infrastructure: Infrastructure,
    work: RequestWork,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    payload = PixelCreationPayload(name="Checkout", business_manager_id=meta_world.business_manager_id)
    request_id = await approved_request(infrastructure, meta_world.workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.pixel_id is not None
    assert result.meta_id is not None
    on_meta = control.pixel(result.meta_id)
    assert (on_meta["name"], on_meta["business_id"]) == ("Checkout", meta_world.meta_business_id)
    (pixel,) = await rows(infrastructure, Pixel, Pixel.id == result.pixel_id)
    assert (pixel.workspace_id, pixel.business_manager_id, pixel.meta_pixel_id, pixel.name) == (
        meta_world.workspace_id,
        meta_world.business_manager_id,
        result.meta_id,
        "Checkout",
    )
    (created,) = await audit_entries(infrastructure, entity_type="pixel", entity_id=pixel.id)
    assert created.action == "create"
    assert created.after is not None
    assert created.after["account_ids"] == []

    before = control.counters()
    assert await work.carry_out(request_id) is RequestStatus.COMPLETED
    assert control.counters().objects == before.objects


async def test_pixel_creation_does_not_adopt_a_same_name_pixel_on_a_first_attempt(
    infrastructure: Infrastructure,
    work: RequestWork,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    someone_elses = control.add_pixel(meta_world.meta_business_id, "Checkout")
    payload = PixelCreationPayload(name="Checkout", business_manager_id=meta_world.business_manager_id)
    request_id = await approved_request(infrastructure, meta_world.workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.meta_id not in (None, someone_elses)
    assert control.counters().objects.pixels == 2


async def test_pixel_creation_rerun_adopts_the_pixel_its_first_attempt_created(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    known = control.add_pixel(meta_world.meta_business_id, "Checkout")
    await add_pixel(
        infrastructure,
        workspace_id=meta_world.workspace_id,
        business_manager_id=meta_world.business_manager_id,
        meta_pixel_id=known,
        name="Checkout",
    )
    someone_elses = control.add_pixel(meta_world.meta_business_id, "Checkout")
    control.add_pixel(meta_world.meta_business_id, "Another name")
    payload = PixelCreationPayload(name="Checkout", business_manager_id=meta_world.business_manager_id)
    request_id = await approved_request(infrastructure, meta_world.workspace_id, payload)
    await crash_on_create(infrastructure, meta, work_settings, request_id, created=True)
    assert control.counters().objects.pixels == 4

    assert await infrastructure.request_work(meta, work_settings).carry_out(request_id) is RequestStatus.COMPLETED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.meta_id not in (None, known, someone_elses)
    assert control.counters().objects.pixels == 4
    (pixel,) = await rows(infrastructure, Pixel, Pixel.meta_pixel_id == result.meta_id)
    assert pixel.id == result.pixel_id


# --- spend cap -----------------------------------------------------------------------------------


async def test_spend_cap_change_sets_the_cap_on_meta_and_here(
    infrastructure: Infrastructure,
    work: RequestWork,
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
    work: RequestWork,
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


# --- pixel share ---------------------------------------------------------------------------------


async def share_setup(
    infrastructure: Infrastructure, control: SimulatorControl, meta_world: MetaWorld, workspace_id: uuid.UUID
) -> tuple[uuid.UUID, str, Sequence[tuple[uuid.UUID, str]]]:
    meta_pixel_id = control.add_pixel(meta_world.meta_business_id, "Shop")
    pixel_id = await add_pixel(
        infrastructure,
        workspace_id=workspace_id,
        business_manager_id=meta_world.business_manager_id,
        meta_pixel_id=meta_pixel_id,
    )
    accounts = []
    for name in ("One", "Two"):
        meta_account_id = control.add_ad_account(meta_world.meta_business_id, name, currency="EUR")
        account_id = await add_account(
            infrastructure,
            workspace_id=workspace_id,
            business_manager_id=meta_world.business_manager_id,
            meta_account_id=meta_account_id,
            name=name,
        )
        accounts.append((account_id, meta_account_id))
    return pixel_id, meta_pixel_id, accounts


async def test_pixel_share_shares_on_meta_and_records_the_shares(
    infrastructure: Infrastructure,
    work: RequestWork,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    pixel_id, meta_pixel_id, accounts = await share_setup(infrastructure, control, meta_world, meta_world.workspace_id)
    payload = PixelSharePayload(pixel_id=pixel_id, account_ids=[account_id for account_id, _ in accounts])
    request_id = await approved_request(infrastructure, meta_world.workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    shared = cast(list[str], control.pixel(meta_pixel_id)["shared_account_ids"])
    assert sorted(shared) == sorted(meta_id.removeprefix("act_") for _, meta_id in accounts)
    shares = await rows(infrastructure, PixelAccount, PixelAccount.pixel_id == pixel_id)
    assert {share.account_id for share in shares} == {account_id for account_id, _ in accounts}
    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.pixel_id == pixel_id
    (pixel,) = await rows(infrastructure, Pixel, Pixel.id == pixel_id)
    assert pixel.version == 2
    (entry,) = await audit_entries(infrastructure, entity_type="pixel", entity_id=pixel_id)
    assert entry.action == "share"
    assert entry.before is not None
    assert entry.before["account_ids"] == []
    assert entry.after is not None
    assert len(entry.after["account_ids"]) == 2


async def test_pixel_share_keeps_shares_that_exist_already(
    infrastructure: Infrastructure,
    work: RequestWork,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    pixel_id, _, accounts = await share_setup(infrastructure, control, meta_world, meta_world.workspace_id)
    (first, _), (second, _) = accounts
    async with infrastructure.unit_of_work() as uow:
        uow.session.add(PixelAccount(pixel_id=pixel_id, account_id=first))
    request_id = await approved_request(
        infrastructure, meta_world.workspace_id, PixelSharePayload(pixel_id=pixel_id, account_ids=[first, second])
    )

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    shares = await rows(infrastructure, PixelAccount, PixelAccount.pixel_id == pixel_id)
    assert sorted(share.account_id for share in shares) == sorted([first, second])


async def test_pixel_share_with_an_account_gone_from_the_workspace_fails_without_calling_meta(
    infrastructure: Infrastructure,
    work: RequestWork,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    pixel_id, meta_pixel_id, accounts = await share_setup(infrastructure, control, meta_world, meta_world.workspace_id)
    (first, _), (second, _) = accounts
    request_id = await approved_request(
        infrastructure, meta_world.workspace_id, PixelSharePayload(pixel_id=pixel_id, account_ids=[first, second])
    )
    async with infrastructure.unit_of_work() as uow:
        account = await uow.session.get(Account, second)
        assert account is not None
        account.status = AccountStatus.ARCHIVED
    calls = control.counters().calls.http_calls

    assert await work.carry_out(request_id) is RequestStatus.FAILED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.failure_reason is not None
    assert str(second) in result.failure_reason
    assert control.pixel(meta_pixel_id)["shared_account_ids"] == []
    assert control.counters().calls.http_calls == calls
    assert await count(infrastructure, PixelAccount) == 0


# --- business manager connection -----------------------------------------------------------------


async def test_business_manager_connection_reads_the_business_and_adds_it(
    infrastructure: Infrastructure, work: RequestWork, control: SimulatorControl, workspace_id: uuid.UUID
) -> None:
    client = control.add_business("Client Co", verification_status="pending")
    # The simulator has no partner relationships: a token reads its own business only. The
    # agency's token stands for a partner's here by being the one of the client's business.
    await add_business_manager(infrastructure, meta_business_id="999000111", token=client.token)
    payload = BusinessManagerConnectionPayload(meta_business_id=client.id, name="Client Co (ours)")
    request_id = await approved_request(infrastructure, workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.business_manager_id is not None
    assert result.meta_id == client.id
    (connected,) = await rows(infrastructure, BusinessManager, BusinessManager.id == result.business_manager_id)
    assert (connected.meta_business_id, connected.name, connected.workspace_id) == (
        client.id,
        "Client Co (ours)",
        workspace_id,
    )
    assert (connected.ownership, connected.status, connected.verification_status) == (
        BusinessManagerOwnership.CLIENT,
        BusinessManagerStatus.ACTIVE,
        BusinessVerificationStatus.PENDING,
    )
    assert connected.encrypted_token is None
    (created,) = await audit_entries(infrastructure, entity_type="business_manager", entity_id=connected.id)
    assert created.action == "create"
    assert created.after is not None
    assert created.after["has_system_user_token"] is False


@pytest.mark.parametrize(
    ("meta_status", "stored"),
    [
        ("rejected", BusinessVerificationStatus.FAILED),
        ("pending_need_more_info", BusinessVerificationStatus.PENDING),
        ("verified", BusinessVerificationStatus.VERIFIED),
    ],
)
async def test_business_manager_connection_stores_the_verification_status_the_sync_would(
    infrastructure: Infrastructure,
    work: RequestWork,
    control: SimulatorControl,
    workspace_id: uuid.UUID,
    meta_status: str,
    stored: BusinessVerificationStatus,
) -> None:
    """One converter for Meta's verification status: a business Meta calls "rejected" is FAILED
    from the moment it is connected, not NOT_VERIFIED until the next sync flips it."""
    client = control.add_business("Client Co", verification_status=meta_status)
    await add_business_manager(infrastructure, meta_business_id="999000111", token=client.token)
    payload = BusinessManagerConnectionPayload(meta_business_id=client.id, name="Client Co (ours)")
    request_id = await approved_request(infrastructure, workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    (connected,) = await rows(infrastructure, BusinessManager, BusinessManager.id == result.business_manager_id)
    assert connected.verification_status is stored


async def test_business_manager_connection_fails_when_meta_will_not_show_the_business(
    infrastructure: Infrastructure,
    work: RequestWork,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    client = control.add_business("Not a partner")
    payload = BusinessManagerConnectionPayload(meta_business_id=client.id, name="Client")
    request_id = await approved_request(infrastructure, meta_world.workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.FAILED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.failure_reason is not None
    assert f"Meta refused to read business {client.id}" in result.failure_reason
    assert await count(infrastructure, BusinessManager) == 1


async def test_business_manager_connection_fails_without_a_platform_business_manager(
    infrastructure: Infrastructure, work: RequestWork, control: SimulatorControl, workspace_id: uuid.UUID
) -> None:
    payload = BusinessManagerConnectionPayload(meta_business_id="123456", name="Client")
    request_id = await approved_request(infrastructure, workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.FAILED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.failure_reason is not None
    assert "no active platform business manager" in result.failure_reason
    assert control.counters().calls.http_calls == 0


async def test_two_reruns_racing_for_one_unrecorded_account_end_with_one_each(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    """Two requests of one name, both past a first attempt, find the same two orphans and pick the
    same one; the one that loses the insert looks again and takes the other."""
    first = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))
    second = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))
    for request_id in (first, second):
        await crash_on_create(infrastructure, meta, work_settings, request_id, created=False)
    orphans = {
        control.add_ad_account(meta_world.meta_business_id, "Spring sale", currency="EUR"),
        control.add_ad_account(meta_world.meta_business_id, "Spring sale", currency="EUR"),
    }
    control.set_latency(150)

    outcomes = await asyncio.gather(
        infrastructure.request_work(meta, work_settings).carry_out(first),
        infrastructure.request_work(meta, work_settings).carry_out(second),
    )

    assert list(outcomes) == [RequestStatus.COMPLETED, RequestStatus.COMPLETED]
    results = [(await stored_request(infrastructure, request_id)).result for request_id in (first, second)]
    meta_ids = {result.meta_id for result in results if result is not None}
    assert meta_ids == orphans
    assert control.counters().calls.by_route.get(CREATE_ACCOUNT_ROUTE, 0) == 0
    assert {account.meta_account_id for account in await rows(infrastructure, Account)} == meta_ids


class PausedCreate:
    """A Meta client whose account creation waits, once inside, until the test lets it go on."""

    def __init__(self, meta: IMetaClient) -> None:
        self._meta = meta
        self.entered = asyncio.Event()
        self.go_on = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._meta, name)

    async def create_ad_account(
        self, business_id: str, *, name: str, currency: str, timezone_name: str, token: str
    ) -> MetaAdAccount:
        self.entered.set()
        await self.go_on.wait()
        return await self._meta.create_ad_account(
            business_id, name=name, currency=currency, timezone_name=timezone_name, token=token
        )


async def delete_business_manager(infrastructure: Infrastructure, business_manager_id: uuid.UUID) -> None:
    async with infrastructure.unit_of_work() as uow:
        await uow.business_managers.delete_business_manager(business_manager_id)


async def test_a_business_manager_cannot_be_deleted_while_an_account_is_created_in_it(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    """Deleting waits for the creation (FOR KEY SHARE) and then sees the account: refused."""
    request_id = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))
    paused = PausedCreate(meta)
    creation = asyncio.create_task(
        infrastructure.request_work(cast(IMetaClient, paused), work_settings).carry_out(request_id)
    )
    await asyncio.wait_for(paused.entered.wait(), timeout=5)
    deletion = asyncio.create_task(delete_business_manager(infrastructure, meta_world.business_manager_id))
    await asyncio.sleep(0.3)
    assert not deletion.done()  # waits for the creation's lock

    paused.go_on.set()
    assert await creation is RequestStatus.COMPLETED
    with pytest.raises(BusinessManagerInUseException):
        await deletion
    (business_manager,) = await rows(
        infrastructure, BusinessManager, BusinessManager.id == meta_world.business_manager_id
    )
    assert business_manager.status is BusinessManagerStatus.ACTIVE
    assert await count(infrastructure, Account) == 1


async def test_a_client_business_manager_of_another_workspace_is_refused(
    infrastructure: Infrastructure, work: RequestWork, control: SimulatorControl, meta_world: MetaWorld
) -> None:
    async with infrastructure.unit_of_work() as uow:
        other = await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name="Other client"))
    business = control.add_business("Other client's business")
    business_manager_id = await add_business_manager(
        infrastructure,
        meta_business_id=business.id,
        token=business.token,
        ownership=BusinessManagerOwnership.CLIENT,
        workspace_id=other.id,
    )
    payload = AccountCreationPayload(
        name="A", currency="EUR", timezone="Europe/Berlin", business_manager_id=business_manager_id
    )
    request_id = await approved_request(infrastructure, meta_world.workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.FAILED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.failure_reason is not None
    assert "cannot be used by workspace" in result.failure_reason
    assert control.counters().calls.by_route.get(CREATE_ACCOUNT_ROUTE, 0) == 0
    assert await count(infrastructure, Account) == 0


async def test_a_token_that_cannot_be_decrypted_fails_the_request_without_calling_meta(
    infrastructure: Infrastructure, work: RequestWork, control: SimulatorControl, meta_world: MetaWorld
) -> None:
    """A token encrypted with a key no longer configured (rotated out)."""
    async with infrastructure.unit_of_work() as uow:
        business_manager = await uow.session.get(BusinessManager, meta_world.business_manager_id)
        assert business_manager is not None
        business_manager.encrypted_token = Fernet(Fernet.generate_key()).encrypt(b"another-key").decode()
    request_id = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))

    assert await work.carry_out(request_id) is RequestStatus.FAILED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.failure_reason is not None
    assert "cannot be decrypted" in result.failure_reason
    assert control.counters().calls.http_calls == 0
