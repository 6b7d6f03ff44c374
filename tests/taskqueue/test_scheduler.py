"""The scheduler keeps a due run through a Redis outage and sends it when Redis returns."""

import asyncio
from pathlib import Path

from redis.asyncio import Redis
from taskiq.schedule_sources import LabelScheduleSource

from devstack.embedded import start_redis
from server.background.registry import register_tasks
from server.background.scheduler import PersistentScheduler
from server.config import Settings
from server.taskqueue.broker import QUEUE, create_broker


async def test_a_run_due_while_redis_is_down_is_sent_once_redis_is_back(settings: Settings, tmp_path: Path) -> None:
    redis = start_redis(tmp_path / "redis", ephemeral=True)
    try:
        own = settings.model_copy(update={"redis_url": redis.url})
        broker = create_broker(own)
        register_tasks(broker, own)
        source = LabelScheduleSource(broker)
        await source.startup()
        [due, *_] = await source.get_schedules()
        scheduler = PersistentScheduler(broker=broker, sources=[source])
        await broker.startup()
        redis.stop()

        sending = asyncio.create_task(scheduler.on_ready(source, due))
        await asyncio.sleep(1.5)
        assert not sending.done(), sending.exception() if sending.done() else None
        redis.start()
        await asyncio.wait_for(sending, timeout=10)

        async with Redis.from_url(redis.url) as client:
            assert await client.xlen(QUEUE) == 1
        await broker.shutdown()
    finally:
        redis.stop()
