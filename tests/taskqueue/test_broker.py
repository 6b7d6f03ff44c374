"""The task broker on a real Redis, and the taskiq-redis surface it is built on.

ReclaimingRedisStreamBroker replaces taskiq-redis' `listen` and reads the settings RedisStreamBroker
keeps as attributes. taskiq-redis documents none of them, so pyproject.toml keeps it below its next
minor and these tests fail, naming what changed, when an upgrade renames or drops one. They also run
at the lowest versions pyproject.toml allows (tests/test_dependency_floors.py).
"""

import asyncio
import inspect
import uuid
from collections.abc import AsyncGenerator, AsyncIterator

import pytest
from redis.asyncio import ConnectionPool, Redis
from taskiq import AckableMessage, BrokerMessage
from taskiq_redis import RedisStreamBroker

from server.config import Settings
from server.taskqueue.broker import ReclaimingRedisStreamBroker, create_broker

REDELIVERY_SECONDS = 0.2


def _settings(redis_url: str) -> Settings:
    return Settings(_env_file=None, redis_url=redis_url, task_redelivery_seconds=REDELIVERY_SECONDS)


def test_the_settings_listen_reads_are_where_taskiq_redis_keeps_them(redis_url: str) -> None:
    broker = create_broker(_settings(redis_url))
    assert isinstance(broker, ReclaimingRedisStreamBroker)
    missing = [name for name in ReclaimingRedisStreamBroker.INHERITED_ATTRIBUTES if not hasattr(broker, name)]
    assert not missing, (
        f"taskiq-redis no longer keeps {missing} on RedisStreamBroker: review server/taskqueue/broker.py"
    )
    # The values create_broker passed are the ones listen() will read.
    assert isinstance(broker.connection_pool, ConnectionPool)
    assert (broker.consumer_group_name, broker.consumer_id) == ("adplane-workers", "0")
    assert broker.block == 1000
    assert broker.idle_timeout == int(REDELIVERY_SECONDS * 1000)
    assert isinstance(broker.consumer_name, str)
    assert isinstance(broker.count, int)
    assert isinstance(broker.unacknowledged_batch_size, int)
    # taskiq's receiver iterates listen(); ours must still be what it calls.
    assert inspect.isasyncgenfunction(RedisStreamBroker.listen)
    assert list(inspect.signature(RedisStreamBroker.listen).parameters) == ["self"]


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[str]:
    """A queue name of this test's own, deleted afterwards."""
    name = f"test-broker-{uuid.uuid4().hex[:8]}"
    yield name
    async with Redis.from_url(redis_url) as redis:
        await redis.delete(name)


def _broker(redis_url: str, queue: str) -> ReclaimingRedisStreamBroker:
    broker = create_broker(_settings(redis_url))
    assert isinstance(broker, ReclaimingRedisStreamBroker)
    broker.queue_name = queue
    return broker


async def _kick(broker: ReclaimingRedisStreamBroker, data: bytes) -> None:
    await broker.kick(BrokerMessage(task_id=uuid.uuid4().hex, task_name="t", message=data, labels={}))


async def _next(messages: AsyncGenerator[AckableMessage], *, within: float = 5.0) -> AckableMessage:
    return await asyncio.wait_for(anext(messages), within)


async def _ack(message: AckableMessage) -> None:
    done = message.ack()
    assert done is not None  # the broker's acks are coroutines
    await done


async def test_a_message_is_acknowledged_and_one_left_unacknowledged_is_reclaimed(redis_url: str, queue: str) -> None:
    first, second = _broker(redis_url, queue), _broker(redis_url, queue)
    await first.startup()
    await second.startup()
    try:
        await _kick(first, b"one")
        await _kick(first, b"two")
        taken = first.listen()
        one = await _next(taken)
        two = await _next(taken)
        assert (one.data, two.data) == (b"one", b"two")
        await _ack(one)  # "two" is left as a dead worker would leave it
        await taken.aclose()

        reclaimed = await _next(second.listen())
        assert reclaimed.data == b"two"
        await _ack(reclaimed)
        async with Redis.from_url(redis_url) as redis:
            pending = await redis.xpending(queue, "adplane-workers")
        assert pending["pending"] == 0
    finally:
        await first.shutdown()
        await second.shutdown()


async def test_a_stream_lost_with_its_group_is_created_again(redis_url: str, queue: str) -> None:
    broker = _broker(redis_url, queue)
    await broker.startup()
    try:
        async with Redis.from_url(redis_url) as redis:
            await redis.delete(queue)  # a Redis restarted without its data
        messages = broker.listen()
        reading = asyncio.ensure_future(_next(messages))
        async with Redis.from_url(redis_url) as redis, asyncio.timeout(5):
            while True:  # until listen() has created the stream and its group again
                if await redis.exists(queue):
                    break
                await asyncio.sleep(0.02)
        await _kick(broker, b"after")
        assert (await reading).data == b"after"
        await messages.aclose()
    finally:
        await broker.shutdown()
