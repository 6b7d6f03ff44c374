"""The task stream holds what is waiting or held, and never loses a message a worker still holds.

A worker deletes a message when it acknowledges it; the scheduled trim (MINID below the oldest pending
message, never past what was delivered) clears what an ack left behind. The counter-example is
taskiq-redis' own `maxlen`: it trims a message a worker holds.
"""

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import cast

import pytest
from redis.asyncio import Redis
from taskiq import AckableMessage, BrokerMessage
from taskiq_redis import RedisStreamBroker

from server.config import Settings
from server.taskqueue.broker import CONSUMER_GROUP, ReclaimingRedisStreamBroker, create_broker
from server.taskqueue.trim import trim_acknowledged

# Long: no message is reclaimed from the paused worker while these tests run.
REDELIVERY_SECONDS = 600


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[str]:
    name = f"test-stream-bound-{uuid.uuid4().hex[:8]}"
    yield name
    async with Redis.from_url(redis_url) as redis:
        await redis.delete(name)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    async with Redis.from_url(redis_url) as client:
        yield client


async def _broker(redis_url: str, queue: str) -> ReclaimingRedisStreamBroker:
    broker = create_broker(Settings(_env_file=None, redis_url=redis_url, task_redelivery_seconds=REDELIVERY_SECONDS))
    assert isinstance(broker, ReclaimingRedisStreamBroker)
    broker.queue_name = queue
    await broker.startup()
    return broker


async def _ids(redis: Redis, queue: str) -> list[bytes]:
    """The ids of the messages in the stream, oldest first."""
    return [entry_id for entry_id, _ in cast(list[tuple[bytes, object]], await redis.xrange(queue))]


async def _kick(broker: RedisStreamBroker, data: bytes) -> None:
    await broker.kick(BrokerMessage(task_id=uuid.uuid4().hex, task_name="t", message=data, labels={}))


async def _take(messages: AsyncGenerator[AckableMessage], count: int) -> list[AckableMessage]:
    return [await asyncio.wait_for(anext(messages), 5) for _ in range(count)]


async def _ack(message: AckableMessage) -> None:
    done = message.ack()
    assert done is not None
    await done


async def test_an_acknowledged_message_leaves_the_stream(redis_url: str, redis: Redis, queue: str) -> None:
    broker = await _broker(redis_url, queue)
    try:
        for n in range(50):
            await _kick(broker, b"%d" % n)
        messages = broker.listen()
        taken = await _take(messages, 50)
        await messages.aclose()
        assert await redis.xlen(queue) == 50  # delivered, held: all still there
        for message in taken:
            await _ack(message)
        assert await redis.xlen(queue) == 0
        assert (await redis.xpending(queue, CONSUMER_GROUP))["pending"] == 0
    finally:
        await broker.shutdown()


async def test_a_worker_paused_mid_task_still_acknowledges_after_the_others_worked_and_the_stream_was_trimmed(
    redis_url: str, redis: Redis, queue: str
) -> None:
    paused, busy = await _broker(redis_url, queue), await _broker(redis_url, queue)
    try:
        await _kick(paused, b"long task")
        held_messages = paused.listen()
        [held] = await _take(held_messages, 1)  # the paused worker is in the middle of it
        [held_id] = await _ids(redis, queue)

        for n in range(200):
            await _kick(busy, b"%d" % n)
        busy_messages = busy.listen()
        for message in await _take(busy_messages, 200):
            await _ack(message)
        await busy_messages.aclose()
        assert await trim_acknowledged(redis, queue) == 0  # nothing below the held message to trim

        # The others' work is gone from the stream; the held message is still there, still pending.
        assert await _ids(redis, queue) == [held_id]
        pending = await redis.xpending(queue, CONSUMER_GROUP)
        assert (pending["pending"], pending["min"]) == (1, held_id)

        await _ack(held)  # the worker resumes and finishes
        await held_messages.aclose()
        assert (await redis.xpending(queue, CONSUMER_GROUP))["pending"] == 0
        assert await redis.xlen(queue) == 0
    finally:
        await paused.shutdown()
        await busy.shutdown()


async def test_the_trim_clears_what_acks_left_but_never_a_held_or_undelivered_message(redis: Redis, queue: str) -> None:
    """Messages acknowledged with XACK alone (as before deletion on ack) are trimmed, below the oldest
    pending message and never past the group's delivery mark."""
    await redis.xgroup_create(queue, CONSUMER_GROUP, id="0", mkstream=True)
    ids = [await redis.xadd(queue, {b"data": b"%d" % n}) for n in range(20)]
    await redis.xreadgroup(CONSUMER_GROUP, "old-worker", {queue: ">"}, count=10)
    held = ids[3]
    for entry_id in ids[:10]:
        if entry_id != held:
            await redis.xack(queue, CONSUMER_GROUP, entry_id)

    assert await trim_acknowledged(redis, queue) == 3  # the three acknowledged below the held one
    assert await _ids(redis, queue) == ids[3:]

    await redis.xack(queue, CONSUMER_GROUP, held)
    assert await trim_acknowledged(redis, queue) == 7  # up to the delivery mark, not one further
    assert await _ids(redis, queue) == ids[10:]
    assert await trim_acknowledged(redis, queue) == 0


async def test_no_stream_or_no_group_trims_nothing(redis: Redis, queue: str) -> None:
    assert await trim_acknowledged(redis, queue) == 0
    await redis.xadd(queue, {b"data": b"waiting"})
    assert await trim_acknowledged(redis, queue) == 0
    assert await redis.xlen(queue) == 1


async def test_taskiq_redis_maxlen_would_trim_a_held_message(redis_url: str, redis: Redis, queue: str) -> None:
    """Why the stream is not bounded with taskiq-redis' `maxlen`: a count knows nothing of who holds
    what, and a held message trimmed away is never redelivered."""
    broker = RedisStreamBroker(
        redis_url, queue_name=queue, consumer_group_name=CONSUMER_GROUP, consumer_id="0", maxlen=10, approximate=False
    )
    await broker.startup()
    try:
        await _kick(broker, b"long task")
        [held_id] = await _ids(redis, queue)
        await redis.xreadgroup(CONSUMER_GROUP, "paused-worker", {queue: ">"}, count=1)
        for n in range(20):
            await _kick(broker, b"%d" % n)
        assert held_id not in await _ids(redis, queue)
        assert (await redis.xpending(queue, CONSUMER_GROUP))["pending"] == 1  # held, but its message is gone
    finally:
        await broker.shutdown()
