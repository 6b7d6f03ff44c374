"""The scheduler keeps a due run through a Redis outage and sends it when Redis returns."""

import asyncio
from pathlib import Path

from redis.asyncio import Redis
from taskiq import ScheduledTask
from taskiq.schedule_sources import LabelScheduleSource

from devstack.embedded import start_redis
from server.background.registry import register_tasks
from server.background.scheduler import PersistentScheduler
from server.config import Settings
from server.taskqueue.broker import QUEUE, create_broker
from tests.waits import eventually


class CountingSource(LabelScheduleSource):
    """The schedules of the tasks' labels, counting the attempts to send a run (taskiq calls
    `pre_send` before each)."""

    sends = 0

    def pre_send(self, task: ScheduledTask) -> None:
        self.sends += 1
        super().pre_send(task)


async def test_a_run_due_while_redis_is_down_is_sent_once_redis_is_back(settings: Settings, tmp_path: Path) -> None:
    redis = start_redis(tmp_path / "redis", ephemeral=True)
    try:
        own = settings.model_copy(update={"redis_url": redis.url})
        broker = create_broker(own)
        register_tasks(broker, own)
        source = CountingSource(broker)
        await source.startup()
        [due, *_] = await source.get_schedules()
        scheduler = PersistentScheduler(broker=broker, sources=[source])
        await broker.startup()
        redis.stop()

        sending = asyncio.create_task(scheduler.on_ready(source, due))
        # Two attempts: the first send was refused and the scheduler kept the run to try again.
        await eventually(lambda: source.sends >= 2 or sending.done(), within=10, what="a second attempt to send")
        assert not sending.done(), sending.exception() if sending.done() else None
        redis.start()
        await asyncio.wait_for(sending, timeout=10)

        async with Redis.from_url(redis.url) as client:
            assert await client.xlen(QUEUE) == 1
        await broker.shutdown()
    finally:
        redis.stop()
