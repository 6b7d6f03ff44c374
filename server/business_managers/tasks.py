"""Business managers' periodic sync with Meta, and what the other sync jobs share about them.

`sync_business_managers` (hourly) reads every live business manager from Meta with its own token:
the verification status and `synced_at` follow Meta, audited (action "sync"); one in
NEEDS_ATTENTION whose token works again becomes ACTIVE (audited "sync" too). A token Meta refuses
(code 190) makes the business manager NEEDS_ATTENTION through
`BusinessManagerService.flag_token_refused` (audited "token_refused"; staff must set a new token),
as in the account and pixel syncs, which use `decrypt_token` from here to read a token.
"""

import asyncio
import uuid
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import structlog
from cryptography.fernet import InvalidToken
from taskiq import Context, TaskiqDepends

from server.business_managers.models import BusinessManagerStatus, BusinessVerificationStatus
from server.business_managers.repository import BusinessManagerRepository
from server.business_managers.service import ENTITY, to_schema
from server.clients.meta.exceptions import MetaError, MetaTokenError
from server.clients.meta.models import MetaBusiness
from server.clients.meta.protocol import IMetaClient
from server.composition import Infrastructure
from server.config import Settings
from server.db import utcnow
from server.tasks.resources import worker_resources
from server.tasks.retry import RetriesExhausted, RetryPolicy, retrying

logger = structlog.get_logger("adplane.sync.business_managers")

SYNC_ACTION = "sync"

# Meta's verification statuses beyond the four the platform tells apart.
_VERIFICATION_STATUSES: dict[str, BusinessVerificationStatus] = {
    **{status.value: status for status in BusinessVerificationStatus},
    "pending_submission": BusinessVerificationStatus.PENDING,
    "pending_need_more_info": BusinessVerificationStatus.PENDING,
    "rejected": BusinessVerificationStatus.FAILED,
    "revoked": BusinessVerificationStatus.FAILED,
    "expired": BusinessVerificationStatus.FAILED,
    "ineligible": BusinessVerificationStatus.FAILED,
}


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
        targets = [
            _Target(bm.id, bm.meta_business_id, bm.encrypted_token)
            for bm in await BusinessManagerRepository(uow.session).list_for_sync()
            if bm.encrypted_token is not None
        ]
    summary = BusinessManagerSyncSummary()
    semaphore = asyncio.Semaphore(settings.meta_max_concurrency)
    policy = RetryPolicy.from_settings(settings)

    async def refresh(target: _Target) -> None:
        token = decrypt_token(infrastructure, target.business_manager_id, target.token_ciphertext)
        if token is None:
            summary.failed += 1
            return
        try:
            async with semaphore:
                business = await retrying(
                    lambda: meta.get_business(target.meta_business_id, token=token),
                    policy=policy,
                    what=f"get business {target.meta_business_id}",
                )
        except MetaTokenError:
            async with infrastructure.unit_of_work() as uow:
                flagged = await uow.business_managers.flag_token_refused(
                    target.business_manager_id, token_ciphertext=target.token_ciphertext
                )
            if flagged:
                summary.needs_attention += 1
                logger.warning(
                    "business manager token refused by Meta", business_manager_id=str(target.business_manager_id)
                )
            return
        except (MetaError, RetriesExhausted) as error:
            logger.warning(
                "reading the business from Meta failed; tried again next run",
                business_manager_id=str(target.business_manager_id),
                error=str(error),
            )
            summary.failed += 1
            return
        summary.checked += 1
        outcome = await _apply(infrastructure, target, business)
        if outcome.changed:
            summary.changed += 1
        if outcome.recovered:
            summary.recovered += 1

    # A Meta failure ends the work on one business manager only (above); anything else (the
    # database gone) cancels the rest and fails the run, which the next schedule repeats.
    async with asyncio.TaskGroup() as group:
        for target in targets:
            group.create_task(refresh(target))
    logger.info("business managers synced", **asdict(summary))
    return summary


@dataclass(frozen=True)
class _Target:
    business_manager_id: uuid.UUID
    meta_business_id: str
    token_ciphertext: str


@dataclass(frozen=True)
class _Outcome:
    changed: bool = False
    recovered: bool = False


async def _apply(infrastructure: Infrastructure, target: _Target, business: MetaBusiness) -> _Outcome:
    synced_at = utcnow()
    async with infrastructure.unit_of_work() as uow:
        repository = BusinessManagerRepository(uow.session)
        current = await repository.lock(target.business_manager_id)
        # Archived, or given a new token while Meta was being read: what Meta said about the old
        # token says nothing about the new one (a NEEDS_ATTENTION one is ACTIVE again already).
        if (
            current is None
            or current.status is BusinessManagerStatus.ARCHIVED
            or current.encrypted_token != target.token_ciphertext
        ):
            return _Outcome()
        values: dict[str, Any] = {}
        verification = _VERIFICATION_STATUSES.get(business.verification_status)
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


# Shared by the sync jobs


def decrypt_token(infrastructure: Infrastructure, business_manager_id: uuid.UUID, ciphertext: str) -> str | None:
    """The token in clear, or None (logged) when no configured key decrypts it."""
    try:
        return infrastructure.cipher.decrypt(ciphertext)
    except InvalidToken:
        logger.error("business manager token cannot be decrypted", business_manager_id=str(business_manager_id))
        return None
