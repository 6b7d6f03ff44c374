"""Tasks of the pixels module: carrying an unshare over to Meta.

Sharing is done by the request work (server.requests.work); unsharing needs no approval, so the
RPC removes the share here at once and this task removes it on Meta's side.
"""

import uuid
from enum import StrEnum
from typing import Protocol

import structlog

from server.accounts.schemas import AccountResponseSchema
from server.business_managers.meta_steps import BusinessCredentials, FailureKind, MetaStepFailure, MetaSteps
from server.business_managers.repository import IBusinessManagerRepository
from server.pixels.repository import PixelRepository
from server.tenancy import SYSTEM, TenantScope
from server.units import UnitOfWorkFactory

logger = structlog.get_logger("adplane.pixels.tasks")


class PixelUnshareOutcome(StrEnum):
    UNSHARED = "unshared"  # Meta no longer shares the pixel with the account
    SKIPPED = "skipped"  # nothing to do (shared again since, not on Meta...), logged
    FAILED = "failed"  # Meta refused or kept failing, logged


class IAccountReader(Protocol):
    """The ad account a pixel was shared with (the accounts repository)."""

    async def get(self, account_id: uuid.UUID, *, scope: TenantScope) -> AccountResponseSchema | None: ...


class PixelTaskUnit(Protocol):
    """What the unshare task uses of a unit of work."""

    @property
    def pixel_repository(self) -> PixelRepository: ...
    @property
    def account_repository(self) -> IAccountReader: ...
    @property
    def business_manager_repository(self) -> IBusinessManagerRepository: ...


async def apply_pixel_unshare(
    units: UnitOfWorkFactory[PixelTaskUnit], steps: MetaSteps, *, pixel_id: uuid.UUID, account_id: uuid.UUID
) -> PixelUnshareOutcome:
    """Unshare on Meta, unless the pixel is shared with the account here again (a later share
    request won; Meta must keep it). Unsharing what Meta does not share is a no-op, so running
    twice is harmless. The database is read in a short transaction of its own and no lock is held
    across the Meta call: the only race left is a share request carried out in that same instant,
    which the next pixel sync brings to light."""
    log = logger.bind(pixel_id=str(pixel_id), account_id=str(account_id))
    meta = steps.meta

    async def attempt() -> PixelUnshareOutcome:
        target = await _unshare_target(units, steps, pixel_id=pixel_id, account_id=account_id)
        if target is None:
            return PixelUnshareOutcome.SKIPPED
        credentials, meta_pixel_id, meta_account_id = target
        await steps.call(
            credentials,
            lambda token: meta.unshare_pixel(
                meta_pixel_id, account_id=meta_account_id, business_id=credentials.meta_business_id, token=token
            ),
        )
        return PixelUnshareOutcome.UNSHARED

    outcome = await steps.run(attempt, what=f"unsharing pixel {pixel_id}")
    if isinstance(outcome, MetaStepFailure):
        if outcome.kind is FailureKind.UNUSABLE:
            log.warning("cannot unshare the pixel on Meta", reason=outcome.reason)
            return PixelUnshareOutcome.SKIPPED
        log.error("could not unshare the pixel on Meta", reason=outcome.reason)
        return PixelUnshareOutcome.FAILED
    log.info("pixel unshare applied on Meta", outcome=outcome.value)
    return outcome


async def _unshare_target(
    units: UnitOfWorkFactory[PixelTaskUnit], steps: MetaSteps, *, pixel_id: uuid.UUID, account_id: uuid.UUID
) -> tuple[BusinessCredentials, str, str] | None:
    """The credentials and Meta ids to unshare with; None when there is nothing to do."""
    async with units() as uow:
        # Background work acts for every workspace.
        pixel = await uow.pixel_repository.get(pixel_id, scope=SYSTEM)
        account = await uow.account_repository.get(account_id, scope=SYSTEM)
        if pixel is None or account is None or pixel.meta_pixel_id is None or account.meta_account_id is None:
            logger.info("pixel or account not on Meta; nothing to unshare", pixel_id=str(pixel_id))
            return None
        if account_id in pixel.account_ids:
            logger.info("pixel shared with the account again since; leaving Meta as it is", pixel_id=str(pixel_id))
            return None
        business_manager = await uow.business_manager_repository.get(pixel.business_manager_id)
        if business_manager is None:  # pragma: no cover - a foreign key
            return None
        return steps.credentials(business_manager), pixel.meta_pixel_id, account.meta_account_id
