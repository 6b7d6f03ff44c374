"""The taskiq broker: Redis streams with acknowledgement after execution and redelivery, and a stream
that holds only what is waiting or held (a message is deleted when acknowledged: `server.taskqueue.trim`)."""

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import cast

import structlog
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from taskiq import AckableMessage, AsyncBroker
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from server.config import Settings
from server.redis_client import connection_options, connection_pool

logger = structlog.get_logger("adplane.broker")

QUEUE = "adplane:tasks"
# (message id, fields) as redis-py returns stream entries.
type _StreamEntry = tuple[str, dict[bytes, bytes]]
CONSUMER_GROUP = "adplane-workers"
# How often a worker looks for Redis again while it is down.
REDIS_WAIT_SECONDS = 0.5


class ReclaimingRedisStreamBroker(RedisStreamBroker):
    """RedisStreamBroker that also reclaims abandoned messages while the stream is quiet.

    taskiq-redis only runs XAUTOCLAIM after a read that returned new messages, so a message taken
    by a worker that died would wait for unrelated traffic. Here every read cycle reclaims.

    `listen` replaces taskiq-redis' own and reads the settings RedisStreamBroker keeps as attributes
    (INHERITED_ATTRIBUTES); consumer groups and acknowledgements are plain redis-py calls here, not
    taskiq-redis' private helpers. pyproject.toml keeps taskiq-redis below its next minor and
    tests/taskqueue/test_broker.py fails when those attributes change.
    """

    INHERITED_ATTRIBUTES = (
        "connection_pool",
        "queue_name",
        "consumer_group_name",
        "consumer_name",
        "consumer_id",
        "block",
        "count",
        "idle_timeout",
        "unacknowledged_batch_size",
    )

    async def listen(self) -> AsyncGenerator[AckableMessage]:
        async with Redis(connection_pool=self.connection_pool) as redis:
            while True:
                try:
                    fetched = await redis.xreadgroup(
                        self.consumer_group_name,
                        self.consumer_name,
                        {self.queue_name: ">"},
                        block=self.block,
                        noack=False,
                        count=self.count,
                    )
                except redis_errors.ResponseError as error:
                    # A Redis that restarted without its data lost the stream and the group.
                    if "NOGROUP" not in str(error):
                        raise
                    await self._create_group(redis)
                    continue
                except (redis_errors.ConnectionError, redis_errors.TimeoutError):
                    await _wait_for_redis()
                    continue
                for _stream, messages in cast(list[tuple[bytes, list[_StreamEntry]]], fetched or []):
                    for message_id, message in messages:
                        yield AckableMessage(data=message[b"data"], ack=self._ack(message_id))
                try:
                    reclaimed = await redis.xautoclaim(
                        name=self.queue_name,
                        groupname=self.consumer_group_name,
                        consumername=self.consumer_name,
                        min_idle_time=self.idle_timeout,
                        count=self.unacknowledged_batch_size,
                    )
                except (redis_errors.ConnectionError, redis_errors.TimeoutError):
                    await _wait_for_redis()
                    continue
                for claimed_id, claimed in cast(list[tuple[str | None, dict[bytes, bytes] | None]], reclaimed[1]):
                    if claimed_id is None or not claimed:
                        # Deleted while pending, which this broker never does (Redis 6.2 lists such
                        # an entry as nil; 7 leaves it out): nothing to run.
                        continue
                    yield AckableMessage(data=claimed[b"data"], ack=self._ack(claimed_id))

    async def _create_group(self, redis: Redis) -> None:
        try:
            await redis.xgroup_create(self.queue_name, self.consumer_group_name, id=self.consumer_id, mkstream=True)
        except redis_errors.ResponseError as error:
            if "BUSYGROUP" not in str(error):  # another worker created it first
                raise

    def _ack(self, message_id: str) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            async with Redis(connection_pool=self.connection_pool) as redis, redis.pipeline(transaction=True) as both:
                # One consumer group: acknowledged, the message is needed by no one.
                await both.xack(self.queue_name, self.consumer_group_name, message_id)
                await both.xdel(self.queue_name, message_id)
                await both.execute()

        return ack


async def _wait_for_redis() -> None:
    # Redis is away: wait for it instead of spinning (taskiq restarts listen at once). The log
    # writes this once a minute with a count, not once a second.
    logger.warning("redis unreachable; waiting", exc_info=True)
    await asyncio.sleep(REDIS_WAIT_SECONDS)


async def start_broker(broker: AsyncBroker) -> None:
    """Connect to Redis, waiting for it when it is down (workers and the scheduler outlive Redis)."""
    delay = REDIS_WAIT_SECONDS
    while True:
        try:
            await broker.startup()
            return
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError):
            logger.warning("redis unreachable at start; waiting", retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def create_broker(settings: Settings) -> AsyncBroker:
    """The broker and its result backend, on the pools of `server.redis_client` (through Sentinel
    when configured). taskiq-redis' own Sentinel classes are not used: its stream broker has no
    reclaiming of abandoned messages (see ReclaimingRedisStreamBroker); both classes here take
    redis-py pools, so they get the Sentinel-managed ones instead of those they build from a URL."""
    if not settings.redis_configured:
        raise RuntimeError("REDIS_URL is not set (make run starts an embedded Redis for you)")
    # taskiq-redis builds a pool from this URL (nothing connects yet); it is replaced below.
    url = settings.redis_url or "redis://"
    broker = ReclaimingRedisStreamBroker(
        url=url,
        queue_name=QUEUE,
        consumer_group_name=CONSUMER_GROUP,
        # "0": a consumer group created after messages were queued still delivers them.
        consumer_id="0",
        idle_timeout=int(settings.task_redelivery_seconds * 1000),
        xread_block=1000,
        **connection_options(),
    )
    results: RedisAsyncResultBackend[object] = RedisAsyncResultBackend(
        url, result_ex_time=settings.task_result_ttl_seconds, **connection_options()
    )
    broker.connection_pool = connection_pool(settings)  # type: ignore[assignment]
    results.redis_pool = connection_pool(settings)  # type: ignore[assignment]
    return broker.with_result_backend(results)
