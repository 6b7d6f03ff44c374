"""The exports' retention job: exports older than EXPORT_RETENTION_DAYS are deleted, files and rows.

The bucket's lifecycle rule is set (or kept) first, where the store and the credentials allow it, so
the store deletes the files even should this job stop running; the job deletes them in any case, with
their rows, in batches."""

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

import structlog

from server.exports.service import IExportService
from server.retention import delete_in_batches
from server.units import UnitOfWorkFactory

logger = structlog.get_logger("adplane.exports.retention")


class ExportRetentionUnit(Protocol):
    @property
    def exports(self) -> IExportService: ...


@dataclass(frozen=True)
class ExportExpiry:
    deleted: int
    # Whether the bucket has the lifecycle rule (False: the store or the credentials refuse it).
    lifecycle_rule: bool


async def expire_exports(
    units: UnitOfWorkFactory[ExportRetentionUnit], *, batch_size: int, now: dt.datetime | None = None
) -> ExportExpiry:
    async with units() as uow:
        lifecycle_rule = await uow.exports.apply_lifecycle_rule()

    async def batch(uow: ExportRetentionUnit, limit: int) -> int:
        return await uow.exports.delete_expired(limit=limit, now=now)

    deleted = await delete_in_batches(units, batch, batch_size=batch_size)
    if deleted:
        logger.info("deleted expired exports", count=deleted)
    return ExportExpiry(deleted=deleted, lifecycle_rule=lifecycle_rule)
