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
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from server.composition import Infrastructure
from server.db import utcnow
from server.metrics import OUTBOX_BACKLOG, OUTBOX_LAG, OUTBOX_PUBLISHED
from server.outages import is_outage
from server.outbox.repository import OutboxRepository

logger = structlog.get_logger("adplane.outbox")

OUTAGE_BACKOFF_SECONDS = 1.0
# How often the unpublished rows are counted for the backlog gauge (a count, not a poll's cost).
BACKLOG_COUNT_SECONDS = 5.0

type Publish = Callable[[str, dict[str, Any]], Awaitable[None]]


class UnroutableMessage(LookupError):
    """No task handles the message's topic."""


class OutboxRelay:
    def __init__(
        self, infrastructure: Infrastructure, publish: Publish, *, batch_size: int, poll_seconds: float
    ) -> None:
        self._infrastructure = infrastructure
        self._publish = publish
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds

    async def relay_once(self) -> int:
        """Publish one batch; how many rows were published."""
        async with self._infrastructure.unit_of_work() as uow:
            repository = OutboxRepository(uow.session)
            messages = await repository.claim_pending(limit=self._batch_size)
            routed: list[tuple[str, dt.datetime]] = []  # topic, created_at
            for message in messages:
                try:
                    await self._publish(message.topic, {**message.payload, "outbox_id": str(message.id)})
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

    async def count_backlog(self) -> None:
        async with self._infrastructure.unit_of_work() as uow:
            OUTBOX_BACKLOG.set(await OutboxRepository(uow.session).count_pending())

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
