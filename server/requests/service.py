"""The approval queue: one lifecycle for everything a workspace asks for (`waiting_for_approval ->
approved -> completed | failed`, or `-> rejected | cancelled | expired`). Asset modules submit
requests; staff approve or reject them; approving records the work in the outbox in the same
transaction, and every change is an event for watchers. The requests module owns `requests`.
"""

import datetime as dt
import uuid
from typing import Protocol

from server.audit_logs.service import IAuditTrail
from server.auth.principal import Principal
from server.db import new_id, utcnow
from server.idempotency.service import IdempotencyService
from server.outbox.repository import IOutbox
from server.pagination import Page, PageTokenCodec
from server.requests.events import IRequestEvents
from server.requests.exceptions import (
    IllegalTransitionException,
    RequestExpiredException,
    RequestNotFoundException,
    RequestNotRetryableException,
)
from server.requests.models import Request, RequestStatus
from server.requests.repository import IRequestRepository
from server.requests.schemas import (
    ApprovalSchema,
    RejectionSchema,
    RequestListRequestSchema,
    RequestPayload,
    RequestResponseSchema,
    RequestResultSchema,
    SubmissionSchema,
)
from server.tenancy import SYSTEM, TenantScope, WorkspaceScope
from server.workspaces.exceptions import WorkspaceNotActiveException, WorkspaceNotFoundException
from server.workspaces.models import WorkspaceStatus


class IWorkspaceLookup(Protocol):
    async def status_of(self, workspace_id: uuid.UUID) -> WorkspaceStatus | None: ...


# Published by the outbox relay; the workers carry the approved work out.
REQUEST_APPROVED_TOPIC = "request.approved"
ENTITY = "request"
# Bounds of the wait after a transient failure when Meta did not say how long (see hold_for_retry).
MIN_RETRY_WAIT = dt.timedelta(minutes=1)
MAX_RETRY_WAIT = dt.timedelta(hours=1)


class IRequestService(Protocol):
    async def submit(
        self, workspace_id: uuid.UUID, payload: RequestPayload, *, actor: Principal, idempotency_key: str | None
    ) -> RequestResponseSchema: ...
    async def get_request(self, request_id: uuid.UUID, *, workspace_id: uuid.UUID) -> RequestResponseSchema: ...
    async def list_workspace_requests(
        self, workspace_id: uuid.UUID, query: RequestListRequestSchema
    ) -> Page[RequestResponseSchema]: ...
    async def cancel_request(self, request_id: uuid.UUID, *, workspace_id: uuid.UUID) -> RequestResponseSchema: ...
    async def list_requests(self, query: RequestListRequestSchema) -> Page[RequestResponseSchema]: ...
    async def approve_request(
        self, request_id: uuid.UUID, *, actor: Principal, idempotency_key: str | None
    ) -> RequestResponseSchema: ...
    async def reject_request(
        self, request_id: uuid.UUID, rejection: RejectionSchema, *, actor: Principal
    ) -> RequestResponseSchema: ...
    async def complete_request(self, request_id: uuid.UUID, result: RequestResultSchema) -> RequestResponseSchema: ...
    async def fail_request(self, request_id: uuid.UUID, result: RequestResultSchema) -> RequestResponseSchema: ...
    async def expire_stale_requests(self, *, now: dt.datetime, limit: int = 500) -> int: ...
    async def requeue_stalled_requests(self, *, cutoff: dt.datetime, limit: int = 500) -> int: ...
    async def hold_for_retry(
        self, request_id: uuid.UUID, *, reason: str, retry_after: dt.timedelta | None, deadline: dt.timedelta
    ) -> RequestResponseSchema: ...
    async def retry_request(
        self, request_id: uuid.UUID, *, actor: Principal, idempotency_key: str | None
    ) -> RequestResponseSchema: ...


class RequestService:
    """The one lifecycle of every request, and the approval queue.

    WAITING_FOR_APPROVAL -> APPROVED -> COMPLETED | FAILED, or WAITING_FOR_APPROVAL -> REJECTED |
    CANCELLED | EXPIRED. Each move is one conditional UPDATE from the status it starts from.
    """

    def __init__(
        self,
        *,
        repository: IRequestRepository,
        workspaces: IWorkspaceLookup,
        outbox: IOutbox,
        events: IRequestEvents,
        audit: IAuditTrail,
        idempotency: IdempotencyService,
        page_tokens: PageTokenCodec,
        ttl: dt.timedelta,
    ) -> None:
        self._repository = repository
        self._workspaces = workspaces
        self._outbox = outbox
        self._events = events
        self._audit = audit
        self._idempotency = idempotency
        self._page_tokens = page_tokens
        self._ttl = ttl

    async def submit(
        self, workspace_id: uuid.UUID, payload: RequestPayload, *, actor: Principal, idempotency_key: str | None
    ) -> RequestResponseSchema:
        """Put a request in the queue. The asset services check what it refers to beforehand."""

        # Chosen here, so the idempotency claim records it at once (no second statement).
        new_request_id = new_id()

        async def create() -> tuple[uuid.UUID, RequestResponseSchema]:
            await self._require_active_workspace(workspace_id)
            now = utcnow()
            request = await self._repository.add(
                id=new_request_id,
                type=payload.type,
                status=RequestStatus.WAITING_FOR_APPROVAL,
                workspace_id=workspace_id,
                requester_type=actor.kind.value,
                requester_id=actor.id,
                payload=payload.model_dump(mode="json"),
                expires_at=now + self._ttl,
            )
            created = _to_schema(request)
            await self._events.record(created, previous_status=None)
            await self._audit.record(
                entity_type=ENTITY, entity_id=request.id, action="request", workspace_id=workspace_id, after=created
            )
            return request.id, created

        async def replay(existing: uuid.UUID) -> RequestResponseSchema:
            return await self.get_request(existing, workspace_id=workspace_id)

        return await self._idempotency.run_once(
            scope=f"requests.{payload.type.value}",
            caller=actor.id,
            idempotency_key=idempotency_key,
            # The workspace is part of what was asked: the same key in another workspace is reused.
            payload=SubmissionSchema(workspace_id=workspace_id, payload=payload),
            create=create,
            replay=replay,
            resource_id=new_request_id,
        )

    async def get_request(self, request_id: uuid.UUID, *, workspace_id: uuid.UUID) -> RequestResponseSchema:
        return _to_schema(await self._get(request_id, scope=WorkspaceScope(workspace_id)))

    async def list_workspace_requests(
        self, workspace_id: uuid.UUID, query: RequestListRequestSchema
    ) -> Page[RequestResponseSchema]:
        return await self._list(
            query.model_copy(update={"workspace_id": workspace_id}),
            scope=WorkspaceScope(workspace_id),
            collection="workspace_requests",
            newest_first=True,
        )

    async def list_requests(self, query: RequestListRequestSchema) -> Page[RequestResponseSchema]:
        return await self._list(query, scope=SYSTEM, collection="requests", newest_first=False)

    async def cancel_request(self, request_id: uuid.UUID, *, workspace_id: uuid.UUID) -> RequestResponseSchema:
        """Withdraw a waiting request; a cancelled one is returned as it is."""
        before = await self._get(request_id, scope=WorkspaceScope(workspace_id))
        if before.status is RequestStatus.CANCELLED:
            return _to_schema(before)
        return await self._move(before, to=RequestStatus.CANCELLED, action="cancel", values={"finished_at": utcnow()})

    async def approve_request(
        self, request_id: uuid.UUID, *, actor: Principal, idempotency_key: str | None
    ) -> RequestResponseSchema:
        async def approve() -> tuple[uuid.UUID, RequestResponseSchema]:
            before = await self._get(request_id, scope=SYSTEM)
            if before.status is RequestStatus.WAITING_FOR_APPROVAL and before.expires_at <= utcnow():
                raise RequestExpiredException(request_id)
            await self._require_active_workspace(before.workspace_id)
            approved = await self._move(
                before,
                to=RequestStatus.APPROVED,
                action="approve",
                values={"reviewer_type": actor.kind.value, "reviewer_id": actor.id, "reviewed_at": utcnow()},
            )
            # Same transaction as the approval: the work is queued if and only if it commits.
            await self._outbox.add(REQUEST_APPROVED_TOPIC, {"request_id": str(request_id), "type": approved.type.value})
            return request_id, approved

        async def replay(existing: uuid.UUID) -> RequestResponseSchema:
            return _to_schema(await self._get(existing, scope=SYSTEM))

        return await self._idempotency.run_once(
            scope="requests.approve",
            caller=actor.id,
            idempotency_key=idempotency_key,
            payload=ApprovalSchema(request=request_id),
            create=approve,
            replay=replay,
            resource_id=request_id,
        )

    async def reject_request(
        self, request_id: uuid.UUID, rejection: RejectionSchema, *, actor: Principal
    ) -> RequestResponseSchema:
        now = utcnow()
        return await self._move(
            await self._get(request_id, scope=SYSTEM),
            to=RequestStatus.REJECTED,
            action="reject",
            values={
                "reviewer_type": actor.kind.value,
                "reviewer_id": actor.id,
                "rejection_reason": rejection.reason,
                "reviewed_at": now,
                "finished_at": now,
            },
        )

    async def complete_request(self, request_id: uuid.UUID, result: RequestResultSchema) -> RequestResponseSchema:
        """The work of an approved request is done (called by the workers)."""
        return await self._move(
            await self._get(request_id, scope=SYSTEM),
            to=RequestStatus.COMPLETED,
            action="complete",
            values={"result": result.model_dump(mode="json"), "finished_at": utcnow()},
        )

    async def fail_request(self, request_id: uuid.UUID, result: RequestResultSchema) -> RequestResponseSchema:
        """The work of an approved request failed for good (called by the workers)."""
        return await self._move(
            await self._get(request_id, scope=SYSTEM),
            to=RequestStatus.FAILED,
            action="fail",
            values={"result": result.model_dump(mode="json"), "finished_at": utcnow()},
        )

    async def expire_stale_requests(self, *, now: dt.datetime, limit: int = 500) -> int:
        """Expire waiting requests past their deadline; returns how many (scheduled job)."""
        expired = 0
        for request_id in await self._repository.waiting_expired_ids(now=now, limit=limit):
            request = await self._repository.get(request_id, scope=SYSTEM)
            if request is None:
                continue
            before = _to_schema(request)
            moved = await self._repository.transition(
                request_id,
                from_status=RequestStatus.WAITING_FOR_APPROVAL,
                values={"status": RequestStatus.EXPIRED, "finished_at": now},
            )
            if moved is not None:  # reviewed concurrently otherwise
                await self._events.record(_to_schema(moved), previous_status=RequestStatus.WAITING_FOR_APPROVAL)
                await self._audit.record(
                    entity_type=ENTITY,
                    entity_id=request_id,
                    action="expire",
                    workspace_id=moved.workspace_id,
                    before=before,
                    after=_to_schema(moved),
                )
                expired += 1
        return expired

    async def requeue_stalled_requests(self, *, cutoff: dt.datetime, limit: int = 500) -> int:
        """Queue the work of approved requests again: those held after transient failures once
        their `retry_at` came, and the others when they did not finish since `cutoff` (a worker
        lost them to an outage). Carrying out is idempotent, so a slow one queued twice is
        harmless."""
        due = await self._repository.due_for_requeue(stalled_before=cutoff, now=utcnow(), limit=limit)
        for request in due:
            await self._outbox.add(REQUEST_APPROVED_TOPIC, {"request_id": str(request.id), "type": request.type.value})
        await self._repository.clear_retry_at([request.id for request in due if request.retry_at is not None])
        return len(due)

    async def hold_for_retry(
        self, request_id: uuid.UUID, *, reason: str, retry_after: dt.timedelta | None, deadline: dt.timedelta
    ) -> RequestResponseSchema:
        """The work of an approved request failed for a transient reason (called by the workers).

        Within `deadline` of its first such failure the request stays APPROVED and the requeue job
        runs it again after a wait: Meta's regain time when Meta said, and otherwise as long as the
        request has been waiting already (doubling), between MIN_RETRY_WAIT and MAX_RETRY_WAIT.
        Past the deadline it FAILS, retryable: staff may retry it (RetryRequest).
        """
        request = await self._get(request_id, scope=SYSTEM)
        if request.status is not RequestStatus.APPROVED:
            return _to_schema(request)
        now = utcnow()
        waiting_since = request.waiting_since or now
        if now - waiting_since >= deadline:
            return await self._move(
                request,
                to=RequestStatus.FAILED,
                action="fail",
                values={
                    "result": RequestResultSchema(failure_reason=reason, retryable=True).model_dump(mode="json"),
                    "finished_at": now,
                    "retry_at": None,
                },
            )
        wait = min(max(now - waiting_since, MIN_RETRY_WAIT), MAX_RETRY_WAIT)
        if retry_after is not None:
            wait = max(wait, retry_after)
        held = await self._repository.hold(request_id, now=now, retry_at=now + min(wait, deadline))
        return _to_schema(held or await self._get(request_id, scope=SYSTEM))

    async def retry_request(
        self, request_id: uuid.UUID, *, actor: Principal, idempotency_key: str | None
    ) -> RequestResponseSchema:
        """A request that failed only for transient reasons is approved again, its work queued
        in the same transaction, its waiting clock started over."""

        async def retry() -> tuple[uuid.UUID, RequestResponseSchema]:
            before = await self._get(request_id, scope=SYSTEM)
            retryable = before.status is RequestStatus.FAILED and bool((before.result or {}).get("retryable"))
            if not retryable:
                raise RequestNotRetryableException(request_id, before.status)
            moved = await self._repository.transition(
                request_id,
                from_status=RequestStatus.FAILED,
                values={
                    "status": RequestStatus.APPROVED,
                    "reviewer_type": actor.kind.value,
                    "reviewer_id": actor.id,
                    "reviewed_at": utcnow(),
                    "result": None,
                    "finished_at": None,
                    "waiting_since": None,
                    "retry_at": None,
                },
            )
            if moved is None:  # retried concurrently
                raise RequestNotRetryableException(request_id, (await self._get(request_id, scope=SYSTEM)).status)
            after = _to_schema(moved)
            await self._events.record(after, previous_status=RequestStatus.FAILED)
            await self._audit.record(
                entity_type=ENTITY,
                entity_id=request_id,
                action="retry",
                workspace_id=moved.workspace_id,
                before=_to_schema(before),
                after=after,
            )
            await self._outbox.add(REQUEST_APPROVED_TOPIC, {"request_id": str(request_id), "type": after.type.value})
            return request_id, after

        async def replay(existing: uuid.UUID) -> RequestResponseSchema:
            return _to_schema(await self._get(existing, scope=SYSTEM))

        return await self._idempotency.run_once(
            scope="requests.retry",
            caller=actor.id,
            idempotency_key=idempotency_key,
            payload=ApprovalSchema(request=request_id),
            create=retry,
            replay=replay,
            resource_id=request_id,
        )

    async def _require_active_workspace(self, workspace_id: uuid.UUID) -> None:
        """Work is asked for and approved only for active workspaces (not suspended or archived)."""
        status = await self._workspaces.status_of(workspace_id)
        if status is None:
            raise WorkspaceNotFoundException(workspace_id)
        if status is not WorkspaceStatus.ACTIVE:
            raise WorkspaceNotActiveException(workspace_id, status.value)

    async def _get(self, request_id: uuid.UUID, *, scope: TenantScope) -> Request:
        request = await self._repository.get(request_id, scope=scope)
        if request is None:
            raise RequestNotFoundException(request_id)
        return request

    async def _move(
        self, request: Request, *, to: RequestStatus, action: str, values: dict[str, object]
    ) -> RequestResponseSchema:
        before = _to_schema(request)
        start = _STARTS_FROM[to]
        if request.status is not start:
            raise IllegalTransitionException(request.id, request.status, to=to)
        moved = await self._repository.transition(request.id, from_status=start, values={"status": to, **values})
        if moved is None:
            # Someone moved it between our read and the update: report what it is now.
            current = await self._get(request.id, scope=SYSTEM)
            raise IllegalTransitionException(request.id, current.status, to=to)
        after = _to_schema(moved)
        await self._events.record(after, previous_status=start)
        await self._audit.record(
            entity_type=ENTITY,
            entity_id=request.id,
            action=action,
            workspace_id=request.workspace_id,
            before=before,
            after=after,
        )
        return after

    async def _list(
        self, query: RequestListRequestSchema, *, scope: TenantScope, collection: str, newest_first: bool
    ) -> Page[RequestResponseSchema]:
        return await self._page_tokens.page(
            query,
            collection,
            fetch=lambda after, limit: self._repository.list_requests(
                query, scope=scope, after=after, limit=limit, newest_first=newest_first
            ),
            convert=_to_schema,
        )


# Where each status may be reached from.
_STARTS_FROM = {
    RequestStatus.APPROVED: RequestStatus.WAITING_FOR_APPROVAL,
    RequestStatus.REJECTED: RequestStatus.WAITING_FOR_APPROVAL,
    RequestStatus.CANCELLED: RequestStatus.WAITING_FOR_APPROVAL,
    RequestStatus.EXPIRED: RequestStatus.WAITING_FOR_APPROVAL,
    RequestStatus.COMPLETED: RequestStatus.APPROVED,
    RequestStatus.FAILED: RequestStatus.APPROVED,
}


def _to_schema(request: Request) -> RequestResponseSchema:
    return RequestResponseSchema.model_validate(request)
