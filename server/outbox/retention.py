"""The outbox's retention job: published messages are deleted once OUTBOX_RETENTION_HOURS have passed
since they were published. Unpublished ones are never deleted, however old."""

import datetime as dt
from typing import Protocol

import structlog

from server.db import utcnow
from server.outbox.repository import OutboxRepository
from server.retention import delete_in_batches
from server.units import UnitOfWorkFactory

logger = structlog.get_logger("adplane.outbox.retention")


class OutboxRetentionUnit(Protocol):
    @property
    def outbox_repository(self) -> OutboxRepository: ...


async def delete_published(
    units: UnitOfWorkFactory[OutboxRetentionUnit],
    *,
    keep: dt.timedelta,
    batch_size: int,
    now: dt.datetime | None = None,
) -> int:
    """Delete the messages published more than `keep` before `now`; how many."""
    before = (now or utcnow()) - keep

    async def batch(uow: OutboxRetentionUnit, limit: int) -> int:
        return await uow.outbox_repository.delete_published(before=before, limit=limit)

    deleted = await delete_in_batches(units, batch, batch_size=batch_size)
    if deleted:
        logger.info("deleted published outbox messages", count=deleted, published_before=before.isoformat())
    return deleted
