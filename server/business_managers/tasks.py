"""Business managers' periodic sync with Meta, and what the other sync jobs share about them.

`sync_business_managers` (hourly) reads every live business manager from Meta with its own token:
the verification status and `synced_at` follow Meta; a token Meta refuses (code 190) makes the
business manager NEEDS_ATTENTION (staff must set a new token), and one in NEEDS_ATTENTION whose
token works again becomes ACTIVE. Every change is audited (action "sync").

The account and pixel syncs call `mark_needs_attention` when Meta refuses a token, and build their
bulk audit rows with `audit_entry`.
"""

import asyncio
import datetime as dt
import uuid
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import structlog
from cryptography.fernet import InvalidToken
from pydantic import BaseModel
from taskiq import Context, TaskiqDepends

from server.auth.principal import current_principal_or_none
from server.business_managers.models import BusinessManagerStatus, BusinessVerificationStatus
from server.business_managers.repository import BusinessManagerRepository
from server.business_managers.service import ENTITY, _to_schema
from server.clients.meta.exceptions import MetaError, MetaTokenError
from server.clients.meta.models import MetaBusiness
from server.clients.meta.protocol import IMetaClient
from server.composition import Infrastructure
from server.config import Settings
from server.db import new_id, utcnow
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
            if await mark_needs_attention(
                infrastructure, target.business_manager_id, token_ciphertext=target.token_ciphertext
            ):
                summary.needs_attention += 1
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
        before = _to_schema(current)
        after = _to_schema(await repository.update(current.id, values={**values, "synced_at": synced_at}))
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


async def mark_needs_attention(
    infrastructure: Infrastructure, business_manager_id: uuid.UUID, *, token_ciphertext: str
) -> bool:
    """Meta refused the business manager's token (code 190): flag it NEEDS_ATTENTION, audited.

    Only an ACTIVE one still holding the token that was refused changes: staff may have set a new
    token while Meta was being called, and that one has not been tried. Returns whether it changed.
    """
    async with infrastructure.unit_of_work() as uow:
        repository = BusinessManagerRepository(uow.session)
        current = await repository.lock(business_manager_id)
        if (
            current is None
            or current.status is not BusinessManagerStatus.ACTIVE
            or current.encrypted_token != token_ciphertext
        ):
            return False
        before = _to_schema(current)
        after = _to_schema(
            await repository.update(business_manager_id, values={"status": BusinessManagerStatus.NEEDS_ATTENTION})
        )
        await uow.audit.record(
            entity_type=ENTITY,
            entity_id=business_manager_id,
            action=SYNC_ACTION,
            workspace_id=current.workspace_id,
            before=before,
            after=after,
        )
    logger.warning("business manager token refused by Meta", business_manager_id=str(business_manager_id))
    return True


def decrypt_token(infrastructure: Infrastructure, business_manager_id: uuid.UUID, ciphertext: str) -> str | None:
    """The token in clear, or None (logged) when no configured key decrypts it."""
    try:
        return infrastructure.cipher.decrypt(ciphertext)
    except InvalidToken:
        logger.error("business manager token cannot be decrypted", business_manager_id=str(business_manager_id))
        return None


def audit_entry(
    *,
    entity_type: str,
    entity_id: uuid.UUID,
    action: str,
    workspace_id: uuid.UUID | None,
    before: BaseModel | None,
    after: BaseModel | None,
    at: dt.datetime,
) -> dict[str, Any]:
    """An audit row as `AuditTrail.record` writes it (same actor and trace id), for bulk inserts."""
    actor = current_principal_or_none()
    return {
        "id": new_id(),
        "actor_type": actor.kind.value if actor else None,
        "actor_id": actor.id if actor else None,
        "workspace_id": workspace_id,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "action": action,
        "before": before.model_dump(mode="json") if before is not None else None,
        "after": after.model_dump(mode="json") if after is not None else None,
        "trace_id": structlog.contextvars.get_contextvars().get("request_id"),
        "created_at": at,
    }
