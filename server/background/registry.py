"""Every task of the platform: its name, what triggers it (outbox topics or a schedule), and how the
worker runs it.

The work itself lives in the module that owns it, as plain functions over a unit-of-work factory and
the Meta toolkit (`server.accounts.sync`, `server.requests.work`, ...); here each becomes a taskiq task
that takes its dependencies from the worker's resources (`server.background.resources`), so only this
package, at the edge, knows how a worker process is put together. Event tasks take the outbox
message's payload; scheduled tasks take nothing.
"""

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

from taskiq import AsyncBroker, Context, TaskiqDepends

from server.accounts import alerts
from server.accounts import sync as account_sync
from server.accounts import tasks as account_tasks
from server.audit_logs.partitions import rotate_partitions
from server.background.resources import WorkerResources, worker_resources
from server.business_managers import sync as business_manager_sync
from server.config import Environment, Settings
from server.exports.retention import expire_exports
from server.exports.tasks import SpendExportIncomplete, run_daily_spend_export
from server.idempotency.retention import delete_expired_keys
from server.outbox.relay import UnroutableMessage
from server.outbox.retention import delete_published
from server.pixels import sync as pixel_sync
from server.pixels import tasks as pixel_tasks
from server.requests import tasks as request_tasks
from server.requests.events import REQUEST_CHANGED_TOPIC, RequestEventPublisher
from server.signin.retention import delete_spent_tokens
from server.taskqueue.broker import QUEUE
from server.taskqueue.trim import trim_acknowledged

type Payload = Mapping[str, Any]
type EventWork = Callable[[WorkerResources, Payload], Awaitable[Any]]
type ScheduledWork = Callable[[WorkerResources], Awaitable[Any]]


def on_event(work: EventWork) -> Callable[..., Awaitable[Any]]:
    """A task run by outbox messages: `work(resources, payload)`."""

    async def task(payload: dict[str, Any], context: Annotated[Context, TaskiqDepends()]) -> Any:
        return await work(worker_resources(context), payload)

    return task


def scheduled(work: ScheduledWork) -> Callable[..., Awaitable[Any]]:
    """A task run on a schedule: `work(resources)`."""

    async def task(context: Annotated[Context, TaskiqDepends()]) -> Any:
        return await work(worker_resources(context))

    return task


@dataclass(frozen=True)
class TaskSpec:
    name: str
    function: Callable[..., Awaitable[Any]]
    # Outbox topics whose messages run this task.
    topics: tuple[str, ...] = ()
    # The setting holding its cron schedule, for periodic tasks.
    schedule: Callable[[Settings], str] | None = None
    labels: dict[str, Any] = field(default_factory=dict)


# -- event tasks ----------------------------------------------------------------------------------


async def carry_out_request(resources: WorkerResources, payload: Payload) -> str | None:
    """`request.approved`: do the approved work on Meta and complete (or fail) the request; the
    status it ended in (the task result, for operators)."""
    status = await resources.request_work().carry_out(uuid.UUID(payload["request_id"]))
    return status.value if status is not None else None


async def apply_account_user_change(resources: WorkerResources, payload: Payload) -> str:
    """`account_user.assigned` / `account_user.unassigned`: make Meta match the user's access."""
    outcome = await account_tasks.apply_account_user(
        resources.infrastructure.unit_of_work,
        resources.steps(),
        account_id=uuid.UUID(payload["account_id"]),
        user_id=uuid.UUID(payload["user_id"]),
    )
    return outcome.value


async def apply_account_move(resources: WorkerResources, payload: Payload) -> dict[str, str]:
    return await account_tasks.apply_account_move(
        resources.infrastructure.unit_of_work,
        resources.steps(),
        account_id=uuid.UUID(payload["account_id"]),
        unassigned_user_ids=[uuid.UUID(user_id) for user_id in payload.get("unassigned_user_ids", [])],
    )


async def apply_pixel_unshare(resources: WorkerResources, payload: Payload) -> str:
    """`pixel.unshared`: stop sharing the pixel with the ad account on Meta's side."""
    outcome = await pixel_tasks.apply_pixel_unshare(
        resources.infrastructure.unit_of_work,
        resources.steps(),
        pixel_id=uuid.UUID(payload["pixel_id"]),
        account_id=uuid.UUID(payload["account_id"]),
    )
    return outcome.value


async def notify_spend_cap_alert(_resources: WorkerResources, payload: Payload) -> None:
    await alerts.notify_spend_cap_alert(payload)


# -- scheduled tasks ------------------------------------------------------------------------------


async def expire_stale_requests(resources: WorkerResources) -> int:
    return await request_tasks.expire_stale(resources.infrastructure.unit_of_work)


async def requeue_stalled_requests(resources: WorkerResources) -> int:
    stalled_after = dt.timedelta(seconds=resources.settings.requeue_stalled_after_seconds)
    return await request_tasks.requeue_stalled(resources.infrastructure.unit_of_work, stalled_after=stalled_after)


async def sync_accounts(resources: WorkerResources) -> dict[str, Any]:
    summary = await account_sync.sync_accounts(
        resources.infrastructure.unit_of_work, resources.steps(), concurrency=resources.settings.meta_max_concurrency
    )
    return asdict(summary)


async def send_spend_cap_alerts(resources: WorkerResources) -> dict[str, int]:
    return {"alerts": len(await account_sync.send_spend_cap_alerts(resources.infrastructure.unit_of_work))}


async def sync_pixels(resources: WorkerResources) -> dict[str, Any]:
    summary = await pixel_sync.sync_pixels(
        resources.infrastructure.unit_of_work, resources.steps(), concurrency=resources.settings.meta_max_concurrency
    )
    return asdict(summary)


async def sync_business_managers(resources: WorkerResources) -> dict[str, Any]:
    summary = await business_manager_sync.sync_business_managers(
        resources.infrastructure.unit_of_work, resources.steps(), concurrency=resources.settings.meta_max_concurrency
    )
    return asdict(summary)


async def export_daily_spend(resources: WorkerResources) -> dict[str, Any]:
    """Today's (UTC) spend export of every workspace. Fails, after exporting every workspace it
    could, when some uploads failed, so the run shows as failed; rerunning it is safe."""
    summary = await run_daily_spend_export(
        resources.infrastructure.unit_of_work,
        day=dt.datetime.now(dt.UTC).date(),
        # moto starts empty in development; production buckets are provisioned.
        create_bucket=resources.settings.environment is not Environment.PRODUCTION,
    )
    if summary.failed:
        raise SpendExportIncomplete(summary)
    return {"export_date": summary.export_date.isoformat(), "workspaces": summary.workspaces, "rows": summary.rows}


# -- retention (README "Data retention") ----------------------------------------------------------


async def delete_published_outbox_messages(resources: WorkerResources) -> int:
    settings = resources.settings
    return await delete_published(
        resources.infrastructure.unit_of_work,
        keep=dt.timedelta(hours=settings.outbox_retention_hours),
        batch_size=settings.retention_batch_size,
    )


async def delete_expired_idempotency_keys(resources: WorkerResources) -> int:
    settings = resources.settings
    return await delete_expired_keys(
        resources.infrastructure.unit_of_work,
        keep=dt.timedelta(hours=settings.idempotency_key_retention_hours),
        batch_size=settings.retention_batch_size,
    )


async def delete_spent_refresh_tokens(resources: WorkerResources) -> int:
    settings = resources.settings
    return await delete_spent_tokens(
        resources.infrastructure.unit_of_work,
        grace=dt.timedelta(hours=settings.refresh_token_retention_grace_hours),
        access_token_ttl=dt.timedelta(seconds=settings.access_token_ttl_seconds),
        batch_size=settings.retention_batch_size,
    )


async def delete_expired_exports(resources: WorkerResources) -> dict[str, Any]:
    expiry = await expire_exports(
        resources.infrastructure.unit_of_work, batch_size=resources.settings.retention_batch_size
    )
    return asdict(expiry)


async def rotate_audit_log(resources: WorkerResources) -> dict[str, Any]:
    """The audit log's next monthly partitions, and old ones dropped when AUDIT_LOG_RETENTION_MONTHS is set."""
    settings = resources.settings
    rotation = await rotate_partitions(
        resources.infrastructure.unit_of_work,
        keep_months=settings.audit_log_retention_months,
        ahead=settings.audit_log_partitions_ahead,
    )
    return asdict(rotation)


async def trim_task_stream(resources: WorkerResources) -> int:
    """What acknowledgements left in the task stream (`server.taskqueue.trim`)."""
    redis = resources.infrastructure.redis
    return 0 if redis is None else await trim_acknowledged(redis, QUEUE)


TASKS = [
    TaskSpec("requests.carry_out", on_event(carry_out_request), topics=("request.approved",)),
    TaskSpec("requests.expire_stale", scheduled(expire_stale_requests), schedule=lambda s: s.expire_requests_cron),
    TaskSpec(
        "accounts.apply_user_change",
        on_event(apply_account_user_change),
        topics=("account_user.assigned", "account_user.unassigned"),
    ),
    TaskSpec("accounts.sync", scheduled(sync_accounts), schedule=lambda s: s.sync_accounts_cron),
    TaskSpec("accounts.spend_cap_alerts", scheduled(send_spend_cap_alerts), schedule=lambda s: s.spend_cap_alerts_cron),
    TaskSpec("accounts.apply_move", on_event(apply_account_move), topics=("account.moved",)),
    TaskSpec("accounts.notify_spend_cap_alert", on_event(notify_spend_cap_alert), topics=("account.spend_cap_alert",)),
    TaskSpec(
        "requests.requeue_stalled", scheduled(requeue_stalled_requests), schedule=lambda s: s.requeue_stalled_cron
    ),
    TaskSpec("pixels.apply_unshare", on_event(apply_pixel_unshare), topics=("pixel.unshared",)),
    TaskSpec("pixels.sync", scheduled(sync_pixels), schedule=lambda s: s.sync_pixels_cron),
    TaskSpec(
        "business_managers.sync",
        scheduled(sync_business_managers),
        schedule=lambda s: s.sync_business_managers_cron,
    ),
    TaskSpec("exports.daily_spend", scheduled(export_daily_spend), schedule=lambda s: s.spend_export_cron),
    TaskSpec(
        "outbox.delete_published",
        scheduled(delete_published_outbox_messages),
        schedule=lambda s: s.retention_cron,
    ),
    TaskSpec(
        "idempotency.delete_expired",
        scheduled(delete_expired_idempotency_keys),
        schedule=lambda s: s.retention_cron,
    ),
    TaskSpec("signin.delete_spent_tokens", scheduled(delete_spent_refresh_tokens), schedule=lambda s: s.retention_cron),
    TaskSpec("taskqueue.trim_stream", scheduled(trim_task_stream), schedule=lambda s: s.retention_cron),
    TaskSpec("exports.delete_expired", scheduled(delete_expired_exports), schedule=lambda s: s.retention_cron),
    TaskSpec("audit_logs.rotate", scheduled(rotate_audit_log), schedule=lambda s: s.audit_log_rotate_cron),
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

    `labels` travel with the task message (the trace context and request id, `server.taskqueue.tracing`)."""
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


def event_streams(publisher: RequestEventPublisher | None) -> dict[str, Callable[[dict[str, Any]], Awaitable[None]]]:
    """Outbox topics that are events for watchers, each with what appends it to its stream."""
    return {} if publisher is None else {REQUEST_CHANGED_TOPIC: publisher.publish}
