"""The idempotency keys' retention job: a key is deleted IDEMPOTENCY_KEY_RETENTION_HOURS after it was
first used. Clients retry within that window; a retry after it is a new request."""

import datetime as dt
from typing import Protocol

import structlog

from server.db import utcnow
from server.idempotency.repository import IdempotencyRepository
from server.retention import delete_in_batches
from server.units import UnitOfWorkFactory

logger = structlog.get_logger("adplane.idempotency.retention")


class IdempotencyRetentionUnit(Protocol):
    @property
    def idempotency_repository(self) -> IdempotencyRepository: ...


async def delete_expired_keys(
    units: UnitOfWorkFactory[IdempotencyRetentionUnit],
    *,
    keep: dt.timedelta,
    batch_size: int,
    now: dt.datetime | None = None,
) -> int:
    """Delete the keys first used more than `keep` before `now`; how many."""
    before = (now or utcnow()) - keep

    async def batch(uow: IdempotencyRetentionUnit, limit: int) -> int:
        return await uow.idempotency_repository.delete_created_before(before=before, limit=limit)

    deleted = await delete_in_batches(units, batch, batch_size=batch_size)
    if deleted:
        logger.info("deleted idempotency keys", count=deleted, created_before=before.isoformat())
    return deleted
