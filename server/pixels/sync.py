"""The hourly pixel sync: when each pixel last fired, as Meta reports it.

For every ACTIVE business manager with a token and pixels Meta created, the `owned_pixels` edge is
read (business managers concurrently, at most `meta_max_concurrency` at once, no transaction open
meanwhile); pixels whose `last_fired_at` differs are written in one statement and audited (action
"sync", before/after) in one executemany INSERT. A token Meta refuses makes the business manager
NEEDS_ATTENTION and the others go on.
"""

import asyncio
import datetime as dt
import uuid
from dataclasses import asdict, dataclass
from typing import Annotated

import structlog
from taskiq import Context, TaskiqDepends

from server.audit_logs.service import AuditEntry
from server.business_managers.meta_steps import FailureKind, MetaStepFailure, WorkRefused
from server.business_managers.models import BusinessManager
from server.clients.meta.models import MetaPixel
from server.clients.meta.protocol import IMetaClient
from server.composition import Infrastructure
from server.config import Settings
from server.pixels.schemas import PixelResponseSchema
from server.pixels.service import ENTITY
from server.tasks.resources import worker_resources

logger = structlog.get_logger("adplane.sync.pixels")

SYNC_ACTION = "sync"


@dataclass
class PixelSyncSummary:
    business_managers: int = 0
    business_managers_failed: int = 0
    business_managers_token_refused: int = 0
    pixels_checked: int = 0
    pixels_updated: int = 0
    # Local pixels Meta did not list (deleted, or no longer owned by the business).
    pixels_not_found: int = 0


async def sync_pixels_task(context: Annotated[Context, TaskiqDepends()]) -> dict[str, int]:
    """Scheduled task (SYNC_PIXELS_CRON)."""
    resources = worker_resources(context)
    summary = await sync_pixels(resources.infrastructure, resources.meta, resources.settings)
    return asdict(summary)


async def sync_pixels(infrastructure: Infrastructure, meta: IMetaClient, settings: Settings) -> PixelSyncSummary:
    async with infrastructure.unit_of_work() as uow:
        targets = [business_manager for business_manager, _ in await uow.pixel_repository.list_sync_targets()]
    summary = PixelSyncSummary()
    steps = infrastructure.meta_steps(meta, settings)
    meta_slots = asyncio.Semaphore(settings.meta_max_concurrency)

    async def sync(business_manager: BusinessManager) -> None:
        try:
            credentials = steps.credentials(business_manager, require_active=False)
        except WorkRefused:
            summary.business_managers_failed += 1
            return
        business_id = business_manager.meta_business_id

        async def owned(token: str) -> dict[str, MetaPixel]:
            return {pixel.id: pixel async for pixel in meta.list_owned_pixels(business_id, token=token)}

        async with meta_slots:
            reported = await steps.run(
                lambda: steps.call(credentials, owned), what=f"list pixels of business {business_id}"
            )
        if isinstance(reported, MetaStepFailure):
            if reported.kind is FailureKind.TOKEN_REFUSED:
                summary.business_managers_token_refused += 1
                return
            summary.business_managers_failed += 1
            logger.warning(
                "reading pixels from Meta failed; tried again next run",
                business_manager_id=str(business_manager.id),
                error=reported.reason,
            )
            return
        summary.business_managers += 1
        await _write(infrastructure, business_manager.id, reported, summary)

    # A Meta failure ends the work on one business manager only; anything else cancels the run.
    async with asyncio.TaskGroup() as group:
        for business_manager in targets:
            group.create_task(sync(business_manager))
    logger.info("pixels synced", **asdict(summary))
    return summary


async def _write(
    infrastructure: Infrastructure,
    business_manager_id: uuid.UUID,
    reported: dict[str, MetaPixel],
    summary: PixelSyncSummary,
) -> None:
    async with infrastructure.unit_of_work() as uow:
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
