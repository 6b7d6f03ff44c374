"""Carrying out approved requests: the lifecycle behind the `request.approved` task.

`RequestWork.carry_out(request_id)` has the module that owns the request's type do what it asks
(`server.requests.handlers`: create an ad account or a pixel, change a spend cap, share a pixel,
connect a client business manager) and then completes the request, or fails it with a reason a
person can act on. It is safe to run twice, also at the same time:

- the whole carry-out of one attempt runs in one transaction holding the request's row lock, so a
  second delivery waits and then finds the request COMPLETED (or FAILED) and does nothing;
- Meta-side creations are not idempotent, and a worker can die after Meta created the object but
  before our transaction committed. So before the first creation call, the work records in the
  request (a marker in its `result`, committed on its own) that it is about to create, with the ids
  of the same-name objects the business has at that moment. Only a later attempt, which finds the
  marker, lets the handler look for an object it may have created: same name in the business, known
  to no row of ours and not among those that were there before the marker. A first attempt never
  adopts: an object of the same name it finds belongs to someone else (another client of the
  agency, staff). (Meta's objects as the client reads them carry no creation time, so "created
  after the marker" is decided by that snapshot of ids, not by a timestamp.)

Errors: a rejected system-user token fails the request and flags its business manager
NEEDS_ATTENTION; any other error Meta will not get over by itself (permissions, invalid parameters)
fails it; rate limits and transient errors are retried (server.taskqueue.retry), and hold the request
for a later run when the attempts run out: all of it through the Meta toolkit the composition root
passes in as the `StepRunner`.
"""

import datetime as dt
import uuid
from typing import ClassVar, Protocol

import structlog
from pydantic import TypeAdapter

from server.db import utcnow
from server.requests.handlers import (
    CREATION_TYPES,
    ApprovedWork,
    CreationMarker,
    RequestHandlers,
    StepFailure,
    StepRunner,
)
from server.requests.models import RequestStatus
from server.requests.repository import RequestRepository
from server.requests.schemas import RequestPayload, RequestResultSchema
from server.requests.service import IRequestService
from server.tenancy import SYSTEM
from server.units import UnitOfWorkFactory

logger = structlog.get_logger("adplane.requests.work")

# Failure reasons are shown to people; Meta's messages are short, this only bounds a freak one.
MAX_FAILURE_REASON = 1000

_PAYLOAD: TypeAdapter[RequestPayload] = TypeAdapter(RequestPayload)


class CreationNotMarked(Exception):
    """A creation was about to call Meta without its marker in the request (see `CreationMarker`).

    Cannot happen while only this module writes APPROVED requests' results; retried, since the next
    attempt marks the request first.
    """

    retryable: ClassVar[bool] = True

    def __init__(self, request_id: uuid.UUID) -> None:
        super().__init__(f"request {request_id} has no creation marker")


class RequestWorkUnit(Protocol):
    """What the lifecycle uses of a unit of work (each attempt's handler gets the same unit)."""

    @property
    def request_repository(self) -> RequestRepository: ...
    @property
    def requests(self) -> IRequestService: ...


class RequestWork[U: RequestWorkUnit]:
    """Carries out approved requests; built by the composition root (`Infrastructure.request_work`)
    with the handler of each request type, on units of work of the root's type `U`."""

    def __init__(
        self,
        units: UnitOfWorkFactory[U],
        steps: StepRunner,
        handlers: RequestHandlers[U],
        *,
        retry_deadline: dt.timedelta,
    ) -> None:
        self._units = units
        self._steps = steps
        self._handlers = handlers
        self._retry_deadline = retry_deadline

    async def carry_out(self, request_id: uuid.UUID) -> RequestStatus | None:
        """Do what the request asks and settle it; the status it ends in (None: no such request).

        A request that is not APPROVED (done already, rejected, cancelled...) is left alone.
        """
        outcome = await self._steps.run(lambda: self._attempt(request_id), what=f"carrying out request {request_id}")
        if outcome is None or isinstance(outcome, RequestStatus):
            return outcome
        if outcome.exhausted:
            return await self._hold(request_id, outcome)
        # A refused token has flagged its business manager already (MetaSteps.run).
        return await self._fail(request_id, outcome.reason)

    async def _hold(self, request_id: uuid.UUID, failure: StepFailure) -> RequestStatus | None:
        """Rate limits or transient errors outlasted this run: the request waits for the requeue
        job (until Meta's regain time), or fails, retryable, past TASK_RETRY_DEADLINE_SECONDS."""
        retry_after = dt.timedelta(seconds=failure.retry_after) if failure.retry_after else None
        async with self._units() as uow:
            request = await uow.request_repository.lock(request_id, scope=SYSTEM)
            if request is None:
                return None
            held = await uow.requests.hold_for_retry(
                request_id,
                reason=_clip(failure.reason, MAX_FAILURE_REASON),
                retry_after=retry_after,
                deadline=self._retry_deadline,
            )
        logger.warning(
            "request waits for Meta" if held.status is RequestStatus.APPROVED else "request failed (retryable)",
            request_id=str(request_id),
            retry_at=held.retry_at.isoformat() if held.retry_at else None,
            reason=failure.reason,
        )
        return held.status

    async def _attempt(self, request_id: uuid.UUID) -> RequestStatus | None:
        """One attempt: under the request's row lock, do the work and complete the request.

        The lock is held across the Meta calls on purpose. It is one row that nothing but this work
        writes once the request is APPROVED (reviews and expiry only touch waiting requests, and
        reads are not blocked by a row lock), so the only one kept waiting is a second delivery of
        the same message, which is exactly the one that must wait. It costs a database connection
        for the duration of a few Meta calls, each bounded by the HTTP timeout; the back-off between
        attempts happens outside the transaction. A claim status instead would need a new state in
        the lifecycle and a way to tell a dead worker's claim from a slow one; with the lock, a
        worker that dies loses its connection and the lock with it.

        A creation first marks the request (`_mark_creation`: short transactions of its own, before
        this lock is taken), since the mark must survive this transaction's rollback.
        """
        first_creation = await self._mark_creation(request_id)
        async with self._units() as uow:
            request = await uow.request_repository.lock(request_id, scope=SYSTEM)
            if request is None:
                logger.warning("approved request not found; nothing to do", request_id=str(request_id))
                return None
            if request.status is not RequestStatus.APPROVED:
                logger.info(
                    "request is not approved; nothing to do", request_id=str(request_id), status=request.status.value
                )
                return request.status
            payload = _PAYLOAD.validate_python(request.payload)
            creation = payload.type in CREATION_TYPES
            work = ApprovedWork(
                request_id=request_id,
                workspace_id=request.workspace_id,
                payload=payload,
                marker=_marker_of(request_id, request.result) if creation else None,
                adopt=creation and not first_creation,
            )
            result = await self._handlers[payload.type](uow).carry_out(work)
            await uow.requests.complete_request(request_id, result)
            logger.info(
                "request completed", request_id=str(request_id), type=payload.type.value, meta_id=result.meta_id
            )
            return RequestStatus.COMPLETED

    async def _mark_creation(self, request_id: uuid.UUID) -> bool:
        """Before a creation request's first call to create on Meta, record (committed) that the
        creation is starting; True when this attempt did, i.e. no earlier attempt can have created
        anything, so there is nothing of ours to adopt. False for every other request, and when
        the marker was there already (an earlier attempt, or a concurrent delivery, wrote it).

        No lock is held meanwhile: the request is read in one short transaction, Meta is asked for
        the same-name objects outside any, and the conditional update lets one delivery win.
        """
        async with self._units() as uow:
            request = await uow.request_repository.get(request_id, scope=SYSTEM)
            if request is None or request.status is not RequestStatus.APPROVED:
                return False
            payload = _PAYLOAD.validate_python(request.payload)
            if payload.type not in CREATION_TYPES or CreationMarker.of(request.result) is not None:
                return False
            lookup = await self._handlers[payload.type](uow).same_name_lookup(payload)
        preexisting = await lookup()
        marker = CreationMarker(creation_started_at=utcnow(), preexisting_meta_ids=tuple(sorted(preexisting)))
        async with self._units() as uow:
            marked = await uow.request_repository.mark_creation_started(request_id, marker.model_dump(mode="json"))
        if marked:
            logger.info("creation starting", request_id=str(request_id), preexisting=len(preexisting))
        return marked

    async def _fail(self, request_id: uuid.UUID, reason: str) -> RequestStatus | None:
        """Fail the request for good (in a transaction of its own: the attempt's was rolled back)."""
        async with self._units() as uow:
            request = await uow.request_repository.lock(request_id, scope=SYSTEM)
            if request is None:
                return None
            if request.status is not RequestStatus.APPROVED:
                # Another delivery settled it while this one was failing.
                return request.status
            await uow.requests.fail_request(
                request_id, RequestResultSchema(failure_reason=_clip(reason, MAX_FAILURE_REASON))
            )
        logger.warning("request failed", request_id=str(request_id), reason=reason)
        return RequestStatus.FAILED


def _marker_of(request_id: uuid.UUID, result: dict[str, object] | None) -> CreationMarker:
    marker = CreationMarker.of(result)
    if marker is None:
        raise CreationNotMarked(request_id)
    return marker


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
