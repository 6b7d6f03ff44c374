"""The schedulers' lease (server/background/lease.py) on a real Redis: one holder, fencing tokens
that grow with each holder, and run identities that are claimed once whoever holds the lease."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from server.background.lease import FENCE_KEY, LEASE_KEY, RUN_KEY_PREFIX, SchedulerLease
from tests.waits import eventually


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.delete(LEASE_KEY, FENCE_KEY, *[key async for key in client.scan_iter(match=RUN_KEY_PREFIX + "*")])
    yield client
    await client.aclose()


async def test_one_scheduler_holds_the_lease_and_only_it_claims_a_run(redis: Redis) -> None:
    first = SchedulerLease(redis, lease_seconds=5, scheduler_id="first")
    second = SchedulerLease(redis, lease_seconds=5, scheduler_id="second")
    assert await first.try_hold()
    assert not await second.try_hold()
    assert await first.try_hold(), "the holder extends its own lease"
    assert first.token == "1:first"
    # The scheduler without the lease waits for someone to claim the run, then leaves it.
    waiting = asyncio.create_task(second.claim("accounts.sync@2026-12-07T20:30Z", wait_for_claim=30))
    assert await first.claim("accounts.sync@2026-12-07T20:30Z") == "1:first"
    assert await asyncio.wait_for(waiting, 10) is None
    assert await first.claim("accounts.sync@2026-12-07T20:30Z") is None, "a run identity is claimed once"


async def test_a_stalled_holder_cannot_send_once_another_took_over(redis: Redis) -> None:
    stalled = SchedulerLease(redis, lease_seconds=1, scheduler_id="stalled")
    assert await stalled.try_hold()
    successor = SchedulerLease(redis, lease_seconds=5, scheduler_id="successor")

    async def taken_over() -> bool:
        return await successor.try_hold()

    # The stalled holder's lease expires after a second.
    await eventually(taken_over, within=10, what="the successor taking the lease")
    assert successor.token == "2:successor", "the fencing token grows with each holder"
    # The stalled holder still believes it holds the lease; Redis checks its token and refuses.
    assert stalled.token == "1:stalled"
    assert await stalled.claim("pixels.sync@2026-12-07T21:05Z", wait_for_claim=0) is None
    assert await successor.claim("pixels.sync@2026-12-07T21:05Z") == "2:successor"
    assert not await stalled.try_hold(), "the compare-and-extend does not extend another's lease"
    assert stalled.token is None


async def test_a_released_lease_is_taken_at_once(redis: Redis) -> None:
    leaving = SchedulerLease(redis, lease_seconds=60, scheduler_id="leaving")
    staying = SchedulerLease(redis, lease_seconds=60, scheduler_id="staying")
    assert await leaving.try_hold()
    await leaving.release()
    assert await staying.try_hold()
    await leaving.release()  # no longer its own: nothing happens
    assert await redis.get(LEASE_KEY) == b"2:staying"
