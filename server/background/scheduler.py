"""`adplane scheduler`: sends the periodic tasks on their schedules. Run exactly one.

Two schedulers would send every periodic task twice; the tasks tolerate it, but the work and the
Meta API quota would be spent twice.
"""

import asyncio
import signal

import structlog
from taskiq import ScheduledTask, ScheduleSource, TaskiqScheduler
from taskiq.api import run_scheduler_task
from taskiq.schedule_sources import LabelScheduleSource

from server import event_loop
from server.background.registry import register_tasks
from server.config import Settings
from server.log import configure_logging
from server.metrics import SCHEDULED_RUNS, serve_metrics
from server.outages import is_outage
from server.taskqueue.broker import create_broker, start_broker
from server.taskqueue.heartbeat import beat

logger = structlog.get_logger("adplane.scheduler")

RESEND_FIRST_DELAY_SECONDS = 0.5
RESEND_MAX_DELAY_SECONDS = 5.0


class PersistentScheduler(TaskiqScheduler):
    """Sends a due run once Redis takes it, instead of dropping it on the first refused send.

    taskiq sends each due run in a task of its own and drops the run if sending fails. Here a send
    that failed because Redis is away is tried again until Redis is back; meanwhile taskiq does
    not start another send of the same schedule, so the runs of one schedule that a long outage
    missed go out as one run when Redis returns. That is enough by design: every periodic task
    works from the current state (sync everything, expire whatever is stale, alert on what is over
    its cap), not from the time it was due.
    """

    async def on_ready(self, source: ScheduleSource, task: ScheduledTask) -> None:
        delay = RESEND_FIRST_DELAY_SECONDS
        while True:
            try:
                await super().on_ready(source, task)
                SCHEDULED_RUNS.labels(task.task_name).inc()
                return
            except Exception as error:
                if not is_outage(error):
                    raise
                logger.warning("scheduled run not sent; redis unreachable", task=task.task_name, exc_info=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESEND_MAX_DELAY_SECONDS)


async def schedule(settings: Settings) -> None:
    broker = create_broker(settings)
    register_tasks(broker, settings)
    scheduler = PersistentScheduler(broker=broker, sources=[LabelScheduleSource(broker)])
    serve_metrics(settings.scheduler_metrics_port, host=settings.metrics_host)
    await start_broker(broker)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    running = asyncio.create_task(run_scheduler_task(scheduler))
    beating = asyncio.create_task(beat("scheduler", stop))
    logger.info("scheduler started")
    await stop.wait()
    running.cancel()
    await asyncio.gather(running, beating, return_exceptions=True)
    await broker.shutdown()
    logger.info("scheduler stopped")


def run(settings: Settings) -> int:
    configure_logging(settings)
    event_loop.run(schedule(settings), settings)
    return 0
