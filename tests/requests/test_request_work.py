"""Carrying out approved requests (server.requests.work), driven through account creation: what makes it
safe to repeat (the row lock, creation markers, adopting only what a first attempt created) and how
Meta's errors hold or fail a request."""

import asyncio
import datetime as dt
import uuid
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import select

from devstack.meta_simulator import FaultKind, SimulatorControl
from server.accounts.models import Account
from server.business_managers.models import BusinessManager, BusinessManagerStatus
from server.clients.meta import IMetaClient
from server.composition import Infrastructure, UnitOfWork
from server.config import Settings
from server.db import utcnow
from server.outbox.models import OutboxMessage
from server.requests.models import Request, RequestStatus
from server.requests.schemas import AccountCreationPayload
from server.requests.service import REQUEST_APPROVED_TOPIC
from server.requests.work import RequestWork
from server.tenancy import SYSTEM
from tests.meta_work import (
    CREATE_ACCOUNT_ROUTE,
    MAX_ATTEMPTS,
    MetaWorld,
    account_payload,
    add_account,
    add_business_manager,
    approved_request,
    audit_entries,
    count,
    crash_on_create,
    rows,
    staff,
    stored_request,
)

# --- safe to repeat ------------------------------------------------------------------------------


async def test_a_redelivery_after_completion_does_nothing(
    infrastructure: Infrastructure,
    work: RequestWork[UnitOfWork],
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
    work: RequestWork[UnitOfWork],
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
    work: RequestWork[UnitOfWork],
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
    work: RequestWork[UnitOfWork],
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


# --- errors ------------------------------------------------------------------------------------


async def test_a_revoked_token_fails_the_request_and_flags_the_business_manager(
    infrastructure: Infrastructure,
    work: RequestWork[UnitOfWork],
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
    infrastructure: Infrastructure, work: RequestWork[UnitOfWork], control: SimulatorControl, workspace_id: uuid.UUID
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
    work: RequestWork[UnitOfWork],
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
    work: RequestWork[UnitOfWork],
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
    work: RequestWork[UnitOfWork],
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
    work: RequestWork[UnitOfWork],
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


async def test_a_token_that_cannot_be_decrypted_fails_the_request_without_calling_meta(
    infrastructure: Infrastructure, work: RequestWork[UnitOfWork], control: SimulatorControl, meta_world: MetaWorld
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


# --- lost work found again -----------------------------------------------------------------------


async def test_the_requeue_queues_lost_work_again_but_not_work_in_progress(
    infrastructure: Infrastructure, meta_world: MetaWorld
) -> None:
    """An approved request whose task message was lost (a worker died, a Redis failover dropped it)
    is queued again once past the bound; one a worker is carrying out right now (it holds the row
    lock) is not, however long it takes."""
    lost = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))
    busy = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world, name="Busy"))
    async with infrastructure.unit_of_work() as worker:
        assert await worker.request_repository.lock(busy, scope=SYSTEM) is not None  # in progress
        async with infrastructure.unit_of_work() as uow:
            assert await uow.requests.requeue_stalled_requests(cutoff=utcnow()) == 1
        queued = await _approved_messages(infrastructure)
        assert queued.count(str(lost)) == 2, "the approval's message and the requeue's"
        assert queued.count(str(busy)) == 1, "the approval's message only"
    async with infrastructure.unit_of_work() as uow:  # the worker died: its lock went with it
        assert await uow.requests.requeue_stalled_requests(cutoff=utcnow()) == 2


async def _approved_messages(infrastructure: Infrastructure) -> list[str]:
    """The request ids of the `request.approved` outbox messages, one per message."""
    async with infrastructure.unit_of_work() as uow:
        payloads = await uow.session.scalars(
            select(OutboxMessage.payload).where(OutboxMessage.topic == REQUEST_APPROVED_TOPIC)
        )
        return [payload["request_id"] for payload in payloads]
