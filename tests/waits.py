"""Waiting for a condition with a deadline: what tests do instead of sleeping a fixed time.

A test that sleeps and then asserts is slow when the condition comes early and flaky when it comes
late; one that asserts "nothing happened" after a sleep passes when the work never even ran. So a
test waits for the condition it needs, and asserts that something did *not* happen only once a
positive signal shows the work was considered (a lock waiter, a log line, a later message done).
"""

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import text

from server.composition import Infrastructure

# How often a condition is looked at: often enough that a wait ends soon after the condition holds.
EVERY_SECONDS = 0.02


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    *,
    within: float,
    what: str,
    every: float = EVERY_SECONDS,
    detail: Callable[[], str] | None = None,
) -> None:
    """Until `check()` is true (a plain or an async callable); fails naming `what` after `within` s.

    `detail` adds what helps to understand a failure (a process's log, say)."""
    deadline = time.monotonic() + within
    while True:
        holds = check()
        if inspect.isawaitable(holds):
            holds = await holds
        if holds:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {within:g} s" + (f"\n{detail()}" if detail else ""))
        await asyncio.sleep(every)


def wait_until(
    check: Callable[[], bool],
    *,
    within: float,
    what: str,
    every: float = EVERY_SECONDS,
    detail: Callable[[], str] | None = None,
) -> None:
    """`eventually` for code without an event loop (subprocesses, threads)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {within:g} s" + (f"\n{detail()}" if detail else ""))
        time.sleep(every)


_LOCK_WAITERS = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def lock_waiters(infrastructure: Infrastructure) -> int:
    """How many sessions of the test database wait for a lock (row, table or advisory) right now."""
    async with infrastructure.engine.connect() as connection:
        return int(await connection.scalar(_LOCK_WAITERS) or 0)


async def blocked_on_a_lock(infrastructure: Infrastructure, count: int = 1, *, within: float = 10) -> None:
    """Until `count` sessions of the test database wait for a lock: the positive signal that a
    transaction started concurrently is held back by another one (not merely slow to start)."""

    async def blocked() -> bool:
        return await lock_waiters(infrastructure) >= count

    await eventually(blocked, within=within, what=f"{count} session(s) waiting for a lock")
