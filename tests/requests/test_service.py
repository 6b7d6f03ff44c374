"""RequestService against the real database: the queue, the lifecycle, idempotency, outbox and audit."""

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, update

from server.audit_logs.models import AuditLog
from server.auth.principal import Principal, PrincipalKind, set_current_principal
from server.composition import Infrastructure, UnitOfWork
from server.config import Settings
from server.db import utcnow
from server.exceptions import InvalidRequestException
from server.idempotency.exceptions import RequestIdReusedException
from server.outbox.models import OutboxMessage
from server.requests.events import REQUEST_CHANGED_TOPIC
from server.requests.exceptions import IllegalTransitionException, RequestNotFoundException
from server.requests.models import Request, RequestStatus, RequestType
from server.requests.schemas import (
    BusinessManagerConnectionPayload,
    PixelCreationPayload,
    RejectionSchema,
    RequestListRequestSchema,
    RequestPayload,
    RequestResponseSchema,
    RequestResultSchema,
)
from server.requests.service import REQUEST_APPROVED_TOPIC
from server.workspaces.schemas import WorkspaceCreateRequestSchema

# --- helpers -----------------------------------------------------------------------------------


@contextmanager
def acting_as(principal: Principal | None) -> Iterator[None]:
    """The caller the unit of work attributes its audit entries to, as the interceptor sets it."""
    set_current_principal(principal)
    try:
        yield
    finally:
        set_current_principal(None)


def member() -> Principal:
    return Principal(kind=PrincipalKind.USER, id=uuid.uuid4())


def reviewer() -> Principal:
    return Principal(kind=PrincipalKind.USER, id=uuid.uuid4(), system_permissions=frozenset({"requests.approve"}))


def pixel(name: str = "p") -> PixelCreationPayload:
    return PixelCreationPayload(name=name, business_manager_id=uuid.uuid4())


async def new_workspace(infrastructure: Infrastructure, name: str | None = None) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        workspace = await uow.workspaces.create_workspace(
            WorkspaceCreateRequestSchema(name=name or f"ws-{uuid.uuid4().hex[:8]}")
        )
    return workspace.id


@pytest.fixture
async def workspace(infrastructure: Infrastructure) -> uuid.UUID:
    return await new_workspace(infrastructure)


@pytest.fixture(params=[False, True], ids=["session", "direct"])
def direct(request: pytest.FixtureRequest) -> bool:
    """The unit of work the write runs in: SQLAlchemy's session, or asyncpg directly (the hot
    writes' servicers); every guarantee holds in both."""
    direct: bool = request.param
    return direct


async def submit(
    infrastructure: Infrastructure,
    workspace_id: uuid.UUID,
    payload: RequestPayload | None = None,
    *,
    actor: Principal | None = None,
    request_id: str | None = None,
    direct: bool = False,
) -> RequestResponseSchema:
    actor = actor or member()
    with acting_as(actor):
        async with infrastructure.unit_of_work(direct=direct) as uow:
            return await uow.requests.submit(workspace_id, payload or pixel(), actor=actor, idempotency_key=request_id)


async def force(infrastructure: Infrastructure, request_id: uuid.UUID, **values: Any) -> None:
    """Set columns directly, to put a request in a state the test needs."""
    async with infrastructure.unit_of_work() as uow:
        await uow.session.execute(update(Request).where(Request.id == request_id).values(**values))


async def stored(infrastructure: Infrastructure, request_id: uuid.UUID) -> RequestResponseSchema:
    async with infrastructure.unit_of_work() as uow:
        request = await uow.session.get(Request, request_id)
        assert request is not None
        return RequestResponseSchema.model_validate(request)


async def outbox(infrastructure: Infrastructure) -> list[OutboxMessage]:
    """Work queued for the workers (the change events for watchers are checked apart)."""
    async with infrastructure.unit_of_work() as uow:
        statement = select(OutboxMessage).where(OutboxMessage.topic != REQUEST_CHANGED_TOPIC)
        return list(await uow.session.scalars(statement.order_by(OutboxMessage.id)))


async def changes(infrastructure: Infrastructure) -> list[tuple[str, str | None, str]]:
    """The change events recorded for watchers: (kind, previous status, status), oldest first."""
    async with infrastructure.unit_of_work() as uow:
        statement = select(OutboxMessage).where(OutboxMessage.topic == REQUEST_CHANGED_TOPIC)
        messages = await uow.session.scalars(statement.order_by(OutboxMessage.id))
        events = [m.payload["event"] for m in messages]
    return [(e["kind"], e["previous_status"], e["request"]["status"]) for e in events]


async def audit_of(infrastructure: Infrastructure, request_id: uuid.UUID) -> list[AuditLog]:
    async with infrastructure.unit_of_work() as uow:
        statement = select(AuditLog).where(AuditLog.entity_type == "request", AuditLog.entity_id == request_id)
        return list(await uow.session.scalars(statement.order_by(AuditLog.id)))


async def count_requests(infrastructure: Infrastructure) -> int:
    async with infrastructure.unit_of_work() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(Request)) or 0)


# --- submit ------------------------------------------------------------------------------------


async def test_submit_queues_the_request_for_approval(
    infrastructure: Infrastructure, settings: Settings, workspace: uuid.UUID, direct: bool
) -> None:
    requester = member()
    payload = pixel("Checkout pixel")
    started = utcnow()
    request = await submit(infrastructure, workspace, payload, actor=requester, direct=direct)
    finished = utcnow()

    assert request.status is RequestStatus.WAITING_FOR_APPROVAL
    assert request.type is RequestType.PIXEL_CREATION
    assert request.workspace_id == workspace
    assert (request.requester_type, request.requester_id) == ("user", requester.id)
    assert request.payload == payload
    assert (request.reviewer_type, request.reviewer_id, request.reviewed_at, request.finished_at) == (
        None,
        None,
        None,
        None,
    )
    assert request.result is None
    assert request.version == 1
    ttl = dt.timedelta(days=settings.request_ttl_days)
    assert started + ttl <= request.expires_at <= finished + ttl
    assert await stored(infrastructure, request.id) == request

    (entry,) = await audit_of(infrastructure, request.id)
    assert (entry.action, entry.workspace_id) == ("request", workspace)
    assert (entry.actor_type, entry.actor_id) == ("user", requester.id)
    assert entry.before is None
    assert entry.after == request.model_dump(mode="json")
    assert await outbox(infrastructure) == []


async def test_submit_by_an_api_key_records_it_as_requester(
    infrastructure: Infrastructure, workspace: uuid.UUID
) -> None:
    key = Principal(kind=PrincipalKind.API_KEY, id=uuid.uuid4())
    request = await submit(
        infrastructure,
        workspace,
        BusinessManagerConnectionPayload(meta_business_id="1234567890", name="Client"),
        actor=key,
    )
    assert (request.requester_type, request.requester_id) == ("api_key", key.id)
    assert request.type is RequestType.BUSINESS_MANAGER_CONNECTION


async def test_a_retried_submit_returns_the_first_request(
    infrastructure: Infrastructure, workspace: uuid.UUID, direct: bool
) -> None:
    requester = member()
    payload = pixel()
    first = await submit(infrastructure, workspace, payload, actor=requester, request_id="req-1", direct=direct)
    again = await submit(infrastructure, workspace, payload, actor=requester, request_id="req-1", direct=direct)
    assert again == first
    assert await count_requests(infrastructure) == 1
    assert len(await audit_of(infrastructure, first.id)) == 1


async def test_concurrent_retried_submits_make_one_request(
    infrastructure: Infrastructure, workspace: uuid.UUID, direct: bool
) -> None:
    requester = member()
    payload = pixel()
    results = await asyncio.gather(
        *(
            submit(infrastructure, workspace, payload, actor=requester, request_id="req-c", direct=direct)
            for _ in range(4)
        )
    )
    assert len({r.id for r in results}) == 1
    assert await count_requests(infrastructure) == 1


async def test_the_same_request_id_with_another_payload_is_rejected(
    infrastructure: Infrastructure, workspace: uuid.UUID
) -> None:
    requester = member()
    await submit(infrastructure, workspace, pixel("first"), actor=requester, request_id="req-2")
    with pytest.raises(RequestIdReusedException) as reused:
        await submit(infrastructure, workspace, pixel("second"), actor=requester, request_id="req-2")
    assert reused.value.reason == "REQUEST_ID_REUSED"
    assert await count_requests(infrastructure) == 1


async def test_request_ids_are_the_callers_own(infrastructure: Infrastructure, workspace: uuid.UUID) -> None:
    payload = pixel()
    first = await submit(infrastructure, workspace, payload, actor=member(), request_id="req-3")
    second = await submit(infrastructure, workspace, payload, actor=member(), request_id="req-3")
    assert first.id != second.id


# --- get -----------------------------------------------------------------------------------------


async def test_get_request_is_scoped_to_its_workspace(infrastructure: Infrastructure, workspace: uuid.UUID) -> None:
    other = await new_workspace(infrastructure)
    request = await submit(infrastructure, workspace)
    async with infrastructure.unit_of_work() as uow:
        assert await uow.requests.get_request(request.id, workspace_id=workspace) == request
        with pytest.raises(RequestNotFoundException) as missing:
            await uow.requests.get_request(request.id, workspace_id=other)
        assert missing.value.reason == "REQUEST_NOT_FOUND"
        with pytest.raises(RequestNotFoundException):
            await uow.requests.get_request(uuid.uuid4(), workspace_id=workspace)


async def test_cancel_is_scoped_to_its_workspace(infrastructure: Infrastructure, workspace: uuid.UUID) -> None:
    other = await new_workspace(infrastructure)
    request = await submit(infrastructure, workspace)
    with pytest.raises(RequestNotFoundException):
        async with infrastructure.unit_of_work() as uow:
            await uow.requests.cancel_request(request.id, workspace_id=other)
    assert (await stored(infrastructure, request.id)).status is RequestStatus.WAITING_FOR_APPROVAL


# --- the transition table ------------------------------------------------------------------------

type Action = Callable[[UnitOfWork, RequestResponseSchema], Awaitable[RequestResponseSchema]]

ACTIONS: dict[str, tuple[Action, RequestStatus, RequestStatus, str]] = {
    # name: (call, from, to, reason when not from)
    "approve": (
        lambda uow, r: uow.requests.approve_request(r.id, actor=reviewer(), idempotency_key=None),
        RequestStatus.WAITING_FOR_APPROVAL,
        RequestStatus.APPROVED,
        "REQUEST_NOT_WAITING",
    ),
    "reject": (
        lambda uow, r: uow.requests.reject_request(r.id, RejectionSchema(reason="duplicate"), actor=reviewer()),
        RequestStatus.WAITING_FOR_APPROVAL,
        RequestStatus.REJECTED,
        "REQUEST_NOT_WAITING",
    ),
    "cancel": (
        lambda uow, r: uow.requests.cancel_request(r.id, workspace_id=r.workspace_id),
        RequestStatus.WAITING_FOR_APPROVAL,
        RequestStatus.CANCELLED,
        "REQUEST_NOT_WAITING",
    ),
    "complete": (
        lambda uow, r: uow.requests.complete_request(r.id, RequestResultSchema(pixel_id=uuid.uuid4(), meta_id="123")),
        RequestStatus.APPROVED,
        RequestStatus.COMPLETED,
        "REQUEST_NOT_APPROVED",
    ),
    "fail": (
        lambda uow, r: uow.requests.fail_request(r.id, RequestResultSchema(failure_reason="Meta refused")),
        RequestStatus.APPROVED,
        RequestStatus.FAILED,
        "REQUEST_NOT_APPROVED",
    ),
}


@pytest.mark.parametrize("start", list(RequestStatus))
@pytest.mark.parametrize("action", list(ACTIONS))
async def test_transition_table(
    infrastructure: Infrastructure, workspace: uuid.UUID, action: str, start: RequestStatus
) -> None:
    call, allowed_from, to, reason = ACTIONS[action]
    request = await submit(infrastructure, workspace)
    if start is not RequestStatus.WAITING_FOR_APPROVAL:
        await force(infrastructure, request.id, status=start)
    before = await stored(infrastructure, request.id)
    audited = len(await audit_of(infrastructure, request.id))
    changed = await changes(infrastructure)

    if start is allowed_from:
        async with infrastructure.unit_of_work() as uow:
            moved = await call(uow, before)
        assert moved.status is to
        assert moved.version == before.version + 1
        assert await stored(infrastructure, request.id) == moved
        (*_, entry) = await audit_of(infrastructure, request.id)
        assert len(await audit_of(infrastructure, request.id)) == audited + 1
        assert entry.action == action
        assert entry.workspace_id == workspace
        assert entry.before == before.model_dump(mode="json")
        assert entry.after == moved.model_dump(mode="json")
        expected_topics = [REQUEST_APPROVED_TOPIC] if action == "approve" else []
        assert [m.topic for m in await outbox(infrastructure)] == expected_topics
        # One change event for watchers, named for where the request went.
        assert await changes(infrastructure) == [*changed, (to.value, allowed_from.value, to.value)]
    elif action == "cancel" and start is RequestStatus.CANCELLED:
        async with infrastructure.unit_of_work() as uow:
            assert await call(uow, before) == before
        assert await stored(infrastructure, request.id) == before
        assert len(await audit_of(infrastructure, request.id)) == audited
    else:
        with pytest.raises(IllegalTransitionException) as illegal:
            async with infrastructure.unit_of_work() as uow:
                await call(uow, before)
        assert illegal.value.reason == reason
        assert illegal.value.metadata == {"id": str(request.id), "status": start.value, "to": to.value}
        assert await stored(infrastructure, request.id) == before
        assert await changes(infrastructure) == changed
        assert len(await audit_of(infrastructure, request.id)) == audited
        assert await outbox(infrastructure) == []


async def test_review_records_the_reviewer(infrastructure: Infrastructure, workspace: uuid.UUID) -> None:
    approver, rejecter = reviewer(), Principal(kind=PrincipalKind.API_KEY, id=uuid.uuid4())
    to_approve = await submit(infrastructure, workspace)
    to_reject = await submit(infrastructure, workspace)
    with acting_as(approver):
        async with infrastructure.unit_of_work() as uow:
            approved = await uow.requests.approve_request(to_approve.id, actor=approver, idempotency_key=None)
    with acting_as(rejecter):
        async with infrastructure.unit_of_work() as uow:
            rejected = await uow.requests.reject_request(
                to_reject.id, RejectionSchema(reason="  not in budget  "), actor=rejecter
            )
    assert (approved.reviewer_type, approved.reviewer_id) == ("user", approver.id)
    assert approved.reviewed_at is not None
    assert approved.finished_at is None
    assert (rejected.reviewer_type, rejected.reviewer_id) == ("api_key", rejecter.id)
    assert rejected.rejection_reason == "not in budget"
    assert rejected.reviewed_at is not None
    assert rejected.finished_at is not None
    assert [(e.actor_type, e.actor_id) for e in (await audit_of(infrastructure, to_approve.id))[1:]] == [
        ("user", approver.id)
    ]
    assert [(e.actor_type, e.actor_id) for e in (await audit_of(infrastructure, to_reject.id))[1:]] == [
        ("api_key", rejecter.id)
    ]


async def test_finishing_records_the_result(infrastructure: Infrastructure, workspace: uuid.UUID) -> None:
    request = await submit(infrastructure, workspace)
    await force(infrastructure, request.id, status=RequestStatus.APPROVED)
    result = RequestResultSchema(pixel_id=uuid.uuid4(), meta_id="99887766")
    async with infrastructure.unit_of_work() as uow:
        completed = await uow.requests.complete_request(request.id, result)
    assert completed.result == result
    assert completed.finished_at is not None


@pytest.mark.parametrize("data", [{}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 1001}])
def test_a_rejection_needs_a_reason(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RejectionSchema.model_validate(data)


# --- approval: outbox, races and idempotency -----------------------------------------------------


async def test_approval_queues_the_work_in_the_same_transaction(
    infrastructure: Infrastructure, workspace: uuid.UUID, direct: bool
) -> None:
    request = await submit(infrastructure, workspace)
    async with infrastructure.unit_of_work(direct=direct) as uow:
        await uow.requests.approve_request(request.id, actor=reviewer(), idempotency_key=None)
    (message,) = await outbox(infrastructure)
    assert message.topic == "request.approved"
    assert message.payload == {"request_id": str(request.id), "type": "pixel_creation"}
    assert message.published_at is None


async def test_a_rolled_back_approval_queues_nothing(infrastructure: Infrastructure, workspace: uuid.UUID) -> None:
    request = await submit(infrastructure, workspace)

    class Boom(Exception):
        pass

    async def approve_then_fail() -> None:
        async with infrastructure.unit_of_work() as uow:
            await uow.requests.approve_request(request.id, actor=reviewer(), idempotency_key=None)
            topics = (await uow.session.scalars(select(OutboxMessage.topic).order_by(OutboxMessage.id))).all()
            assert topics == [REQUEST_CHANGED_TOPIC, REQUEST_CHANGED_TOPIC, "request.approved"]  # not committed
            raise Boom

    with pytest.raises(Boom):
        await approve_then_fail()
    assert await outbox(infrastructure) == []
    assert await changes(infrastructure) == [("created", None, "waiting_for_approval")]
    assert (await stored(infrastructure, request.id)).status is RequestStatus.WAITING_FOR_APPROVAL
    assert [e.action for e in await audit_of(infrastructure, request.id)] == ["request"]


async def test_a_rolled_back_direct_approval_leaves_nothing(
    infrastructure: Infrastructure, workspace: uuid.UUID
) -> None:
    """A direct unit's statements are one transaction: its approval, event, audit entry and queued
    work all go when it rolls back."""
    request = await submit(infrastructure, workspace)

    class Boom(Exception):
        pass

    async def approve_then_fail() -> None:
        async with infrastructure.unit_of_work(direct=True) as uow:
            await uow.requests.approve_request(request.id, actor=reviewer(), idempotency_key="approve-boom")
            raise Boom

    with pytest.raises(Boom):
        await approve_then_fail()
    assert await outbox(infrastructure) == []
    assert await changes(infrastructure) == [("created", None, "waiting_for_approval")]
    assert (await stored(infrastructure, request.id)).status is RequestStatus.WAITING_FOR_APPROVAL
    assert [e.action for e in await audit_of(infrastructure, request.id)] == ["request"]
    # The key went with it: the approval can be made with it again.
    async with infrastructure.unit_of_work(direct=True) as uow:
        await uow.requests.approve_request(request.id, actor=reviewer(), idempotency_key="approve-boom")
    assert (await stored(infrastructure, request.id)).status is RequestStatus.APPROVED


async def test_a_direct_unit_has_no_session(infrastructure: Infrastructure) -> None:
    """A statement without a direct form fails instead of running outside the unit's transaction."""

    async def query() -> None:
        async with infrastructure.unit_of_work(direct=True) as uow:
            await uow.session.execute(select(1))

    with pytest.raises(RuntimeError, match="no ORM session"):
        await query()


async def test_of_two_concurrent_approvals_exactly_one_wins(
    infrastructure: Infrastructure, workspace: uuid.UUID, direct: bool
) -> None:
    request = await submit(infrastructure, workspace)
    first, second = reviewer(), reviewer()

    async def approve(actor: Principal) -> RequestResponseSchema:
        with acting_as(actor):
            async with infrastructure.unit_of_work(direct=direct) as uow:
                return await uow.requests.approve_request(request.id, actor=actor, idempotency_key=None)

    results = await asyncio.gather(approve(first), approve(second), return_exceptions=True)
    approved = [r for r in results if isinstance(r, RequestResponseSchema)]
    refused = [r for r in results if isinstance(r, IllegalTransitionException)]
    assert len(approved) == 1, results
    assert len(refused) == 1, results
    assert refused[0].reason == "REQUEST_NOT_WAITING"
    assert approved[0].status is RequestStatus.APPROVED
    assert await stored(infrastructure, request.id) == approved[0]
    assert len(await outbox(infrastructure)) == 1
    assert [e.action for e in await audit_of(infrastructure, request.id)] == ["request", "approve"]


async def test_the_loser_of_a_race_is_told_the_current_status(
    infrastructure: Infrastructure, workspace: uuid.UUID
) -> None:
    """An approval racing a rejection, made deterministic: the approval's transaction holds the request
    as read before the rejection commits, as `_move` holds the one its `_get` read."""
    request = await submit(infrastructure, workspace)
    async with infrastructure.unit_of_work() as approver:
        held = await approver.session.get(Request, request.id)
        assert held is not None
        assert held.status is RequestStatus.WAITING_FOR_APPROVAL
        async with infrastructure.unit_of_work() as rejecter:
            await rejecter.requests.reject_request(request.id, RejectionSchema(reason="no"), actor=reviewer())
        with pytest.raises(IllegalTransitionException) as lost:
            await approver.requests.approve_request(request.id, actor=reviewer(), idempotency_key=None)
    assert (await stored(infrastructure, request.id)).status is RequestStatus.REJECTED
    assert await outbox(infrastructure) == []
    assert lost.value.metadata["status"] == "rejected"


async def test_a_retried_approval_returns_the_first_result(
    infrastructure: Infrastructure, workspace: uuid.UUID, direct: bool
) -> None:
    request = await submit(infrastructure, workspace)
    approver = reviewer()
    async with infrastructure.unit_of_work(direct=direct) as uow:
        first = await uow.requests.approve_request(request.id, actor=approver, idempotency_key="approve-1")
    async with infrastructure.unit_of_work(direct=direct) as uow:
        again = await uow.requests.approve_request(request.id, actor=approver, idempotency_key="approve-1")
    assert again == first
    assert again.status is RequestStatus.APPROVED
    assert len(await outbox(infrastructure)) == 1
    assert [e.action for e in await audit_of(infrastructure, request.id)] == ["request", "approve"]


async def test_concurrent_retried_approvals_approve_once(
    infrastructure: Infrastructure, workspace: uuid.UUID, direct: bool
) -> None:
    request = await submit(infrastructure, workspace)
    approver = reviewer()

    async def approve() -> RequestResponseSchema:
        async with infrastructure.unit_of_work(direct=direct) as uow:
            return await uow.requests.approve_request(request.id, actor=approver, idempotency_key="approve-c")

    results = await asyncio.gather(approve(), approve(), approve())
    assert {r.version for r in results} == {2}
    assert len(await outbox(infrastructure)) == 1


async def test_an_approval_key_reused_for_another_request_is_rejected(
    infrastructure: Infrastructure, workspace: uuid.UUID, direct: bool
) -> None:
    first, second = await submit(infrastructure, workspace), await submit(infrastructure, workspace)
    approver = reviewer()
    async with infrastructure.unit_of_work(direct=direct) as uow:
        await uow.requests.approve_request(first.id, actor=approver, idempotency_key="approve-2")
    with pytest.raises(RequestIdReusedException) as reused:
        async with infrastructure.unit_of_work(direct=direct) as uow:
            await uow.requests.approve_request(second.id, actor=approver, idempotency_key="approve-2")
    assert reused.value.reason == "REQUEST_ID_REUSED"
    assert (await stored(infrastructure, second.id)).status is RequestStatus.WAITING_FOR_APPROVAL
    assert len(await outbox(infrastructure)) == 1


# --- lists ---------------------------------------------------------------------------------------

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


async def seed_queue(infrastructure: Infrastructure) -> tuple[uuid.UUID, uuid.UUID, list[RequestResponseSchema]]:
    """Five requests over two workspaces, one hour apart from T0, of mixed types and statuses."""
    a, b = await new_workspace(infrastructure, "A"), await new_workspace(infrastructure, "B")
    plan: list[tuple[uuid.UUID, RequestPayload, RequestStatus]] = [
        (a, pixel(), RequestStatus.WAITING_FOR_APPROVAL),
        (b, pixel(), RequestStatus.APPROVED),
        (a, BusinessManagerConnectionPayload(meta_business_id="111", name="C"), RequestStatus.WAITING_FOR_APPROVAL),
        (a, pixel(), RequestStatus.REJECTED),
        (b, BusinessManagerConnectionPayload(meta_business_id="222", name="D"), RequestStatus.WAITING_FOR_APPROVAL),
    ]
    requests = []
    for hour, (workspace_id, payload, status) in enumerate(plan):
        request = await submit(infrastructure, workspace_id, payload)
        await force(infrastructure, request.id, status=status, created_at=T0 + dt.timedelta(hours=hour))
        requests.append(await stored(infrastructure, request.id))
    return a, b, requests


async def list_all(infrastructure: Infrastructure, **query: Any) -> list[uuid.UUID]:
    async with infrastructure.unit_of_work() as uow:
        page = await uow.requests.list_requests(RequestListRequestSchema(**query))
    return [r.id for r in page.items]


async def list_workspace(infrastructure: Infrastructure, scope: uuid.UUID, **query: Any) -> list[uuid.UUID]:
    async with infrastructure.unit_of_work() as uow:
        page = await uow.requests.list_workspace_requests(scope, RequestListRequestSchema(**query))
    return [r.id for r in page.items]


async def test_lists_order_and_filters(infrastructure: Infrastructure) -> None:
    a, b, requests = await seed_queue(infrastructure)
    r = [request.id for request in requests]
    hour = dt.timedelta(hours=1)

    # The workspace's queue, newest first; the staff queue, oldest first.
    assert await list_workspace(infrastructure, a) == [r[3], r[2], r[0]]
    assert await list_workspace(infrastructure, b) == [r[4], r[1]]
    assert await list_all(infrastructure) == r

    # A workspace_id in the query cannot widen the workspace list.
    assert await list_workspace(infrastructure, a, workspace_id=b) == [r[3], r[2], r[0]]

    assert await list_all(infrastructure, type=RequestType.PIXEL_CREATION) == [r[0], r[1], r[3]]
    assert await list_all(infrastructure, status=RequestStatus.WAITING_FOR_APPROVAL) == [r[0], r[2], r[4]]
    assert await list_all(infrastructure, workspace_id=b) == [r[1], r[4]]
    assert await list_all(
        infrastructure, workspace_id=a, status=RequestStatus.WAITING_FOR_APPROVAL, type=RequestType.PIXEL_CREATION
    ) == [r[0]]
    # created_after is inclusive, created_before exclusive.
    assert await list_all(infrastructure, created_after=T0 + 2 * hour) == [r[2], r[3], r[4]]
    assert await list_all(infrastructure, created_before=T0 + 2 * hour) == [r[0], r[1]]
    assert await list_all(infrastructure, created_after=T0 + hour, created_before=T0 + 3 * hour) == [r[1], r[2]]
    assert await list_workspace(infrastructure, a, status=RequestStatus.REJECTED) == [r[3]]
    assert await list_workspace(infrastructure, a, created_before=T0 + 2 * hour) == [r[0]]
    assert await list_all(infrastructure, status=RequestStatus.EXPIRED) == []


async def test_pages_and_their_tokens(infrastructure: Infrastructure) -> None:
    a, b, requests = await seed_queue(infrastructure)
    r = [request.id for request in requests]

    async def walk(list_page: Callable[[str], Awaitable[tuple[list[uuid.UUID], str]]]) -> list[uuid.UUID]:
        seen: list[uuid.UUID] = []
        token = ""
        while True:
            ids, token = await list_page(token)
            assert len(ids) <= 2
            seen += ids
            if not token:
                return seen

    async def staff_page(token: str) -> tuple[list[uuid.UUID], str]:
        async with infrastructure.unit_of_work() as uow:
            page = await uow.requests.list_requests(RequestListRequestSchema(page_size=2, page_token=token))
        return [x.id for x in page.items], page.next_page_token

    async def workspace_page(token: str) -> tuple[list[uuid.UUID], str]:
        async with infrastructure.unit_of_work() as uow:
            page = await uow.requests.list_workspace_requests(
                a, RequestListRequestSchema(page_size=2, page_token=token)
            )
        return [x.id for x in page.items], page.next_page_token

    assert await walk(staff_page) == r
    assert await walk(workspace_page) == [r[3], r[2], r[0]]

    async with infrastructure.unit_of_work() as uow:
        staff_token = (await uow.requests.list_requests(RequestListRequestSchema(page_size=1))).next_page_token
        workspace_token = (
            await uow.requests.list_workspace_requests(a, RequestListRequestSchema(page_size=1))
        ).next_page_token
        filtered_token = (
            await uow.requests.list_requests(
                RequestListRequestSchema(page_size=1, status=RequestStatus.WAITING_FOR_APPROVAL)
            )
        ).next_page_token
        misuses = [
            uow.requests.list_requests(RequestListRequestSchema(page_token=staff_token, type=RequestType.PIXEL_SHARE)),
            uow.requests.list_requests(RequestListRequestSchema(page_token=staff_token, workspace_id=a)),
            uow.requests.list_requests(RequestListRequestSchema(page_token=staff_token, created_after=T0)),
            uow.requests.list_requests(RequestListRequestSchema(page_token=filtered_token)),
            uow.requests.list_requests(RequestListRequestSchema(page_token=workspace_token, workspace_id=a)),
            uow.requests.list_workspace_requests(b, RequestListRequestSchema(page_token=workspace_token)),
            uow.requests.list_workspace_requests(a, RequestListRequestSchema(page_token=staff_token)),
            uow.requests.list_requests(RequestListRequestSchema(page_token=staff_token + "x")),
        ]
        for misuse in misuses:
            with pytest.raises(InvalidRequestException) as invalid:
                await misuse
            assert invalid.value.violations[0].reason == "INVALID_PAGE_TOKEN"


# --- expiry --------------------------------------------------------------------------------------


async def test_expiry_takes_only_waiting_requests_past_their_deadline(
    infrastructure: Infrastructure, workspace: uuid.UUID
) -> None:
    now = utcnow()
    past, future = now - dt.timedelta(minutes=1), now + dt.timedelta(minutes=1)
    stale = await submit(infrastructure, workspace)
    fresh = await submit(infrastructure, workspace)
    approved = await submit(infrastructure, workspace)
    cancelled = await submit(infrastructure, workspace)
    await force(infrastructure, stale.id, expires_at=past)
    await force(infrastructure, fresh.id, expires_at=future)
    await force(infrastructure, approved.id, expires_at=past, status=RequestStatus.APPROVED)
    await force(infrastructure, cancelled.id, expires_at=past, status=RequestStatus.CANCELLED)
    before = await stored(infrastructure, stale.id)

    # The scheduled job: no caller.
    async with infrastructure.unit_of_work() as uow:
        assert await uow.requests.expire_stale_requests(now=now) == 1

    expired = await stored(infrastructure, stale.id)
    assert expired.status is RequestStatus.EXPIRED
    assert expired.finished_at == now
    assert expired.version == before.version + 1
    assert (await stored(infrastructure, fresh.id)).status is RequestStatus.WAITING_FOR_APPROVAL
    assert (await stored(infrastructure, approved.id)).status is RequestStatus.APPROVED
    assert (await stored(infrastructure, cancelled.id)).status is RequestStatus.CANCELLED

    *_, entry = await audit_of(infrastructure, stale.id)
    assert (entry.action, entry.workspace_id) == ("expire", workspace)
    assert (entry.actor_type, entry.actor_id) == (None, None)
    assert entry.before == before.model_dump(mode="json")
    assert entry.after == expired.model_dump(mode="json")
    for untouched in (fresh, approved, cancelled):
        assert [e.action for e in await audit_of(infrastructure, untouched.id)] == ["request"]

    async with infrastructure.unit_of_work() as uow:
        assert await uow.requests.expire_stale_requests(now=now) == 0
    assert await outbox(infrastructure) == []


async def test_expiry_works_in_batches(infrastructure: Infrastructure, workspace: uuid.UUID) -> None:
    now = utcnow()
    for _ in range(3):
        request = await submit(infrastructure, workspace)
        await force(infrastructure, request.id, expires_at=now - dt.timedelta(seconds=1))
    async with infrastructure.unit_of_work() as uow:
        assert await uow.requests.expire_stale_requests(now=now, limit=2) == 2
    async with infrastructure.unit_of_work() as uow:
        assert await uow.requests.expire_stale_requests(now=now, limit=2) == 1
    assert await list_all(infrastructure, status=RequestStatus.WAITING_FOR_APPROVAL) == []
