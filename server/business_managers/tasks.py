"""Business managers' periodic sync with Meta, and what the other sync jobs share about them.

`sync_business_managers` (hourly) reads every live business manager from Meta with its own token:
the verification status and `synced_at` follow Meta, audited (action "sync"); one in
NEEDS_ATTENTION whose token works again becomes ACTIVE (audited "sync" too). A token Meta refuses
(code 190) makes the business manager NEEDS_ATTENTION through
`BusinessManagerService.flag_token_refused` (audited "token_refused"; staff must set a new token),
as in the account and pixel syncs; all of them talk to Meta through `server.business_managers.meta_steps`.
"""

import asyncio
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import structlog
from taskiq import Context, TaskiqDepends

from server.business_managers.meta_steps import BusinessCredentials, FailureKind, MetaStepFailure, WorkRefused
from server.business_managers.meta_values import verification_status_from_meta
from server.business_managers.models import BusinessManager, BusinessManagerStatus
from server.business_managers.service import ENTITY, to_schema
from server.clients.meta.models import MetaBusiness
from server.clients.meta.protocol import IMetaClient
from server.composition import Infrastructure
from server.config import Settings
from server.db import utcnow
from server.tasks.resources import worker_resources

logger = structlog.get_logger("adplane.sync.business_managers")

SYNC_ACTION = "sync"


@dataclass
class BusinessManagerSyncSummary:
    checked: int = 0
    # Verification status or status changed (audited).
    changed: int = 0
    needs_attention: int = 0
    recovered: int = 0
    # Meta kept failing, or the token could not be decrypted; tried again next time.
    failed: int = 0


async def sync_business_managers(context: Annotated[Context, TaskiqDepends()]) -> dict[str, int]:
    """Scheduled task (SYNC_BUSINESS_MANAGERS_CRON)."""
    resources = worker_resources(context)
    summary = await refresh_business_managers(resources.infrastructure, resources.meta, resources.settings)
    return asdict(summary)


async def refresh_business_managers(
    infrastructure: Infrastructure, meta: IMetaClient, settings: Settings
) -> BusinessManagerSyncSummary:
    """Read every live business manager with a token from Meta, at most `meta_max_concurrency` at once."""
    async with infrastructure.unit_of_work() as uow:
        targets = [bm for bm in await uow.business_manager_repository.list_for_sync() if bm.encrypted_token]
    summary = BusinessManagerSyncSummary()
    semaphore = asyncio.Semaphore(settings.meta_max_concurrency)
    steps = infrastructure.meta_steps(meta, settings)

    async def refresh(business_manager: BusinessManager) -> None:
        try:
            # NEEDS_ATTENTION ones too: a token that works again makes them ACTIVE.
            credentials = steps.credentials(business_manager, require_active=False)
        except WorkRefused:
            summary.failed += 1
            return
        async with semaphore:
            business = await steps.run(
                lambda: steps.call(
                    credentials, lambda token: steps.meta.get_business(credentials.meta_business_id, token=token)
                ),
                what=f"get business {credentials.meta_business_id}",
            )
        if isinstance(business, MetaStepFailure):
            if business.kind is FailureKind.TOKEN_REFUSED:
                summary.needs_attention += int(business.flagged)
                return
            logger.warning(
                "reading the business from Meta failed; tried again next run",
                business_manager_id=str(business_manager.id),
                error=business.reason,
            )
            summary.failed += 1
            return
        summary.checked += 1
        outcome = await _apply(infrastructure, credentials, business)
        if outcome.changed:
            summary.changed += 1
        if outcome.recovered:
            summary.recovered += 1

    # A Meta failure ends the work on one business manager only (above); anything else (the
    # database gone) cancels the rest and fails the run, which the next schedule repeats.
    async with asyncio.TaskGroup() as group:
        for business_manager in targets:
            group.create_task(refresh(business_manager))
    logger.info("business managers synced", **asdict(summary))
    return summary


@dataclass(frozen=True)
class _Outcome:
    changed: bool = False
    recovered: bool = False


async def _apply(infrastructure: Infrastructure, credentials: BusinessCredentials, business: MetaBusiness) -> _Outcome:
    synced_at = utcnow()
    async with infrastructure.unit_of_work() as uow:
        repository = uow.business_manager_repository
        current = await repository.lock(credentials.business_manager_id)
        # Archived, or given a new token while Meta was being read: what Meta said about the old
        # token says nothing about the new one (a NEEDS_ATTENTION one is ACTIVE again already).
        if (
            current is None
            or current.status is BusinessManagerStatus.ARCHIVED
            or current.encrypted_token != credentials.encrypted_token
        ):
            return _Outcome()
        values: dict[str, Any] = {}
        verification = verification_status_from_meta(business.verification_status)
        if verification is None:
            logger.warning(
                "unknown verification status from Meta",
                business_manager_id=str(current.id),
                verification_status=business.verification_status,
            )
        elif verification is not current.verification_status:
            values["verification_status"] = verification
        recovered = current.status is BusinessManagerStatus.NEEDS_ATTENTION
        if recovered:
            values["status"] = BusinessManagerStatus.ACTIVE
        if not values:
            await repository.mark_synced([current.id], synced_at=synced_at)
            return _Outcome()
        before = to_schema(current)
        after = to_schema(await repository.update(current.id, values={**values, "synced_at": synced_at}))
        await uow.audit.record(
            entity_type=ENTITY,
            entity_id=current.id,
            action=SYNC_ACTION,
            workspace_id=current.workspace_id,
            before=before,
            after=after,
        )
        return _Outcome(changed=True, recovered=recovered)
