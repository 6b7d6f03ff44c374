"""Background jobs of the request lifecycle: expiring forgotten requests, queueing stalled work again.

Carrying out an approved request is `server.requests.work.RequestWork`. These are plain functions
over a unit-of-work factory; the task registry (`server.background.registry`) runs them on their
schedules, and tests and CLI commands call them directly.
"""

import datetime as dt
from typing import Protocol

import structlog

from server.db import utcnow
from server.requests.service import IRequestService
from server.units import UnitOfWorkFactory

logger = structlog.get_logger("adplane.requests.tasks")

# Requests expired per transaction by the scheduled job.
EXPIRY_BATCH_SIZE = 500


class RequestJobUnit(Protocol):
    @property
    def requests(self) -> IRequestService: ...


async def expire_stale(
    units: UnitOfWorkFactory[RequestJobUnit], *, now: dt.datetime | None = None, batch_size: int = EXPIRY_BATCH_SIZE
) -> int:
    """Expire every waiting request past its deadline at `now`, a batch per transaction (short
    transactions, and a crash keeps what was done); how many. Runs until a batch expires none: rows
    a batch did not expire were reviewed meanwhile and are no longer waiting, so the loop ends."""
    now = now or utcnow()
    total = 0
    while True:
        async with units() as uow:
            expired = await uow.requests.expire_stale_requests(now=now, limit=batch_size)
        total += expired
        if expired == 0:
            break
    if total:
        logger.info("expired stale requests", count=total)
    return total


async def requeue_stalled(units: UnitOfWorkFactory[RequestJobUnit], *, stalled_after: dt.timedelta) -> int:
    """Queue again the work of approved requests that should have finished `stalled_after` ago; how many."""
    async with units() as uow:
        return await uow.requests.requeue_stalled_requests(cutoff=utcnow() - stalled_after)
