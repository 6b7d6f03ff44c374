"""Tasks of the request lifecycle: carrying out approved requests, expiring forgotten ones.

The task functions are thin shells over plain functions (`Infrastructure.request_work`, `expire_stale`)
that tests and CLI commands call directly.
"""

import datetime as dt
import uuid
from typing import Annotated, Any

import structlog
from taskiq import Context, TaskiqDepends

from server.composition import Infrastructure
from server.db import utcnow
from server.tasks.resources import worker_resources

logger = structlog.get_logger("adplane.requests.tasks")

# Requests expired per transaction by the scheduled job.
EXPIRY_BATCH_SIZE = 500


async def carry_out_request(payload: dict[str, Any], context: Annotated[Context, TaskiqDepends()]) -> str | None:
    """`request.approved`: do the approved work on Meta and complete (or fail) the request.

    Returns the status the request ended in (the task result, for operators).
    """
    resources = worker_resources(context)
    request_id = uuid.UUID(payload["request_id"])
    with structlog.contextvars.bound_contextvars(request_id=str(request_id), outbox_id=payload.get("outbox_id")):
        work = resources.infrastructure.request_work(resources.meta, resources.settings)
        status = await work.carry_out(request_id)
    return status.value if status is not None else None


async def expire_stale_requests(context: Annotated[Context, TaskiqDepends()]) -> int:
    """Scheduled: expire requests that waited for approval past their deadline; how many."""
    return await expire_stale(worker_resources(context).infrastructure)


async def expire_stale(
    infrastructure: Infrastructure, *, now: dt.datetime | None = None, batch_size: int = EXPIRY_BATCH_SIZE
) -> int:
    """Expire every waiting request past its deadline at `now`, a batch per transaction (short
    transactions, and a crash keeps what was done). Runs until a batch expires none: rows a batch
    did not expire were reviewed meanwhile and are no longer waiting, so the loop ends."""
    now = now or utcnow()
    total = 0
    while True:
        async with infrastructure.unit_of_work() as uow:
            expired = await uow.requests.expire_stale_requests(now=now, limit=batch_size)
        total += expired
        if expired == 0:
            break
    if total:
        logger.info("expired stale requests", count=total)
    return total


async def requeue_stalled_requests(context: Annotated[Context, TaskiqDepends()]) -> int:
    """Scheduled: queue again the work of approved requests that should have finished long ago."""
    resources = worker_resources(context)
    cutoff = utcnow() - dt.timedelta(seconds=resources.settings.requeue_stalled_after_seconds)
    async with resources.infrastructure.unit_of_work() as uow:
        return await uow.requests.requeue_stalled_requests(cutoff=cutoff)
