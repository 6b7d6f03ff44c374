"""Business managers' hourly sync with Meta.

`sync_business_managers` reads every live business manager with a token from Meta with its own token:
the verification status and `synced_at` follow Meta, audited (action "sync"); one in
NEEDS_ATTENTION whose token works again becomes ACTIVE (audited "sync" too). A token Meta refuses
(code 190) makes the business manager NEEDS_ATTENTION through `MetaSteps` (audited "token_refused";
staff must set a new token), as in the account and pixel syncs, which share this sync's shape
(`server.business_managers.meta_sync`).
"""

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import structlog

from server.audit_logs.service import IAuditTrail
from server.business_managers.meta_steps import BusinessCredentials, MetaStepFailure, MetaSteps
from server.business_managers.meta_sync import BusinessManagerCounts, sync_each
from server.business_managers.meta_values import verification_status_from_meta
from server.business_managers.models import BusinessManagerStatus
from server.business_managers.repository import BusinessManagerRepository
from server.business_managers.service import ENTITY, to_schema
from server.clients.meta.models import MetaBusiness
from server.db import utcnow
from server.units import UnitOfWorkFactory

logger = structlog.get_logger("adplane.sync.business_managers")

SYNC_ACTION = "sync"


class BusinessManagerSyncUnit(Protocol):
    """What the business manager sync uses of a unit of work."""

    @property
    def business_manager_repository(self) -> BusinessManagerRepository: ...
    @property
    def audit(self) -> IAuditTrail: ...


@dataclass
class BusinessManagerSyncSummary:
    business_managers: BusinessManagerCounts = field(default_factory=BusinessManagerCounts)
    # Verification status or status changed (audited).
    changed: int = 0
    # Were NEEDS_ATTENTION and their token works again: ACTIVE now.
    recovered: int = 0


async def sync_business_managers(
    units: UnitOfWorkFactory[BusinessManagerSyncUnit], steps: MetaSteps, *, concurrency: int
) -> BusinessManagerSyncSummary:
    """Read every live business manager with a token from Meta, at most `concurrency` at once
    (NEEDS_ATTENTION ones too: a token that works again makes them ACTIVE)."""
    async with units() as uow:
        targets = await uow.business_manager_repository.list_for_sync()
    summary = BusinessManagerSyncSummary()

    async def read(credentials: BusinessCredentials) -> MetaBusiness | MetaStepFailure:
        business_id = credentials.meta_business_id
        return await steps.run(
            lambda: steps.call(credentials, lambda token: steps.meta.get_business(business_id, token=token)),
            what=f"get business {business_id}",
        )

    async def write(credentials: BusinessCredentials, business: MetaBusiness) -> None:
        outcome = await _apply(units, credentials, business)
        summary.changed += int(outcome.changed)
        summary.recovered += int(outcome.recovered)

    summary.business_managers = await sync_each(
        steps, targets, concurrency=concurrency, read=read, write=write, what="the business"
    )
    logger.info("business managers synced", **asdict(summary))
    return summary


@dataclass(frozen=True)
class _Outcome:
    changed: bool = False
    recovered: bool = False


async def _apply(
    units: UnitOfWorkFactory[BusinessManagerSyncUnit], credentials: BusinessCredentials, business: MetaBusiness
) -> _Outcome:
    synced_at = utcnow()
    async with units() as uow:
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
