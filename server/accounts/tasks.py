"""Tasks of the accounts module: carrying users' access to ad accounts over to Meta.

`account_user.assigned` / `account_user.unassigned` messages do not say *what* to do so much as
*where to look*: the task reads the user's access to the account as it is now and makes Meta match
it (tasks given, or access removed). So a message delivered twice, or an unassignment handled
before the assignment it undoes, still leaves Meta as our database says. An advisory lock per
account is held across the Meta call (see `apply_account_user`) so that concurrent changes reach
Meta in the order they committed; no row is locked, so RPCs and the sync never wait for Meta.

NOTE - a simplification a real deployment must replace: we keep no mapping from our users to Meta
business users. The Meta business user id used here is derived from OUR user id
(`meta_business_user_id`: the UUID as a decimal number, since Graph takes digits only). A real
deployment stores each user's Meta business user id (invited to the business, or a system user)
and uses that instead.
"""

import uuid
from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

import structlog

from server.accounts.models import AccountUserTask
from server.accounts.repository import AccountRepository
from server.business_managers.meta_steps import FailureKind, MetaStepFailure, MetaSteps
from server.business_managers.repository import IBusinessManagerRepository
from server.clients.meta.models import MetaAccountTask
from server.tenancy import SYSTEM
from server.units import UnitOfWorkFactory

logger = structlog.get_logger("adplane.accounts.tasks")

_META_TASKS: dict[AccountUserTask, MetaAccountTask] = {
    AccountUserTask.MANAGE: "MANAGE",
    AccountUserTask.ADVERTISE: "ADVERTISE",
    AccountUserTask.ANALYZE: "ANALYZE",
}


class AccountUserOutcome(StrEnum):
    ASSIGNED = "assigned"  # Meta now gives the user the tasks they have here
    UNASSIGNED = "unassigned"  # Meta no longer gives the user access
    SKIPPED = "skipped"  # nothing to do, or nothing that can be done (logged)
    FAILED = "failed"  # Meta refused or kept failing (logged)


def account_lock_key(account_id: uuid.UUID) -> str:
    """The advisory lock that serialises the Meta-side access changes of one account."""
    return f"account:{account_id}"


def meta_business_user_id(user_id: uuid.UUID) -> str:
    """The Meta business user id of one of our users.

    SIMPLIFICATION: there is no user mapping, so this is our own user id, written as the decimal
    number of the UUID (Graph ids are digits). A real deployment maps each user to their Meta
    business user and looks the id up instead.
    """
    return str(user_id.int)


class AccountTaskUnit(Protocol):
    """What the access tasks use of a unit of work."""

    @property
    def account_repository(self) -> AccountRepository: ...
    @property
    def business_manager_repository(self) -> IBusinessManagerRepository: ...


async def apply_account_move(
    units: UnitOfWorkFactory[AccountTaskUnit],
    steps: MetaSteps,
    *,
    account_id: uuid.UUID,
    unassigned_user_ids: Sequence[uuid.UUID],
) -> dict[str, str]:
    """`account.moved`: take away on Meta the access the move removed here; the outcome per user.
    (The pixel shares it removed are taken away by `pixel.unshared` tasks, one per pixel, which the
    pixels module queued.)"""
    outcomes: dict[str, str] = {}
    for user_id in unassigned_user_ids:
        outcome = await apply_account_user(units, steps, account_id=account_id, user_id=user_id)
        outcomes[f"user:{user_id}"] = outcome.value
    return outcomes


async def apply_account_user(
    units: UnitOfWorkFactory[AccountTaskUnit], steps: MetaSteps, *, account_id: uuid.UUID, user_id: uuid.UUID
) -> AccountUserOutcome:
    """Give the user on Meta the tasks they have on the account here, or take access away if they
    have none. Transient Meta errors are retried; a rejected token flags the business manager."""
    log = logger.bind(account_id=str(account_id), user_id=str(user_id))
    meta = steps.meta

    async def attempt() -> AccountUserOutcome:
        async with units() as uow:
            # Held across the Meta call, and taken before anything is read: the tasks of one
            # account run one at a time, each reading the access as it is once it holds the lock.
            # A change committed after that read sends its own message, whose task waits here and
            # then brings Meta up to date; so an older state never reaches Meta after a newer one.
            # An advisory lock rather than the account's row lock: the RPCs that change access (and
            # the sync, and everything else that writes the account) never wait for Meta. Only
            # another access task of the same account waits, for at most one Meta call.
            accounts = uow.account_repository
            await accounts.lock_for_meta(account_lock_key(account_id))
            account = await accounts.get(account_id, scope=SYSTEM)
            if account is None or account.meta_account_id is None:
                log.info("account not on Meta (yet); nothing to do")
                return AccountUserOutcome.SKIPPED
            meta_account_id = account.meta_account_id
            business_manager = await uow.business_manager_repository.get(account.business_manager_id)
            if business_manager is None:  # pragma: no cover - a foreign key
                return AccountUserOutcome.SKIPPED
            credentials = steps.credentials(business_manager)
            access = await accounts.get_user(account_id, user_id)
            meta_user_id = meta_business_user_id(user_id)
            if access is None:
                await steps.call(
                    credentials,
                    lambda token: meta.unassign_user(meta_account_id, user_id=meta_user_id, token=token),
                )
                return AccountUserOutcome.UNASSIGNED
            tasks = [_META_TASKS[AccountUserTask(task)] for task in access.tasks]
            await steps.call(
                credentials,
                lambda token: meta.assign_user(meta_account_id, user_id=meta_user_id, tasks=tasks, token=token),
            )
            return AccountUserOutcome.ASSIGNED

    outcome = await steps.run(attempt, what=f"account {account_id} access")
    if isinstance(outcome, MetaStepFailure):
        if outcome.kind is FailureKind.UNUSABLE:
            log.warning("cannot change access on Meta", reason=outcome.reason)
            return AccountUserOutcome.SKIPPED
        log.error("could not change access on Meta", reason=outcome.reason)
        return AccountUserOutcome.FAILED
    log.info("access applied on Meta", outcome=outcome.value)
    return outcome
