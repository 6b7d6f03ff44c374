"""The outbox relay: publishes committed outbox rows to the task broker.

Rows are claimed with FOR UPDATE SKIP LOCKED, so several relays (one per worker process) share
the work without publishing a row twice at the same time. A row is marked published in the same
transaction that claimed it, after the broker accepted it; if the broker is unreachable the
transaction rolls back and the rows wait for the next attempt. A crash between publishing and
committing publishes a row again, so every task is idempotent.
"""

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import structlog
from opentelemetry.trace import SpanKind

from server.db import utcnow
from server.metrics import OUTBOX_BACKLOG, OUTBOX_LAG, OUTBOX_PUBLISHED
from server.outages import is_outage
from server.outbox.models import OutboxMessage
from server.outbox.repository import OutboxRepository
from server.tracing import REQUEST_ID_KEY, extract, outbox_context, tracer, untraced
from server.units import UnitOfWorkFactory

logger = structlog.get_logger("adplane.outbox")

OUTAGE_BACKOFF_SECONDS = 1.0
# How often the unpublished rows are counted for the backlog gauge (a count, not a poll's cost).
BACKLOG_COUNT_SECONDS = 5.0

# topic, payload, labels for the task message (trace context, request id)
type Publish = Callable[[str, dict[str, Any], Mapping[str, str]], Awaitable[None]]


class UnroutableMessage(LookupError):
    """No task handles the message's topic."""


class OutboxUnit(Protocol):
    @property
    def outbox_repository(self) -> OutboxRepository: ...


class OutboxRelay:
    def __init__(
        self, units: UnitOfWorkFactory[OutboxUnit], publish: Publish, *, batch_size: int, poll_seconds: float
    ) -> None:
        self._units = units
        self._publish = publish
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds

    async def relay_once(self) -> int:
        """Publish one batch; how many rows were published."""
        # Polling is not traced; each publication is, in the trace of the call that wrote its row.
        with untraced():
            return await self._relay_batch()

    async def _relay_batch(self) -> int:
        async with self._units() as uow:
            repository = uow.outbox_repository
            messages = await repository.claim_pending(limit=self._batch_size)
            routed: list[tuple[str, dt.datetime]] = []  # topic, created_at
            for message in messages:
                try:
                    await self._publish_traced(message)
                    routed.append((message.topic, message.created_at))
                except UnroutableMessage as error:
                    # A topic nothing handles (yet): recorded, not retried forever ahead of the others.
                    logger.info("outbox message has no task", topic=message.topic, outbox_id=str(message.id))
                    await repository.note_error(message.id, str(error))
            await repository.mark_published([message.id for message in messages])
        # Committed: the rows count as published only now.
        now = utcnow()
        for topic, created_at in routed:
            OUTBOX_PUBLISHED.labels(topic).inc()
            OUTBOX_LAG.observe(max(0.0, (now - created_at).total_seconds()))
        return len(messages)

    async def _publish_traced(self, message: OutboxMessage) -> None:
        stored = message.trace_context or {}
        with tracer.start_as_current_span(
            f"outbox publish {message.topic}",
            context=extract(stored),
            kind=SpanKind.PRODUCER,
            attributes={"messaging.operation.type": "send", "messaging.destination.name": message.topic},
        ):
            labels = outbox_context()  # this span's context now; the request id is the writer's
            if request_id := stored.get(REQUEST_ID_KEY):
                labels[REQUEST_ID_KEY] = request_id
            await self._publish(message.topic, {**message.payload, "outbox_id": str(message.id)}, labels)

    async def count_backlog(self) -> None:
        with untraced():
            async with self._units() as uow:
                OUTBOX_BACKLOG.set(await uow.outbox_repository.count_pending())

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; back off while the database or the broker is unreachable."""
        backoff = self._poll_seconds
        counted_at = -BACKLOG_COUNT_SECONDS
        while not stop.is_set():
            try:
                if time.monotonic() - counted_at >= BACKLOG_COUNT_SECONDS:
                    await self.count_backlog()
                    counted_at = time.monotonic()
                published = await self.relay_once()
                backoff = self._poll_seconds
            except Exception as error:  # the broker or the database is down: keep the rows, try again
                published = 0
                # An outage is waited out by looking again every second, so the rows go out about
                # a second after Redis or PostgreSQL is back; anything else (a bug) backs off further.
                backoff = min(backoff * 2, OUTAGE_BACKOFF_SECONDS if is_outage(error) else 30.0)
                logger.warning("outbox relay failed; retrying", retry_in=backoff, exc_info=True)
            if published < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
