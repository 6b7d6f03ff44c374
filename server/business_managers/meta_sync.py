"""The shape every periodic sync with Meta shares: business manager by business manager, each with
its own credentials, at most `concurrency` of them talking to Meta at once, no transaction open
while Meta is called, and one rule for counting how each business manager went.

A sync supplies two steps: `read` (Meta's view of the business manager's objects: run under the
concurrency bound, and under the retry policy by the sync itself through `MetaSteps.run`, since
some syncs read in several retried steps) and `write` (what it makes of that view, in a transaction
of its own). A Meta failure ends the work on one business manager; anything else (the database
gone, a bug) cancels the rest and fails the run, which the next schedule repeats.
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import structlog

from server.business_managers.meta_steps import (
    BusinessCredentials,
    FailureKind,
    MetaStepFailure,
    MetaSteps,
    WorkRefused,
)
from server.business_managers.models import BusinessManager

logger = structlog.get_logger("adplane.meta_sync")


@dataclass
class BusinessManagerCounts:
    """How the business managers of one sync run went; every sync counts by this one rule."""

    # Read from Meta, and what was read written.
    synced: int = 0
    # Meta refused the system-user token: the business manager is NEEDS_ATTENTION now (flagged by
    # this run, or by an earlier one, or given a new token meanwhile: counted whichever it was).
    token_refused: int = 0
    # Not usable (no token, or one no configured key decrypts), or Meta kept failing: tried again
    # next run.
    failed: int = 0


async def sync_each[R](
    steps: MetaSteps,
    business_managers: Iterable[BusinessManager],
    *,
    concurrency: int,
    read: Callable[[BusinessCredentials], Awaitable[R | MetaStepFailure]],
    write: Callable[[BusinessCredentials, R], Awaitable[None]],
    what: str,
    done: Callable[[BusinessManager], None] | None = None,
) -> BusinessManagerCounts:
    """Read and write every business manager (`what` names what is read, for the log lines);
    `done(business_manager)` is called after each, however it went. Business managers that are not
    ACTIVE are read too: the business manager sync looks whether a refused token works again."""
    counts = BusinessManagerCounts()
    meta_slots = asyncio.Semaphore(concurrency)

    async def sync(business_manager: BusinessManager) -> None:
        try:
            credentials = steps.credentials(business_manager, require_active=False)
        except WorkRefused:
            counts.failed += 1
            return
        async with meta_slots:
            reported = await read(credentials)
        if isinstance(reported, MetaStepFailure):
            if reported.kind is FailureKind.TOKEN_REFUSED:
                counts.token_refused += 1
                return
            counts.failed += 1
            logger.warning(
                f"reading {what} from Meta failed; tried again next run",
                business_manager_id=str(business_manager.id),
                error=reported.reason,
            )
            return
        await write(credentials, reported)
        counts.synced += 1

    async def sync_and_report(business_manager: BusinessManager) -> None:
        await sync(business_manager)
        if done is not None:
            done(business_manager)

    async with asyncio.TaskGroup() as group:
        for business_manager in business_managers:
            group.create_task(sync_and_report(business_manager))
    return counts
