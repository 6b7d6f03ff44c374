"""The shared token buckets (server/interceptors/rate_limit.py) against a real Redis: a caller over its
limit is refused while another is served, two processes' buckets together hold the limit, and leases
spare Redis a round trip per call."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from server.auth.principal import Principal, PrincipalKind, set_current_principal
from server.config import Settings
from server.interceptors.pipeline import Context, Method
from server.interceptors.rate_limit import Limit, RateLimit, RateLimitedException, SharedBuckets
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


# The step never reads the context.
NO_CONTEXT = cast(Context, None)
STREAM_METHOD = Method(name="/adplane.v1.RequestService/WatchRequests", response_streaming=True)
READ_METHOD = Method(name="/adplane.v1.AccountService/GetAccount", response_streaming=False)
HEALTH_METHOD = Method(name="/grpc.health.v1.Health/Check", response_streaming=False)


def limit_step(redis: Redis, per_second: float = 0.01, burst: int = 2) -> RateLimit:
    limits = {method_class: Limit(per_second=per_second, burst=burst) for method_class in MethodClass}
    classes = {STREAM_METHOD.name: MethodClass.STREAM, READ_METHOD.name: MethodClass.READ}
    return RateLimit(SharedBuckets(redis), limits, classes)


async def test_the_step_refuses_a_caller_over_its_limit_with_a_retry_delay(redis: Redis) -> None:
    async def read(request: Any, context: Any) -> str:
        return "read"

    async def messages(request: Any, context: Any) -> AsyncIterator[str]:
        yield "snapshot"

    step = limit_step(redis)
    unary, stream = step.unary(READ_METHOD, read), step.server_stream(STREAM_METHOD, messages)
    set_current_principal(Principal(kind=PrincipalKind.API_KEY, id=uuid.uuid4()))
    try:
        assert [await unary(None, NO_CONTEXT) for _ in range(2)] == ["read", "read"]
        with pytest.raises(RateLimitedException) as refused:
            await unary(None, NO_CONTEXT)
        assert refused.value.method_class is MethodClass.READ
        assert refused.value.retry_after is not None
        assert refused.value.retry_after.total_seconds() > 0
        # A stream takes a token when it opens, from a bucket of its own; its messages take none.
        for _ in range(2):
            assert [message async for message in stream(None, NO_CONTEXT)] == ["snapshot"]
        with pytest.raises(RateLimitedException):
            _ = [message async for message in stream(None, NO_CONTEXT)]
        # An anonymous call (a public RPC) is not counted.
        set_current_principal(None)
        assert await unary(None, NO_CONTEXT) == "read"
    finally:
        set_current_principal(None)
    # Health checks pass untouched, and a class whose rate is 0 is not limited.
    assert step.unary(HEALTH_METHOD, read) is read
    assert limit_step(redis, per_second=0).unary(READ_METHOD, read) is read
    # Nor is anything on a server without Redis.
    assert RateLimit(SharedBuckets(None), {}, {}).unary(READ_METHOD, read) is read
