"""The periodic jobs that keep ad accounts in line with Meta: the sync, and spend-cap alerts.

`sync_accounts` (every 15 minutes) reads Meta's view of every ACTIVE account Meta created, business
manager by business manager, and writes what changed: Meta's status, disable reason, amount spent
and spend cap. Each business manager's accounts come from its `owned_ad_accounts` edge, 100 per call
(`get_ad_accounts` would read the same accounts in batches of 50: more HTTP calls, and Meta counts
every request inside a batch against the business's rate limit, 100 times the quota of a page); the
few accounts the edge does not list (e.g. shared with the business rather than owned by it) are read
in batches. Business managers run concurrently, at most `meta_max_concurrency` talking to Meta at
once; no transaction stays open while Meta is called.

Accounts are written only at the version they had when read, before Meta was called: one changed
meanwhile (a spend-cap change landing while Meta was being read, say) is left for the next run, so
what Meta said before that change is never written over it.

Per business manager the database sees a constant number of statements, whatever its number of
accounts: the read before Meta is called, one read in the writing transaction, one
`UPDATE ... FROM unnest(...)` for the changed accounts, one for `synced_at` of the unchanged ones,
and one executemany INSERT of the audit entries (action "sync", before/after).

`send_spend_cap_alerts` raises an alert once per crossing of 80 % and 100 % of an account's cap.
"""

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import structlog
from pydantic import BaseModel

from server.accounts.meta_values import account_status_from_meta, disable_reason_from_meta
from server.accounts.models import Account
from server.accounts.repository import AccountMetaState, AccountRepository
from server.accounts.schemas import AccountResponseSchema
from server.accounts.service import ACCOUNT_ENTITY
from server.audit_logs.service import AuditEntry, IAuditTrail
from server.business_managers.meta_steps import BusinessCredentials, MetaStepFailure, MetaSteps
from server.business_managers.meta_sync import BusinessManagerCounts, sync_each
from server.business_managers.models import BusinessManager
from server.clients.meta.models import MetaAdAccount
from server.db import utcnow
from server.outbox.repository import IOutbox
from server.units import UnitOfWorkFactory

logger = structlog.get_logger("adplane.sync.accounts")

SYNC_ACTION = "sync"
SPEND_CAP_ALERT_ACTION = "spend_cap_alert"
SPEND_CAP_ALERT_TOPIC = "account.spend_cap_alert"
# Percentages of the spend cap that raise an alert, each once per cap.
SPEND_CAP_ALERT_THRESHOLDS = (80, 100)

type Progress = Callable[[int, int], None]


class ISyncTargets(Protocol):
    """The business managers a sync may read (the business managers repository)."""

    async def list_syncable(self, business_manager_ids: Sequence[uuid.UUID]) -> list[BusinessManager]: ...


class AccountSyncUnit(Protocol):
    """What the account sync and the spend-cap alerts use of a unit of work."""

    @property
    def account_repository(self) -> AccountRepository: ...
    @property
    def business_manager_repository(self) -> ISyncTargets: ...
    @property
    def audit(self) -> IAuditTrail: ...
    @property
    def outbox(self) -> IOutbox: ...


@dataclass
class SyncSummary:
    business_managers: BusinessManagerCounts = field(default_factory=BusinessManagerCounts)
    # Local accounts compared with what Meta reported.
    accounts_checked: int = 0
    # Accounts with a change, written and audited.
    accounts_updated: int = 0
    # Accounts changed here while Meta was being read: left alone, the next run compares them again.
    accounts_changed_meanwhile: int = 0
    # Local accounts Meta did not report (deleted, or no longer reachable with the token).
    accounts_not_found: int = 0


async def sync_accounts(
    units: UnitOfWorkFactory[AccountSyncUnit],
    steps: MetaSteps,
    *,
    concurrency: int,
    progress: Progress | None = None,
) -> SyncSummary:
    """Bring every ACTIVE account of every ACTIVE business manager with a token in line with Meta.

    `progress(done, total)` is called with 0 first and after each business manager, counting
    accounts: `total` is how many accounts there were to sync when the run started.
    """
    async with units() as uow:
        counts = await uow.account_repository.count_syncable_by_business_manager()
        targets = await uow.business_manager_repository.list_syncable(sorted(counts))
    total = sum(counts[target.id] for target in targets)
    synced = 0
    if progress is not None:
        progress(synced, total)

    def done(business_manager: BusinessManager) -> None:
        nonlocal synced
        synced += counts[business_manager.id]
        if progress is not None:
            progress(synced, total)

    summary = SyncSummary()
    sync = _BusinessManagerSync(units, steps, summary)
    summary.business_managers = await sync_each(
        steps, targets, concurrency=concurrency, read=sync.read, write=sync.write, what="ad accounts", done=done
    )
    logger.info("accounts synced", **asdict(summary))
    return summary


@dataclass(frozen=True)
class _Reported:
    """Meta's view of a business manager's accounts, and the versions they had before Meta was read."""

    accounts: dict[str, MetaAdAccount]
    read_versions: Mapping[uuid.UUID, int]


class _BusinessManagerSync:
    def __init__(self, units: UnitOfWorkFactory[AccountSyncUnit], steps: MetaSteps, summary: SyncSummary) -> None:
        self._units = units
        self._steps = steps
        self._meta = steps.meta
        self._summary = summary

    async def read(self, credentials: BusinessCredentials) -> _Reported | MetaStepFailure:
        async with self._units() as uow:
            accounts = await uow.account_repository.list_for_sync(credentials.business_manager_id)
        known = [account.meta_account_id for account in accounts if account.meta_account_id]
        # What Meta is about to report describes the accounts as they are now: only these versions
        # may be written with it.
        read_versions = {account.id: account.version for account in accounts}
        reported = await self._read(credentials, known)
        if isinstance(reported, MetaStepFailure):
            return reported
        return _Reported(reported, read_versions)

    async def _read(
        self, credentials: BusinessCredentials, known: Sequence[str]
    ) -> dict[str, MetaAdAccount] | MetaStepFailure:
        """Meta's view of the business's accounts, by act id: its owned accounts, and those of
        `known` it does not own, read in batches (two steps, each retried on its own)."""
        business_id = credentials.meta_business_id

        async def owned(token: str) -> dict[str, MetaAdAccount]:
            return {
                account.id: account async for account in self._meta.list_owned_ad_accounts(business_id, token=token)
            }

        reported = await self._steps.run(
            lambda: self._steps.call(credentials, owned), what=f"list ad accounts of business {business_id}"
        )
        if isinstance(reported, MetaStepFailure):
            return reported
        missing = [account_id for account_id in known if account_id not in reported]
        if not missing:
            return reported
        reads = await self._steps.run(
            lambda: self._steps.call(credentials, lambda token: self._meta.get_ad_accounts(missing, token=token)),
            what=f"read {len(missing)} ad accounts of business {business_id}",
        )
        if isinstance(reads, MetaStepFailure):
            return reads
        reported.update(reads.accounts)
        if reads.errors:
            logger.info(
                "ad accounts not readable from Meta",
                business_id=business_id,
                errors={account_id: str(error) for account_id, error in list(reads.errors.items())[:20]},
                count=len(reads.errors),
            )
        return reported

    async def write(self, credentials: BusinessCredentials, reported: _Reported) -> None:
        """Write Meta's view of the accounts that are still at the versions read before Meta was
        called; the others changed meanwhile and wait for the next run."""
        synced_at = utcnow()
        async with self._units() as uow:
            repository = uow.account_repository
            # Read again, inside the writing transaction, for exact `before` snapshots.
            accounts = await repository.list_for_sync(credentials.business_manager_id)
            states: list[AccountMetaState] = []
            before: dict[uuid.UUID, AccountResponseSchema] = {}
            unchanged: list[uuid.UUID] = []
            for account in accounts:
                read_version = reported.read_versions.get(account.id)
                if read_version is None:
                    continue  # came in after this run read the business manager's accounts
                meta_account = reported.accounts.get(account.meta_account_id or "")
                if meta_account is None:
                    self._summary.accounts_not_found += 1
                    continue
                if account.version != read_version:
                    self._summary.accounts_changed_meanwhile += 1
                    continue
                self._summary.accounts_checked += 1
                # At `read_version` (checked above): `apply_meta_states` writes at that version only,
                # so a change committed after this read is not overwritten either.
                state = meta_state(account, meta_account)
                if state is None:
                    unchanged.append(account.id)
                else:
                    states.append(state)
                    before[account.id] = AccountResponseSchema.model_validate(account)
            # Snapshots of `before` are taken above: the UPDATE refreshes the loaded objects.
            updated = await repository.apply_meta_states(states, synced_at=synced_at)
            await repository.mark_synced(unchanged, synced_at=synced_at)
            await uow.audit.record_many(
                [
                    AuditEntry(
                        entity_type=ACCOUNT_ENTITY,
                        entity_id=account.id,
                        action=SYNC_ACTION,
                        workspace_id=account.workspace_id,
                        before=before[account.id],
                        after=AccountResponseSchema.model_validate(account),
                    )
                    for account in updated
                ]
            )
        self._summary.accounts_updated += len(updated)
        # Changed between the read above and the UPDATE.
        self._summary.accounts_changed_meanwhile += len(states) - len(updated)


def meta_state(account: Account, reported: MetaAdAccount) -> AccountMetaState | None:
    """What to write to the account for Meta's view of it; None when nothing differs.

    Money passes as Meta reports it (Meta's amount units are the platform's minor units); a spend cap
    of 0 means none. A status code this platform does not know leaves the status as it was.
    """
    meta_status = account_status_from_meta(reported) or account.meta_status
    disable_reason = disable_reason_from_meta(reported)
    spend_cap = reported.spend_cap or None
    if (
        meta_status == account.meta_status
        and disable_reason == account.disable_reason
        and reported.amount_spent == account.amount_spent_minor
        and spend_cap == account.spend_cap_minor
    ):
        return None
    return AccountMetaState(
        account_id=account.id,
        version=account.version,
        meta_status=meta_status,
        disable_reason=disable_reason,
        amount_spent_minor=reported.amount_spent,
        spend_cap_minor=spend_cap,
        reset_spend_cap_alert=spend_cap != account.spend_cap_minor,
    )


# Spend-cap alerts


class SpendCapAlertSchema(BaseModel):
    """An account that reached a share of its spend cap: the audit snapshot and the outbox payload."""

    account_id: uuid.UUID
    workspace_id: uuid.UUID
    meta_account_id: str | None
    name: str
    currency: str
    spend_cap_minor: int
    amount_spent_minor: int
    # The threshold reached (80 or 100).
    percent: int
    # What the account has spent, in percent of the cap (two decimals).
    spent_percent: float


async def send_spend_cap_alerts(units: UnitOfWorkFactory[AccountSyncUnit]) -> list[SpendCapAlertSchema]:
    """Raise an alert for every account whose spend reached a threshold it was not alerted for.

    The marker (`spend_cap_alert_percent`) moves in the same conditional UPDATE that picks the
    accounts, and the audit entry and outbox row (`account.spend_cap_alert`, for notifications) go
    into the same transaction: a run delivered twice, or two runs at once, alert once. Past both
    thresholds at once, one alert (100) is raised. A new cap starts over (the marker is reset where
    the cap changes: the spend-cap task, and the sync when Meta reports another cap).
    """
    async with units() as uow:
        repository = uow.account_repository
        alerts = [_alert(account) for account in await repository.raise_spend_cap_alerts(SPEND_CAP_ALERT_THRESHOLDS)]
        await uow.audit.record_many(
            [
                AuditEntry(
                    entity_type=ACCOUNT_ENTITY,
                    entity_id=alert.account_id,
                    action=SPEND_CAP_ALERT_ACTION,
                    workspace_id=alert.workspace_id,
                    after=alert,
                )
                for alert in alerts
            ]
        )
        # One row each: alerts are rare (one per account and threshold for the life of a cap).
        for alert in alerts:
            await uow.outbox.add(SPEND_CAP_ALERT_TOPIC, alert.model_dump(mode="json"))
    if alerts:
        logger.info("spend-cap alerts raised", count=len(alerts))
    return alerts


def _alert(account: Account) -> SpendCapAlertSchema:
    cap = account.spend_cap_minor or 0
    return SpendCapAlertSchema(
        account_id=account.id,
        workspace_id=account.workspace_id,
        meta_account_id=account.meta_account_id,
        name=account.name,
        currency=account.currency,
        spend_cap_minor=cap,
        amount_spent_minor=account.amount_spent_minor,
        percent=account.spend_cap_alert_percent,
        spent_percent=round(account.amount_spent_minor * 100 / cap, 2) if cap else 0.0,
    )
