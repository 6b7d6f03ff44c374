"""The hourly pixel sync: when each pixel last fired, as Meta reports it.

For every ACTIVE business manager with a token and pixels Meta created, the `owned_pixels` edge is
read (business managers concurrently, at most `meta_max_concurrency` at once, no transaction open
meanwhile); pixels whose `last_fired_at` differs are written in one statement and audited (action
"sync", before/after) in one executemany INSERT. A token Meta refuses makes the business manager
NEEDS_ATTENTION and the others go on.
"""

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import structlog

from server.audit_logs.service import AuditEntry, IAuditTrail
from server.business_managers.meta_steps import BusinessCredentials, MetaStepFailure, MetaSteps
from server.business_managers.meta_sync import BusinessManagerCounts, sync_each
from server.business_managers.models import BusinessManager
from server.clients.meta.models import MetaPixel
from server.pixels.repository import PixelRepository
from server.pixels.schemas import PixelResponseSchema
from server.pixels.service import ENTITY
from server.units import UnitOfWorkFactory

logger = structlog.get_logger("adplane.sync.pixels")

SYNC_ACTION = "sync"


class ISyncTargets(Protocol):
    """The business managers a sync may read (the business managers repository)."""

    async def list_syncable(self, business_manager_ids: Sequence[uuid.UUID]) -> list[BusinessManager]: ...


class PixelSyncUnit(Protocol):
    """What the pixel sync uses of a unit of work."""

    @property
    def pixel_repository(self) -> PixelRepository: ...
    @property
    def business_manager_repository(self) -> ISyncTargets: ...
    @property
    def audit(self) -> IAuditTrail: ...


@dataclass
class PixelSyncSummary:
    business_managers: BusinessManagerCounts = field(default_factory=BusinessManagerCounts)
    pixels_checked: int = 0
    pixels_updated: int = 0
    # Local pixels Meta did not list (deleted, or no longer owned by the business).
    pixels_not_found: int = 0


async def sync_pixels(
    units: UnitOfWorkFactory[PixelSyncUnit], steps: MetaSteps, *, concurrency: int
) -> PixelSyncSummary:
    async with units() as uow:
        holding = await uow.pixel_repository.syncable_business_manager_ids()
        targets = await uow.business_manager_repository.list_syncable(holding)
    summary = PixelSyncSummary()

    async def read(credentials: BusinessCredentials) -> dict[str, MetaPixel] | MetaStepFailure:
        business_id = credentials.meta_business_id

        async def owned(token: str) -> dict[str, MetaPixel]:
            return {pixel.id: pixel async for pixel in steps.meta.list_owned_pixels(business_id, token=token)}

        return await steps.run(lambda: steps.call(credentials, owned), what=f"list pixels of business {business_id}")

    async def write(credentials: BusinessCredentials, reported: dict[str, MetaPixel]) -> None:
        await _write(units, credentials.business_manager_id, reported, summary)

    summary.business_managers = await sync_each(
        steps, targets, concurrency=concurrency, read=read, write=write, what="pixels"
    )
    logger.info("pixels synced", **asdict(summary))
    return summary


async def _write(
    units: UnitOfWorkFactory[PixelSyncUnit],
    business_manager_id: uuid.UUID,
    reported: dict[str, MetaPixel],
    summary: PixelSyncSummary,
) -> None:
    async with units() as uow:
        repository = uow.pixel_repository
        changes: list[tuple[uuid.UUID, int, dt.datetime | None]] = []
        before: dict[uuid.UUID, PixelResponseSchema] = {}
        for pixel in await repository.list_for_sync(business_manager_id):
            meta_pixel = reported.get(pixel.meta_pixel_id or "")
            if meta_pixel is None:
                summary.pixels_not_found += 1
                continue
            summary.pixels_checked += 1
            # Meta reports no time for a pixel that never fired; what we knew is kept then.
            fired = meta_pixel.last_fired_time
            if fired is not None and fired != pixel.last_fired_at:
                changes.append((pixel.id, pixel.version, fired))
                before[pixel.id] = PixelResponseSchema.model_validate(pixel)
        updated = await repository.set_last_fired(changes)
        await uow.audit.record_many(
            [
                AuditEntry(
                    entity_type=ENTITY,
                    entity_id=pixel.id,
                    action=SYNC_ACTION,
                    workspace_id=pixel.workspace_id,
                    before=before[pixel.id],
                    after=PixelResponseSchema.model_validate(pixel),
                )
                for pixel in updated
            ]
        )
    summary.pixels_updated += len(updated)
