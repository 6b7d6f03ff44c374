"""`adplane scheduler`: sends the periodic tasks on their schedules. Run exactly one.

Two schedulers would send every periodic task twice; the tasks tolerate it, but the work and the
Meta API quota would be spent twice.
"""

import asyncio
import signal

import structlog
from taskiq import TaskiqScheduler
from taskiq.api import run_scheduler_task
from taskiq.schedule_sources import LabelScheduleSource

from server.config import Settings
from server.log import configure_logging
from server.tasks.broker import create_broker
from server.tasks.registry import register_tasks

logger = structlog.get_logger("adplane.scheduler")


async def schedule(settings: Settings) -> None:
    broker = create_broker(settings)
    register_tasks(broker, settings)
    scheduler = TaskiqScheduler(broker=broker, sources=[LabelScheduleSource(broker)])
    await broker.startup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    running = asyncio.create_task(run_scheduler_task(scheduler))
    logger.info("scheduler started")
    await stop.wait()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await broker.shutdown()
    logger.info("scheduler stopped")


def run(settings: Settings) -> int:
    configure_logging(settings)
    asyncio.run(schedule(settings))
    return 0
