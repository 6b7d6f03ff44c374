"""Watching requests: one reader of the event stream per server process, fanned out to its streams.

`RequestEventHub` reads the Redis stream (`events.STREAM_KEY`) with one blocking XREAD loop and
offers each change, parsed once, to every open watch whose filter it matches. Each watch has its
own buffer of at most `WATCH_BUFFER_SIZE` changes: a client that reads more slowly than changes
arrive is cut off with RESOURCE_EXHAUSTED instead of growing the process's memory, and resumes.

On a quiet system the XREAD returns empty every `_READ_BLOCK_MS`; that block is shorter than the
Redis client's socket timeout, or every idle read would fail as a timeout. When Redis does not
answer, open watches carry on (heartbeats, nothing missed: the reader continues from its position
once Redis is back) for up to `WATCH_OUTAGE_SECONDS`; a longer outage ends them with UNAVAILABLE,
each with the resume token of the last message it sent in its ErrorInfo metadata.

`watch()` is one stream, transport-agnostic: a snapshot (or, given a resume token, the changes
after it read back from the stream), then the changes, then heartbeats while nothing happens.
A position is a stream id (`<milliseconds>-<sequence>`, Redis's clock), which is the resume token.

No change is lost between the snapshot and the changes: the watch joins the hub (position P)
before the snapshot is read, and every change is published after its transaction commits, so a
change either is in the snapshot or arrives after P (or both: a change committed just before the
snapshot may also arrive as a change, the request then shown twice in the same state). No change
is repeated after a resume: the stream is read back from the token to P, and the hub's changes
after P follow; anything at or before the last position sent is dropped.
"""

import asyncio
import contextlib
import datetime as dt
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.exceptions import AdplaneException, FieldViolation, InvalidRequestException
from server.memory import release_freed_memory
from server.redis_client import SOCKET_TIMEOUT_SECONDS
from server.requests.events import STREAM_KEY, RequestChanged
from server.requests.exceptions import (
    ResumeTokenExpiredException,
    WatchBufferOverflowException,
    WatchEndedException,
)
from server.requests.schemas import RequestListRequestSchema, RequestResponseSchema

logger = structlog.get_logger("adplane.requests.watch")

_POSITION = re.compile(r"^(\d{1,20})-(\d{1,20})$")
# An idle XREAD answers after this long; well within the client's socket timeout (a reply slower
# than that is an error), so a quiet stream is never mistaken for an unreachable one.
_READ_BLOCK_MS = 2000
# A read that has not answered this long after its block is over is given up (Redis hangs).
_READ_DEADLINE_SECONDS = _READ_BLOCK_MS / 1000 + SOCKET_TIMEOUT_SECONDS
_READ_COUNT = 500
SNAPSHOT_LIMIT = 1000
SNAPSHOT_PART = 100
# Snapshots read at once per process. When a server goes away, every watch it had reconnects to the
# others at the same moment; each snapshot is up to SNAPSHOT_LIMIT requests, so a thousand read at
# once held about 175 MB (the soak's reconnect round) and sent a thousand list queries to PostgreSQL
# together. Read a few at a time, the storm costs a few snapshots' memory; watches waiting for
# theirs have joined the hub already, so no change is lost meanwhile.
SNAPSHOT_CONCURRENCY = 8
# After this many watches closed, the memory they used is handed back (server.memory) once the
# closing has paused for RELEASE_AFTER_SECONDS.
RELEASE_AFTER_CLOSED = 200
RELEASE_AFTER_SECONDS = 2.0

type Position = tuple[int, int]


def parse_position(token: str) -> Position | None:
    match = _POSITION.match(token)
    return (int(match[1]), int(match[2])) if match else None


def _format(position: Position) -> str:
    return f"{position[0]}-{position[1]}"


@dataclass(frozen=True)
class StreamEntry:
    position: Position
    event: RequestChanged
    # Filled by the transport on first use and shared by every stream that sends the entry.
    converted: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def token(self) -> str:
        return _format(self.position)


class _End:
    def __init__(self, error: Exception) -> None:
        self.error = error


class Subscription:
    """One watch's place in the hub: a bounded buffer of the changes that matched its filter."""

    def __init__(self, matches: Callable[[RequestChanged], bool], *, joined_at: Position, size: int) -> None:
        self.matches = matches
        self.joined_at = joined_at
        self._size = size
        # Unbounded by asyncio, bounded here: the end marker must always fit.
        self._queue: asyncio.Queue[StreamEntry | _End] = asyncio.Queue()
        self._ended = False

    def offer(self, entry: StreamEntry) -> None:
        if self._ended or not self.matches(entry.event):
            return
        if self._queue.qsize() >= self._size:
            self.end(WatchBufferOverflowException(self._size))
            return
        self._queue.put_nowait(entry)

    def end(self, error: Exception) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(_End(error))

    @property
    def idle(self) -> bool:
        return self._queue.empty()

    async def next(self, wait_seconds: float) -> StreamEntry | None:
        """The next change; None after `wait_seconds` without one; raises when the watch ended."""
        try:
            item = await asyncio.wait_for(self._queue.get(), wait_seconds)
        except TimeoutError:
            return None
        if isinstance(item, _End):
            raise item.error
        return item


class RequestEventHub:
    """The process's one reader of the event stream; started by the first watch."""

    def __init__(
        self,
        redis: Redis | None,
        *,
        buffer_size: int,
        retention: dt.timedelta,
        outage: dt.timedelta,
    ) -> None:
        self._redis = redis
        self._buffer_size = buffer_size
        self._retention_ms = int(retention.total_seconds() * 1000)
        self._outage_seconds = outage.total_seconds()
        self._subscriptions: set[Subscription] = set()
        self._position: Position | None = None
        self._reader: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._closed = False
        # Set while Redis has been out of reach for longer than the outage limit: new watches are
        # refused at once rather than sent a snapshot and then ended.
        self._unreachable = False
        self.snapshots = asyncio.Semaphore(SNAPSHOT_CONCURRENCY)
        self._closed_since_release = 0
        self._release: asyncio.TimerHandle | None = None

    @property
    def position(self) -> Position:
        """The last stream entry the hub has offered to its watches."""
        return self._position or (0, 0)

    @property
    def watching(self) -> int:
        return len(self._subscriptions)

    async def subscribe(self, matches: Callable[[RequestChanged], bool]) -> Subscription:
        redis = self._require_redis()
        if self._unreachable:
            # Past the outage limit: refused, unless Redis has just come back (the reader's next
            # read will see it too).
            try:
                await redis.ping()
            except RedisError as error:
                raise _unavailable() from error
        async with self._starting:
            if self._reader is None or self._reader.done():
                self._position = await _last_position(redis)
                self._reader = asyncio.create_task(self._read(redis), name="request-event-hub")
        subscription = Subscription(matches, joined_at=self.position, size=self._buffer_size)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        self._closed_since_release += 1
        if self._closed_since_release >= RELEASE_AFTER_CLOSED:
            # Debounced: every close of a burst pushes the release back, so it runs once, after.
            if self._release is not None:
                self._release.cancel()
            self._release = asyncio.get_running_loop().call_later(RELEASE_AFTER_SECONDS, self._release_memory)

    def _release_memory(self) -> None:
        self._release = None
        self._closed_since_release = 0
        release_freed_memory()

    async def check_resumable(self, token: str) -> Position:
        """The position of a resume token whose following changes are all still in the stream."""
        position = parse_position(token)
        if position is None:
            raise InvalidRequestException(
                [FieldViolation(field="resume_token", description="not a resume token", reason="INVALID_RESUME_TOKEN")]
            )
        redis = self._require_redis()
        try:
            seconds, microseconds = await redis.time()
            last = await _last_position(redis, generated=True)
        except RedisError as error:
            raise _unavailable() from error
        # Entries older than now - retention may have been trimmed; a token after the last id comes
        # from a stream that was reset (Redis lost its data). Either way changes may be missing.
        now_ms = seconds * 1000 + microseconds // 1000
        if position[0] < now_ms - self._retention_ms or position > last:
            raise ResumeTokenExpiredException(token)
        return position

    async def read_back(self, after: Position, until: Position) -> list[StreamEntry]:
        """The stream's entries after `after`, up to and including `until`."""
        redis = self._require_redis()
        entries: list[StreamEntry] = []
        start = after
        while start < until:
            try:
                raw = await redis.xrange(STREAM_KEY, min=f"({_format(start)}", max=_format(until), count=_READ_COUNT)
            except RedisError as error:
                raise _unavailable() from error
            if not raw:
                break
            batch = [entry for entry in map(_entry, raw) if entry is not None]
            entries.extend(batch)
            start = _position_of(raw[-1][0])
        return entries

    async def close(self) -> None:
        """End every watch with UNAVAILABLE (the server is shutting down) and stop reading."""
        self._closed = True
        if self._release is not None:
            self._release.cancel()
        for subscription in list(self._subscriptions):
            subscription.end(_shutting_down())
        self._subscriptions.clear()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    def _require_redis(self) -> Redis:
        if self._closed:
            raise _shutting_down()
        if self._redis is None:
            raise WatchEndedException("request events need Redis (REDIS_URL)", reason="EVENTS_UNAVAILABLE")
        return self._redis

    async def _read(self, redis: Redis) -> None:
        loop = asyncio.get_running_loop()
        answered_at = loop.time()
        backoff = 0.1
        while not self._closed:
            try:
                streams: dict[Any, Any] = {STREAM_KEY: _format(self.position)}
                async with asyncio.timeout(_READ_DEADLINE_SECONDS):
                    reply: Any = await redis.xread(streams, count=_READ_COUNT, block=_READ_BLOCK_MS)
            except (RedisError, TimeoutError) as error:
                self._unanswered(error, down_seconds=loop.time() - answered_at, retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            if self._unreachable or backoff > 0.1:
                logger.info("request event stream reachable again", down_seconds=round(loop.time() - answered_at, 1))
            answered_at = loop.time()
            self._unreachable = False
            backoff = 0.1
            for _stream, raw_entries in reply or ():
                for raw in raw_entries:
                    self._position = _position_of(raw[0])
                    entry = _entry(raw)
                    if entry is None:
                        continue
                    for subscription in list(self._subscriptions):
                        subscription.offer(entry)

    def _unanswered(self, error: Exception, *, down_seconds: float, retry_in: float) -> None:
        """Redis did not answer a read. Within the outage limit the watches wait (they miss
        nothing: the next read continues from the hub's position); past it they end."""
        logger.warning(
            "request event stream unreachable",
            error=repr(error),
            down_seconds=round(down_seconds, 1),
            retry_in=retry_in,
        )
        if down_seconds < self._outage_seconds:
            return
        self._unreachable = True
        for subscription in list(self._subscriptions):
            subscription.end(_unavailable())
        self._subscriptions.clear()


def _unavailable() -> WatchEndedException:
    return WatchEndedException("request events are unavailable; resume shortly", reason="EVENTS_UNAVAILABLE")


def _shutting_down() -> WatchEndedException:
    return WatchEndedException("the server is shutting down; reconnect", reason="SERVER_SHUTTING_DOWN")


async def _last_position(redis: Redis, *, generated: bool = False) -> Position:
    """The id of the stream's last entry ((0, 0) when there is no stream). With `generated`, the
    last id ever given out, which trimming or deleting entries does not move back."""
    if generated:
        try:
            info = await redis.xinfo_stream(STREAM_KEY)
        except RedisError as error:
            if "no such key" in str(error).lower():
                return (0, 0)
            raise
        return _position_of(info["last-generated-id"])
    last = await redis.xrevrange(STREAM_KEY, count=1)
    return _position_of(last[0][0]) if last else (0, 0)


def _position_of(raw: Any) -> Position:
    text = raw.decode() if isinstance(raw, bytes) else raw
    position = parse_position(text)
    if position is None:  # pragma: no cover - Redis gives out only such ids
        raise ValueError(f"not a stream id: {text!r}")
    return position


def _entry(raw: Sequence[Any]) -> StreamEntry | None:
    entry_id, fields = raw
    try:
        event = RequestChanged.model_validate_json(fields[b"event"])
    except Exception:  # an entry this version cannot read: skipped, not fatal to every watch
        logger.warning("unreadable request event skipped", entry=str(entry_id), exc_info=True)
        return None
    return StreamEntry(position=_position_of(entry_id), event=event)


@dataclass(frozen=True)
class SnapshotPart:
    requests: list[RequestResponseSchema]
    complete: bool
    truncated: bool
    # Set on the last part only.
    token: str


@dataclass(frozen=True)
class Change:
    entry: StreamEntry

    @property
    def token(self) -> str:
        return self.entry.token


@dataclass(frozen=True)
class Heartbeat:
    token: str


type WatchItem = SnapshotPart | Change | Heartbeat
type Snapshot = Callable[[], Awaitable[tuple[list[RequestResponseSchema], bool]]]


async def watch(
    hub: RequestEventHub,
    *,
    matches: Callable[[RequestChanged], bool],
    snapshot: Snapshot,
    resume_token: str | None,
    heartbeat_seconds: float,
) -> AsyncGenerator[WatchItem]:
    """One watch: a snapshot (or the changes after `resume_token`), then changes and heartbeats."""
    resumed_at = await hub.check_resumable(resume_token) if resume_token else None
    subscription = await hub.subscribe(matches)
    try:
        if resumed_at is not None:
            for entry in await hub.read_back(resumed_at, subscription.joined_at):
                if matches(entry.event):
                    yield Change(entry)
            # Every matching change up to where the watch joined the hub has been sent.
            sent = max(resumed_at, subscription.joined_at)
        else:
            async with hub.snapshots:
                requests, truncated = await snapshot()
            sent = subscription.joined_at
            parts = [requests[i : i + SNAPSHOT_PART] for i in range(0, len(requests), SNAPSHOT_PART)] or [[]]
            for index, part in enumerate(parts):
                last = index == len(parts) - 1
                yield SnapshotPart(part, complete=last, truncated=truncated, token=_format(sent) if last else "")
        while True:
            try:
                change = await subscription.next(heartbeat_seconds)
            except AdplaneException as ended:
                # Where to resume: every message up to this token reached the client before the error.
                ended.metadata.setdefault("resume_token", _format(sent))
                raise
            if change is None:
                # Nothing is buffered, so every matching change up to the hub's position was sent.
                if subscription.idle:
                    sent = max(sent, hub.position)
                yield Heartbeat(_format(sent))
            elif change.position > sent:
                sent = change.position
                yield Change(change)
    finally:
        hub.unsubscribe(subscription)


def matching(query: RequestListRequestSchema) -> Callable[[RequestChanged], bool]:
    """Which changes a watch with these filters receives: its workspace and type; for a status,
    changes into it and out of it (a request leaving the approval queue is news to its watchers)."""

    def matches(event: RequestChanged) -> bool:
        request = event.request
        if query.workspace_id is not None and request.workspace_id != query.workspace_id:
            return False
        if query.type is not None and request.type is not query.type:
            return False
        return query.status is None or query.status in (request.status, event.previous_status)

    return matches
