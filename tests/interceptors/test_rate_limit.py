"""The shared token buckets (server/interceptors/rate_limit.py) against a real Redis: a caller over its
limit is refused while another is served, two processes' buckets together hold the limit, and leases
spare Redis a round trip per call."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from server.config import Settings
from server.interceptors.rate_limit import Limit, SharedBuckets
from server.method_classes import MethodClass
from server.redis_client import connect_redis

READ = MethodClass.READ


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = connect_redis(settings)
    yield client
    await client.aclose()


def caller() -> str:
    return f"api_key:{uuid.uuid4()}"


async def spend(buckets: SharedBuckets, who: str, limit: Limit, calls: int) -> int:
    """How many of `calls` calls were admitted, the way the step calls the buckets."""
    admitted = 0
    for _ in range(calls):
        wait = buckets.try_take(who, READ)
        if wait is None:
            wait = await buckets.take(who, READ, limit)
        admitted += wait == 0
    return admitted


async def test_a_caller_over_its_limit_is_refused_while_another_is_served(redis: Redis) -> None:
    # So slow a refill that none arrives during the test: exactly the burst is admitted.
    limit = Limit(per_second=0.01, burst=5)
    buckets = SharedBuckets(redis)
    greedy, other = caller(), caller()
    assert await spend(buckets, greedy, limit, 8) == 5
    wait = await buckets.take(greedy, READ, limit)
    assert 90 <= wait <= 100  # a token every 100 s
    # Refused locally now, without asking Redis again.
    local = buckets.try_take(greedy, READ)
    assert local is not None
    assert local > 0
    assert await spend(buckets, other, limit, 5) == 5
    # Another class of the same caller has a bucket of its own.
    assert await buckets.take(greedy, MethodClass.WRITE, limit) == 0


async def test_two_processes_together_hold_the_limit(redis: Redis) -> None:
    limit = Limit(per_second=0.01, burst=40)
    first, second = SharedBuckets(redis), SharedBuckets(redis)
    who = caller()
    admitted = await asyncio.gather(spend(first, who, limit, 30), spend(second, who, limit, 30))
    assert sum(admitted) == 40, admitted
    assert min(admitted) > 0


async def test_concurrent_calls_share_one_lease(redis: Redis) -> None:
    limit = Limit(per_second=1000, burst=2000)  # leases of 100
    buckets = SharedBuckets(redis)
    who = caller()
    before = await _script_calls(redis)
    waits = await asyncio.gather(*(buckets.take(who, READ, limit) for _ in range(50)))
    assert set(waits) == {0.0}
    assert await spend(buckets, who, limit, 40) == 40
    # 90 calls from one lease of 100 tokens: one round trip, not one per call.
    assert await _script_calls(redis) - before == 1


async def _script_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(int(value["calls"]) for name, value in stats.items() if name in ("cmdstat_evalsha", "cmdstat_eval"))


async def test_calls_pass_while_redis_is_out_of_reach() -> None:
    unreachable = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    buckets = SharedBuckets(unreachable)
    try:
        assert await spend(buckets, caller(), Limit(per_second=0.01, burst=1), 5) == 5
    finally:
        await unreachable.aclose()
