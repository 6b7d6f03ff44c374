"""`adplane scheduler`: sends the periodic tasks on their schedules. Run as many as you like.

Every scheduler evaluates the schedules; the one holding the lease in Redis sends each due run,
once (`server.background.lease`: a lease with a fencing token, and each run's identity claimed
atomically with the token check). Another takes over within 4/3 of SCHEDULER_LEASE_SECONDS when the
holder dies.
"""

import asyncio
import datetime as dt
import signal

import structlog
from taskiq import AsyncBroker, ScheduledTask, ScheduleSource, TaskiqScheduler
from taskiq.api import run_scheduler_task
from taskiq.schedule_sources import LabelScheduleSource

from server import event_loop
from server.background.lease import SchedulerLease, run_identity
from server.background.registry import register_tasks
from server.config import Settings
from server.log import configure_logging
from server.metrics import SCHEDULED_RUNS, serve_metrics
from server.outages import is_outage
from server.redis_client import connect_redis
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

    def __init__(
        self, broker: AsyncBroker, sources: list[ScheduleSource], *, lease: SchedulerLease | None = None
    ) -> None:
        super().__init__(broker=broker, sources=sources)
        # None: this scheduler sends every due run (one scheduler alone, tests).
        self.lease = lease

    async def on_ready(self, source: ScheduleSource, task: ScheduledTask) -> None:
        if self.lease is not None:
            run = run_identity(task.schedule_id, dt.datetime.now(dt.UTC))
            token = await self.lease.claim(run)
            if token is None:
                return
            task = task.model_copy(update={"labels": {**task.labels, "scheduled_run": run, "scheduler_fence": token}})
            logger.info("scheduled run claimed", run=run, token=token)
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
    redis = connect_redis(settings)
    lease = SchedulerLease(redis, lease_seconds=settings.scheduler_lease_seconds)
    scheduler = PersistentScheduler(broker=broker, sources=[LabelScheduleSource(broker)], lease=lease)
    serve_metrics(settings.scheduler_metrics_port, host=settings.metrics_host)
    await start_broker(broker)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    holding = asyncio.create_task(lease.keep(stop))
    running = asyncio.create_task(run_scheduler_task(scheduler))
    beating = asyncio.create_task(beat("scheduler", stop))
    logger.info("scheduler started", scheduler_id=lease.scheduler_id)
    await stop.wait()
    running.cancel()
    await asyncio.gather(running, beating, holding, return_exceptions=True)
    await broker.shutdown()
    await redis.aclose()
    logger.info("scheduler stopped")


def run(settings: Settings) -> int:
    configure_logging(settings)
    event_loop.run(schedule(settings), settings)
    return 0
