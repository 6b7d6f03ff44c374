"""Request changes as events, for the watch streams.

A change is recorded as an outbox row in the transaction that makes it, so it exists if and only
if the change commits. Right after the commit the process that made it appends it to a Redis
stream that every server process reads (the fast path, a millisecond); the outbox relay of the
workers appends any row that fast path missed (the process died between commit and append, or
Redis was briefly unreachable). Both append through one script that first claims the event's id
(`SET NX`), so an event enters the stream once however many times it is published. The stream
keeps `WATCH_RETENTION_SECONDS` of events (trimmed by id, which is Redis's clock in milliseconds),
which is what makes a resume token (a stream id) usable within that window.

Why an outbox row and not PostgreSQL NOTIFY: NOTIFY needs one listening connection per server
process and loses what was sent while no listener was connected (a restart, an outage); the
outbox row survives both and the relay that already runs in every worker delivers it.
"""

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, Protocol

import structlog
from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from server.outbox.repository import IOutbox
from server.requests.models import RequestStatus
from server.requests.schemas import RequestResponseSchema

logger = structlog.get_logger("adplane.requests.events")

# The outbox topic of request changes; the relay appends these to the stream, never to taskiq.
REQUEST_CHANGED_TOPIC = "request.changed"
# One hash tag, so the stream and the claims live in the same slot of a Redis cluster.
STREAM_KEY = "adplane:{request-events}:stream"
CLAIM_PREFIX = "adplane:{request-events}:published:"

# KEYS: the stream, the event's claim. ARGV: the event (JSON), the retention in milliseconds.
# Returns the new entry's id, or nothing when the event was appended before.
_APPEND_ONCE = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
  return false
end
local now = redis.call('TIME')
local min_id = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[2])
return redis.call('XADD', KEYS[1], 'MINID', '~', tostring(min_id), '*', 'event', ARGV[1])
"""


class RequestChangeKind(StrEnum):
    CREATED = "created"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    COMPLETED = "completed"
    FAILED = "failed"


# Each status is reached by exactly one kind of change.
KIND_OF_STATUS = {
    RequestStatus.WAITING_FOR_APPROVAL: RequestChangeKind.CREATED,
    RequestStatus.APPROVED: RequestChangeKind.APPROVED,
    RequestStatus.REJECTED: RequestChangeKind.REJECTED,
    RequestStatus.CANCELLED: RequestChangeKind.CANCELLED,
    RequestStatus.EXPIRED: RequestChangeKind.EXPIRED,
    RequestStatus.COMPLETED: RequestChangeKind.COMPLETED,
    RequestStatus.FAILED: RequestChangeKind.FAILED,
}


class RequestChanged(BaseModel):
    """One change of one request, with the request as it is after the change."""

    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID
    kind: RequestChangeKind
    previous_status: RequestStatus | None
    request: RequestResponseSchema


class IRequestEvents(Protocol):
    async def record(self, request: RequestResponseSchema, *, previous_status: RequestStatus | None) -> None: ...


type AfterCommit = Callable[[Callable[[], Awaitable[None]]], None]


class RequestEventPublisher:
    """Appends events to the stream, each at most once within the retention window."""

    def __init__(self, redis: Redis, *, retention: dt.timedelta) -> None:
        self._redis = redis
        self._retention_ms = int(retention.total_seconds() * 1000)
        self._append = redis.register_script(_APPEND_ONCE)

    async def publish(self, payload: dict[str, Any]) -> None:
        """Append the outbox payload's event; raises when Redis is unreachable (the relay retries)."""
        event = payload["event"]
        await self._append(
            keys=[STREAM_KEY, CLAIM_PREFIX + str(event["event_id"])],
            args=[_dumps(event), self._retention_ms],
        )

    async def publish_after_commit(self, payload: dict[str, Any]) -> None:
        """The fast path: a failure is left to the outbox relay, the caller's change stands."""
        try:
            await self.publish(payload)
        except Exception:
            logger.warning("request event left to the outbox relay", exc_info=True)


class RequestEventRecorder:
    """Records request changes in the caller's transaction and publishes them once it commits."""

    def __init__(self, *, outbox: IOutbox, after_commit: AfterCommit, publisher: RequestEventPublisher | None) -> None:
        self._outbox = outbox
        self._after_commit = after_commit
        self._publisher = publisher

    async def record(self, request: RequestResponseSchema, *, previous_status: RequestStatus | None) -> None:
        event = RequestChanged(
            event_id=uuid.uuid4(), kind=KIND_OF_STATUS[request.status], previous_status=previous_status, request=request
        )
        payload = {"event": event.model_dump(mode="json")}
        await self._outbox.add(REQUEST_CHANGED_TOPIC, payload)
        publisher = self._publisher
        if publisher is not None:
            self._after_commit(lambda: publisher.publish_after_commit(payload))


def _dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"))
