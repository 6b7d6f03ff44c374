"""`adplane worker`: runs tasks from the broker and relays the outbox, until SIGTERM/SIGINT."""

import asyncio
import signal
from functools import partial

import structlog
from taskiq.acks import AcknowledgeType
from taskiq.api import run_receiver_task

from server import event_loop
from server.background.registry import event_streams, publish, register_tasks
from server.background.resources import WorkerResources
from server.config import Settings
from server.log import configure_logging
from server.metrics import serve_metrics
from server.outbox.relay import OutboxRelay
from server.taskqueue.broker import create_broker, start_broker
from server.taskqueue.heartbeat import beat
from server.taskqueue.metrics import TaskMetrics
from server.taskqueue.tracing import TaskTracing
from server.tracing import configure_tracing, shutdown_tracing

logger = structlog.get_logger("adplane.worker")


async def work(settings: Settings) -> None:
    broker = create_broker(settings)
    broker.add_middlewares(TaskTracing(), TaskMetrics())
    register_tasks(broker, settings)
    serve_metrics(settings.worker_metrics_port, host=settings.metrics_host)
    resources = WorkerResources.open(settings)
    await start_broker(broker)
    broker.state.resources = resources  # read by tasks through worker_resources()
    relay = OutboxRelay(
        resources.infrastructure.unit_of_work,
        partial(publish, broker, streams=event_streams(resources.infrastructure.request_event_publisher)),
        batch_size=settings.outbox_batch_size,
        poll_seconds=settings.outbox_poll_seconds,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    # Acknowledged only once the task ran: a worker that dies mid-task leaves the message to be
    # redelivered after TASK_REDELIVERY_SECONDS.
    receiver = asyncio.create_task(
        run_receiver_task(broker, max_async_tasks=settings.worker_concurrency, ack_time=AcknowledgeType.WHEN_SAVED)
    )
    relaying = asyncio.create_task(relay.run(stop))
    beating = asyncio.create_task(beat("worker", stop))
    logger.info("worker started", concurrency=settings.worker_concurrency)
    await stop.wait()
    logger.info("worker stopping")
    receiver.cancel()
    await asyncio.gather(receiver, relaying, beating, return_exceptions=True)
    await broker.shutdown()
    await resources.close()
    logger.info("worker stopped")


def run(settings: Settings) -> int:
    configure_logging(settings)
    configure_tracing("worker")
    try:
        event_loop.run(work(settings), settings)
    finally:
        shutdown_tracing()
    return 0
