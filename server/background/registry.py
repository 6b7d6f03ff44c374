"""Every task of the platform: its name, what triggers it (outbox topics or a schedule), its code.

Event tasks take the outbox message's payload (`payload: dict[str, Any]`); scheduled tasks take
nothing. Both get the worker's resources through `server.tasks.resources.worker_resources`.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from taskiq import AsyncBroker

from server.accounts import alerts
from server.accounts import sync as account_sync
from server.accounts import tasks as account_tasks
from server.business_managers import tasks as business_manager_tasks
from server.composition import Infrastructure
from server.config import Settings
from server.exports import tasks as export_tasks
from server.outbox.relay import UnroutableMessage
from server.pixels import sync as pixel_sync
from server.pixels import tasks as pixel_tasks
from server.requests import tasks as request_tasks
from server.requests.events import REQUEST_CHANGED_TOPIC


@dataclass(frozen=True)
class TaskSpec:
    name: str
    function: Callable[..., Any]
    # Outbox topics whose messages run this task.
    topics: tuple[str, ...] = ()
    # The setting holding its cron schedule, for periodic tasks.
    schedule: Callable[[Settings], str] | None = None
    labels: dict[str, Any] = field(default_factory=dict)


TASKS = [
    TaskSpec("requests.carry_out", request_tasks.carry_out_request, topics=("request.approved",)),
    TaskSpec("requests.expire_stale", request_tasks.expire_stale_requests, schedule=lambda s: s.expire_requests_cron),
    TaskSpec(
        "accounts.apply_user_change",
        account_tasks.apply_account_user_change,
        topics=("account_user.assigned", "account_user.unassigned"),
    ),
    TaskSpec("accounts.sync", account_sync.sync_accounts_task, schedule=lambda s: s.sync_accounts_cron),
    TaskSpec(
        "accounts.spend_cap_alerts", account_sync.send_spend_cap_alerts_task, schedule=lambda s: s.spend_cap_alerts_cron
    ),
    TaskSpec("accounts.apply_move", account_tasks.apply_account_move, topics=("account.moved",)),
    TaskSpec("accounts.notify_spend_cap_alert", alerts.notify_spend_cap_alert, topics=("account.spend_cap_alert",)),
    TaskSpec(
        "requests.requeue_stalled", request_tasks.requeue_stalled_requests, schedule=lambda s: s.requeue_stalled_cron
    ),
    TaskSpec("pixels.apply_unshare", pixel_tasks.apply_pixel_unshare, topics=("pixel.unshared",)),
    TaskSpec("pixels.sync", pixel_sync.sync_pixels_task, schedule=lambda s: s.sync_pixels_cron),
    TaskSpec(
        "business_managers.sync",
        business_manager_tasks.sync_business_managers,
        schedule=lambda s: s.sync_business_managers_cron,
    ),
    TaskSpec("exports.daily_spend", export_tasks.export_daily_spend, schedule=lambda s: s.spend_export_cron),
]

TOPICS: dict[str, str] = {topic: spec.name for spec in TASKS for topic in spec.topics}


def register_tasks(broker: AsyncBroker, settings: Settings) -> None:
    for spec in TASKS:
        labels = dict(spec.labels)
        if spec.schedule is not None:
            labels["schedule"] = [{"cron": spec.schedule(settings), "schedule_id": spec.name}]
        broker.register_task(spec.function, task_name=spec.name, **labels)


async def publish(
    broker: AsyncBroker,
    topic: str,
    payload: dict[str, Any],
    labels: Mapping[str, str] | None = None,
    *,
    streams: Mapping[str, Callable[[dict[str, Any]], Awaitable[None]]] | None = None,
) -> None:
    """Send an outbox message to the task that handles its topic (used by the outbox relay), or,
    for the topics in `streams` (events for watchers, not work), to their event stream.

    `labels` travel with the task message (the trace context and request id, `server.tasks.tracing`)."""
    stream = (streams or {}).get(topic)
    if stream is not None:
        await stream(payload)
        return
    task_name = TOPICS.get(topic)
    if task_name is None:
        raise UnroutableMessage(f"no task handles the outbox topic {topic!r}")
    task = broker.find_task(task_name)
    if task is None:
        raise UnroutableMessage(f"task {task_name!r} is not registered")
    await task.kicker().with_labels(**(labels or {})).kiq(payload)


# Outbox topics that are events for watchers (appended to their Redis stream), not work for a task.
EVENT_TOPICS = frozenset({REQUEST_CHANGED_TOPIC})


def event_streams(infrastructure: Infrastructure) -> dict[str, Callable[[dict[str, Any]], Awaitable[None]]]:
    """Outbox topics that are events for watchers, each with what appends it to its stream."""
    publisher = infrastructure.request_event_publisher
    return {} if publisher is None else {REQUEST_CHANGED_TOPIC: publisher.publish}
