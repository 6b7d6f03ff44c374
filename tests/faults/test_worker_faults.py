"""Faults with real worker processes: `adplane worker` subprocesses on a Redis of their own, the
Graph API simulator on loopback, and requests approved through the real services."""

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import cast

import grpc
import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from adplane.v1 import request_pb2
from adplane.v1 import request_service_pb2 as pb
from adplane.v1.request_service_pb2_grpc import RequestServiceStub
from devstack.embedded import EmbeddedRedis, free_port, start_redis
from devstack.meta_simulator import SimulatorServer
from devstack.meta_simulator.control_client import SimulatorControl
from devstack.meta_simulator.faults import FaultKind
from server.audit_logs.models import AuditLog
from server.auth.principal import Principal, PrincipalKind
from server.background.registry import register_tasks
from server.business_managers.models import (
    BusinessManager,
    BusinessManagerStatus,
)
from server.composition import Infrastructure
from server.config import Settings
from server.outbox.models import OutboxMessage
from server.outbox.relay import BACKLOG_COUNT_SECONDS
from server.requests.models import Request, RequestStatus
from server.requests.schemas import AccountCreationPayload
from server.taskqueue.broker import CONSUMER_GROUP, QUEUE, create_broker
from server.taskqueue.heartbeat import HEARTBEAT_SECONDS
from server.taskqueue.trim import trim_acknowledged
from server.workspaces.schemas import WorkspaceCreateRequestSchema
from tests.callers import make_caller
from tests.e2e.conftest import ADPLANE, stack_env, start_server, wait_until
from tests.meta_work import add_business_manager
from tests.scrape import label_values, scrape, total
from tests.taskqueue.test_heartbeat import liveness
from tests.waits import eventually

META_BUSINESS_ID = "900000000000001"
TOKEN = "fault-test-system-user-token-0001"
STAFF = Principal(kind=PrincipalKind.API_KEY, id=uuid.uuid4())


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of these tests' own (with its data on disk), so they can stop and start it."""
    server = start_redis(tmp_path / "redis", ephemeral=False)
    yield server
    server.stop()


@pytest.fixture
def simulator() -> Iterator[tuple[str, SimulatorControl]]:
    with SimulatorServer() as server, SimulatorControl(server.base_url) as control:
        control.add_business("Fault Co Platform", business_id=META_BUSINESS_ID, token=TOKEN)
        yield server.base_url, control


class Workers:
    def __init__(self, settings: Settings, redis_url: str, graph_url: str, tmp: Path) -> None:
        self._env = stack_env(
            settings,
            REDIS_URL=redis_url,
            META_GRAPH_URL=graph_url,
            # Fast redelivery and short back-offs keep the faults quick to observe.
            TASK_REDELIVERY_SECONDS="2",
            TASK_MAX_BACKOFF_SECONDS="1",
            OUTBOX_POLL_SECONDS="0.2",
        )
        self._tmp = tmp
        self.processes: list[subprocess.Popen[bytes]] = []
        # Each worker's /metrics, in the order they started.
        self.metrics: list[str] = []

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        log = (self._tmp / f"worker-{len(self.processes)}.log").open("wb")
        env = {"WORKER_METRICS_PORT": str(free_port()), "METRICS_HOST": "127.0.0.1", **env}
        process = subprocess.Popen([ADPLANE, "worker"], env={**self._env, **env}, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        self.metrics.append(f"http://127.0.0.1:{env['WORKER_METRICS_PORT']}/metrics")
        return process

    async def wait_until_listening(self, *, within: float = 60) -> None:
        """Until every started worker logged that it listens on the broker."""

        def listening() -> bool:
            logs = [(self._tmp / f"worker-{n}.log").read_text() for n in range(len(self.processes))]
            return all("worker started" in log for log in logs)

        await eventually(listening, within=within, what="every worker listening", every=0.05, detail=self.logs)

    async def sample(self, name: str, *, worker: int = -1, **labels: str) -> float:
        """The total of metric `name` (with `labels`) on a worker's /metrics, the last started by default."""
        return total(await asyncio.to_thread(scrape, self.metrics[worker]), name, **labels)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    def logs(self, *, tail: int | None = 3000) -> str:
        return "\n".join(path.read_text()[-tail if tail else 0 :] for path in sorted(self._tmp.glob("worker-*.log")))


@pytest.fixture
def workers(
    settings: Settings, redis: EmbeddedRedis, simulator: tuple[str, SimulatorControl], tmp_path: Path
) -> Iterator[Workers]:
    pool = Workers(settings, redis.url, simulator[0], tmp_path)
    yield pool
    pool.stop_all()


async def _workspace_and_manager(infrastructure: Infrastructure) -> tuple[uuid.UUID, uuid.UUID]:
    """A new workspace, and the platform business manager of META_BUSINESS_ID with its token."""
    async with infrastructure.unit_of_work() as uow:
        workspace = await uow.workspaces.create_workspace(
            WorkspaceCreateRequestSchema(name=f"Fault {uuid.uuid4().hex[:6]}")
        )
    return workspace.id, await add_business_manager(infrastructure, meta_business_id=META_BUSINESS_ID, token=TOKEN)


async def _ask(infrastructure: Infrastructure, workspace_id: uuid.UUID, manager_id: uuid.UUID, name: str) -> uuid.UUID:
    payload = AccountCreationPayload(
        name=name, currency="EUR", timezone="Europe/Berlin", business_manager_id=manager_id
    )
    async with infrastructure.unit_of_work() as uow:
        request = await uow.requests.submit(workspace_id, payload, actor=STAFF, idempotency_key=None)
    return request.id


async def _approve(infrastructure: Infrastructure, request_id: uuid.UUID) -> None:
    async with infrastructure.unit_of_work() as uow:
        await uow.requests.approve_request(request_id, actor=STAFF, idempotency_key=None)


async def _status(infrastructure: Infrastructure, request_id: uuid.UUID) -> tuple[RequestStatus, str]:
    async with infrastructure.unit_of_work() as uow:
        request = await uow.session.get(Request, request_id, populate_existing=True)
        assert request is not None
        return request.status, str((request.result or {}).get("failure_reason") or "")


async def _wait_for(check: Callable[[], bool | Awaitable[bool]], *, within: float, what: str, workers: Workers) -> None:
    await eventually(check, within=within, what=what, every=0.1, detail=workers.logs)


async def _run_periodic_task(settings: Settings, redis: EmbeddedRedis, name: str) -> object:
    """Sends periodic task `name` as the scheduler does; what it returned once a worker ran it."""
    broker = create_broker(settings.model_copy(update={"redis_url": redis.url}))
    register_tasks(broker, settings)
    await broker.startup()
    try:
        task = broker.find_task(name)
        assert task is not None
        result = await (await task.kiq()).wait_result(check_interval=0.05, timeout=30)
    finally:
        await broker.shutdown()
    assert not result.is_err, result.error
    return result.return_value


async def _unacknowledged(redis: EmbeddedRedis) -> int:
    """Task messages delivered to a worker and not acknowledged: what redelivery would run again."""
    async with Redis.from_url(redis.url) as client:
        return int((await client.xpending(QUEUE, CONSUMER_GROUP))["pending"])


def _finished(infrastructure: Infrastructure, *request_ids: uuid.UUID) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        statuses = [(await _status(infrastructure, r))[0] for r in request_ids]
        return all(s in (RequestStatus.COMPLETED, RequestStatus.FAILED) for s in statuses)

    return check


async def test_a_worker_killed_mid_task_is_replaced_and_the_account_exists_once(
    infrastructure: Infrastructure, workers: Workers, simulator: tuple[str, SimulatorControl]
) -> None:
    _, control = simulator
    workspace_id, manager_id = await _workspace_and_manager(infrastructure)
    request_id = await _ask(infrastructure, workspace_id, manager_id, "Killed Mid Task")
    # Reading the new account back is slow: the worker dies after Meta created it, before we commit.
    control.set_latency(4000, path_prefix="/v26.0/act_")
    doomed = workers.start()
    await _approve(infrastructure, request_id)

    async def created_on_meta() -> bool:
        return control.counters().objects.ad_accounts == 1

    await _wait_for(created_on_meta, within=30, what="the account creation on Meta", workers=workers)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    assert (await _status(infrastructure, request_id))[0] is RequestStatus.APPROVED
    control.set_latency(0, path_prefix="/v26.0/act_")
    workers.start()
    await _wait_for(_finished(infrastructure, request_id), within=60, what="the redelivered task", workers=workers)
    assert (await _status(infrastructure, request_id))[0] is RequestStatus.COMPLETED
    assert control.counters().objects.ad_accounts == 1, "the redelivered task created a second account"


async def test_approvals_while_redis_is_down_are_carried_out_once_it_is_back(
    settings: Settings,
    infrastructure: Infrastructure,
    workers: Workers,
    redis: EmbeddedRedis,
    simulator: tuple[str, SimulatorControl],
    tmp_path: Path,
) -> None:
    _, control = simulator
    workspace_id, manager_id = await _workspace_and_manager(infrastructure)
    request_ids = [await _ask(infrastructure, workspace_id, manager_id, f"Outage {n}") for n in range(3)]
    approver = await make_caller(infrastructure, roles=["approver"])
    server = start_server(settings, tmp_path, REDIS_URL=redis.url)
    workers.start()
    await workers.wait_until_listening()  # the worker is up before Redis goes away
    try:
        redis.stop()
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = RequestServiceStub(channel)
            for request_id in request_ids:
                approved = await stub.ApproveRequest(
                    pb.ApproveRequestRequest(id=str(request_id)), metadata=approver.metadata
                )
                assert approved.request.status == request_pb2.REQUEST_STATUS_APPROVED
        # The worker's relay took the approvals' rows and could not publish them.
        await _wait_for(
            lambda: "outbox relay failed" in workers.logs(tail=None),
            within=30,
            what="the relay failing to publish",
            workers=workers,
        )
        assert control.counters().objects.ad_accounts == 0
        assert [(await _status(infrastructure, r))[0] for r in request_ids] == [RequestStatus.APPROVED] * 3
        redis.start()
        await _wait_for(_finished(infrastructure, *request_ids), within=60, what="the queued work", workers=workers)
    finally:
        server.stop()
    assert [(await _status(infrastructure, r))[0] for r in request_ids] == [RequestStatus.COMPLETED] * 3
    assert control.counters().objects.ad_accounts == 3


async def test_rate_limited_calls_back_off_and_finish(
    infrastructure: Infrastructure, workers: Workers, simulator: tuple[str, SimulatorControl]
) -> None:
    _, control = simulator
    workspace_id, manager_id = await _workspace_and_manager(infrastructure)
    request_id = await _ask(infrastructure, workspace_id, manager_id, "Rate Limited")
    control.add_fault(FaultKind.RATE_LIMIT, count=3, path_prefix=f"/v26.0/{META_BUSINESS_ID}", regain_minutes=0.01)
    workers.start()
    await _approve(infrastructure, request_id)
    await _wait_for(_finished(infrastructure, request_id), within=60, what="the rate-limited task", workers=workers)
    assert (await _status(infrastructure, request_id))[0] is RequestStatus.COMPLETED
    assert control.counters().calls.faults_served == 3
    assert control.counters().objects.ad_accounts == 1


async def test_a_revoked_token_fails_the_request_and_flags_the_business_manager_without_retrying(
    settings: Settings,
    infrastructure: Infrastructure,
    workers: Workers,
    redis: EmbeddedRedis,
    simulator: tuple[str, SimulatorControl],
) -> None:
    _, control = simulator
    workspace_id, manager_id = await _workspace_and_manager(infrastructure)
    request_ids = [await _ask(infrastructure, workspace_id, manager_id, f"Revoked {n}") for n in range(2)]
    control.revoke_token(TOKEN)
    workers.start()
    for request_id in request_ids:
        await _approve(infrastructure, request_id)
    await _wait_for(_finished(infrastructure, *request_ids), within=60, what="the failed tasks", workers=workers)
    for request_id in request_ids:
        status, reason = await _status(infrastructure, request_id)
        assert status is RequestStatus.FAILED
        assert "token" in reason.lower()
    async with infrastructure.unit_of_work() as uow:
        manager = await uow.session.get(BusinessManager, manager_id, populate_existing=True)
    assert manager is not None
    assert manager.status is BusinessManagerStatus.NEEDS_ATTENTION
    calls = control.counters().calls.http_calls
    # Nothing is left that would call Meta again: every message is acknowledged (none to
    # redeliver), and the periodic requeue, run now through the same worker, finds nothing to run.

    async def all_acknowledged() -> bool:
        return await _unacknowledged(redis) == 0

    await _wait_for(all_acknowledged, within=30, what="every message acknowledged", workers=workers)
    assert await _run_periodic_task(settings, redis, "requests.requeue_stalled") == 0
    assert control.counters().calls.http_calls == calls, "something kept calling Meta with a revoked token"
    assert calls <= 2 * len(request_ids) + 2


async def test_after_a_redis_restart_the_relay_publishes_within_seconds_and_nothing_runs_twice(
    infrastructure: Infrastructure, workers: Workers, redis: EmbeddedRedis, simulator: tuple[str, SimulatorControl]
) -> None:
    _, control = simulator
    workspace_id, manager_id = await _workspace_and_manager(infrastructure)
    first = await _ask(infrastructure, workspace_id, manager_id, "Before Restart")
    workers.start()
    await workers.wait_until_listening()
    await _approve(infrastructure, first)  # the worker's Redis connections are in use before Redis goes
    await _wait_for(_finished(infrastructure, first), within=30, what="the first task", workers=workers)
    redis.stop()
    request_ids = [await _ask(infrastructure, workspace_id, manager_id, f"Restart {n}") for n in range(3)]
    for request_id in request_ids:
        await _approve(infrastructure, request_id)
    # The relay took the rows and could not publish them. From then on the worker's only database
    # work is the relay's looks, a connection each (and one per backlog count): four more of them
    # failed, and the relay's old back-off, doubling from OUTBOX_POLL_SECONDS, would now wait 3.2 s
    # or more before the next look.
    await _wait_for(
        lambda: "outbox relay failed" in workers.logs(tail=None),
        within=30,
        what="the relay failing to publish",
        workers=workers,
    )
    looked = await workers.sample("adplane_db_pool_checkouts_total")

    async def looked_four_more_times() -> bool:
        return await workers.sample("adplane_db_pool_checkouts_total") >= looked + 4

    await _wait_for(looked_four_more_times, within=30, what="four more looks of the relay", workers=workers)
    redis.start()
    back = time.monotonic()

    async def all_published() -> bool:
        async with infrastructure.unit_of_work() as uow:
            pending = await uow.session.scalar(
                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None))
            )
        return pending == 0

    await _wait_for(all_published, within=15, what="publishing after Redis returned", workers=workers)
    published_after = time.monotonic() - back
    await _wait_for(_finished(infrastructure, *request_ids), within=60, what="the queued work", workers=workers)
    statuses = [(await _status(infrastructure, r))[0] for r in (first, *request_ids)]
    logs = workers.logs(tail=None)
    print(
        f"\npublished {published_after:.2f}s after Redis returned; statuses {[s.value for s in statuses]}; "
        f"accounts on Meta: {control.counters().objects.ad_accounts}; "
        f"worker tracebacks: {logs.count('Traceback')}, repeat lines: {logs.count('(repeated)')}"
    )
    assert published_after < 2.5
    assert statuses == [RequestStatus.COMPLETED] * 4
    assert control.counters().objects.ad_accounts == 4
    assert "Can't set result" not in logs
    # Errors repeated through the outage are written once (LOG_REPEAT_SECONDS), then counted.
    assert logs.count("Traceback") <= 6


async def test_a_long_throttle_holds_the_request_past_its_runs_then_fails_retryable_and_a_staff_retry_completes_it(
    settings: Settings,
    infrastructure: Infrastructure,
    workers: Workers,
    redis: EmbeddedRedis,
    simulator: tuple[str, SimulatorControl],
    tmp_path: Path,
) -> None:
    _, control = simulator
    workspace_id, manager_id = await _workspace_and_manager(infrastructure)
    request_id = await _ask(infrastructure, workspace_id, manager_id, "Long Throttle")
    # Meta asks for 1.2 s each time: more than a run sleeps (TASK_MAX_BACKOFF_SECONDS=1).
    control.add_fault(FaultKind.RATE_LIMIT, count=1000, path_prefix=f"/v26.0/{META_BUSINESS_ID}", regain_minutes=0.02)
    workers.start(TASK_RETRY_DEADLINE_SECONDS="3")
    await _approve(infrastructure, request_id)

    async def held() -> bool:
        async with infrastructure.unit_of_work() as uow:
            request = await uow.session.get(Request, request_id, populate_existing=True)
            return request is not None and request.retry_at is not None

    await _wait_for(held, within=30, what="the request waiting for Meta", workers=workers)
    assert (await _status(infrastructure, request_id))[0] is RequestStatus.APPROVED
    assert control.counters().calls.faults_served == 1  # the run ended when Meta said to wait

    # The periodic requeue job, as the scheduler sends it, once retry_at (the deadline here) came.
    async def due() -> bool:
        async with infrastructure.unit_of_work() as uow:
            retry_at = select(Request.retry_at <= func.now()).where(Request.id == request_id)
            return bool(await uow.session.scalar(retry_at))

    await _wait_for(due, within=30, what="the request's retry time", workers=workers)
    assert await _run_periodic_task(settings, redis, "requests.requeue_stalled") == 1
    await _wait_for(_finished(infrastructure, request_id), within=30, what="the requeued run", workers=workers)
    status, reason = await _status(infrastructure, request_id)
    assert status is RequestStatus.FAILED
    assert "limit" in reason.lower()
    throttled_calls = control.counters().calls.faults_served
    assert throttled_calls == 2

    # Meta is back; staff retry the request over gRPC.
    control.clear_faults()
    approver = await make_caller(infrastructure, roles=["approver"])
    server = start_server(settings, tmp_path, REDIS_URL=redis.url)
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = RequestServiceStub(channel)
            retried = await stub.RetryRequest(pb.RetryRequestRequest(id=str(request_id)), metadata=approver.metadata)
            assert retried.request.status == request_pb2.REQUEST_STATUS_APPROVED
            with pytest.raises(grpc.aio.AioRpcError) as again:
                await stub.RetryRequest(pb.RetryRequestRequest(id=str(request_id)), metadata=approver.metadata)
            assert again.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    finally:
        server.stop()
    await _wait_for(_finished(infrastructure, request_id), within=30, what="the retried request", workers=workers)
    assert (await _status(infrastructure, request_id))[0] is RequestStatus.COMPLETED
    assert control.counters().objects.ad_accounts == 1
    async with infrastructure.unit_of_work() as uow:
        actions = list(
            await uow.session.scalars(
                select(AuditLog.action).where(AuditLog.entity_id == request_id).order_by(AuditLog.id)
            )
        )
    assert actions == ["request", "approve", "fail", "retry", "complete"]
    print(f"\nthrottled calls: {throttled_calls}; audit: {actions}; accounts on Meta: 1")


async def test_a_worker_paused_mid_task_acknowledges_it_after_others_worked_and_the_stream_was_trimmed(
    settings: Settings,
    infrastructure: Infrastructure,
    workers: Workers,
    redis: EmbeddedRedis,
    simulator: tuple[str, SimulatorControl],
) -> None:
    """The task stream is bounded by deleting what was acknowledged and trimming below what is held
    (`server.taskqueue.trim`): a worker frozen (SIGSTOP) in the middle of a task while another runs a
    hundred and the trim runs finds its message still there, finishes the task and acknowledges it."""
    _, control = simulator
    workspace_id, manager_id = await _workspace_and_manager(infrastructure)
    request_id = await _ask(infrastructure, workspace_id, manager_id, "Paused Mid Task")
    control.set_latency(3000, path_prefix="/v26.0/act_")  # reading the new account back is slow
    # Redelivery far away: no other worker takes the paused worker's message meanwhile.
    paused = workers.start(TASK_REDELIVERY_SECONDS="600")
    await workers.wait_until_listening()
    await _approve(infrastructure, request_id)

    async def created_on_meta() -> bool:
        return control.counters().objects.ad_accounts == 1

    await _wait_for(created_on_meta, within=30, what="the account creation on Meta", workers=workers)
    paused.send_signal(signal.SIGSTOP)
    try:
        async with Redis.from_url(redis.url) as client:

            async def stream_ids() -> list[bytes]:
                entries = cast(list[tuple[bytes, object]], await client.xrange(QUEUE))
                return [entry_id for entry_id, _ in entries]

            [held] = await stream_ids()
            workers.start(TASK_REDELIVERY_SECONDS="600")
            broker = create_broker(settings.model_copy(update={"redis_url": redis.url}))
            register_tasks(broker, settings)
            await broker.startup()
            try:
                alert = broker.find_task("accounts.notify_spend_cap_alert")
                assert alert is not None
                for n in range(100):
                    await alert.kiq({"account_id": str(uuid.uuid4()), "percent": 80, "n": n})
            finally:
                await broker.shutdown()

            async def held_by_the_paused_worker() -> set[bytes]:
                pending = cast(
                    list[dict[str, bytes]], await client.xpending_range(QUEUE, CONSUMER_GROUP, "-", "+", 1000)
                )
                consumers = {entry["message_id"]: entry["consumer"] for entry in pending}
                return {entry_id for entry_id, consumer in consumers.items() if consumer == consumers.get(held)}

            async def only_what_the_paused_worker_holds_is_left() -> bool:
                # Its last XREADGROUP, sent before it froze, may still have taken the first alert.
                left = set(await stream_ids())
                return held in left and len(left) <= 2 and left == await held_by_the_paused_worker()

            await _wait_for(
                only_what_the_paused_worker_holds_is_left,
                within=60,
                what="the other worker's hundred tasks done",
                workers=workers,
            )
            kept = await stream_ids()
            assert await trim_acknowledged(client, QUEUE) == 0
            assert await stream_ids() == kept
    finally:
        control.set_latency(0, path_prefix="/v26.0/act_")
        paused.send_signal(signal.SIGCONT)

    await _wait_for(_finished(infrastructure, request_id), within=60, what="the resumed task", workers=workers)
    assert (await _status(infrastructure, request_id))[0] is RequestStatus.COMPLETED

    state: list[object] = []

    async def the_held_task_acknowledged_and_deleted() -> bool:
        async with Redis.from_url(redis.url) as client:
            entries = cast(list[tuple[bytes, object]], await client.xrange(QUEUE))
            pending = cast(list[dict[str, bytes]], await client.xpending_range(QUEUE, CONSUMER_GROUP, "-", "+", 1000))
        state[:] = [entries, pending]
        in_stream = {entry_id for entry_id, _ in entries}
        held_now = {entry["message_id"] for entry in pending}
        # What else is left is still held, so redelivered after TASK_REDELIVERY_SECONDS: the alert the
        # frozen worker's last read took, when its connection timed out as it woke up.
        return held not in in_stream | held_now and in_stream == held_now

    await eventually(
        the_held_task_acknowledged_and_deleted,
        within=30,
        what="the resumed task acknowledged and deleted",
        detail=lambda: str(state),
    )
    assert control.counters().objects.ad_accounts == 1


async def test_a_running_worker_beats_and_a_frozen_or_stopped_one_does_not(workers: Workers, tmp_path: Path) -> None:
    """The worker's event loop touches its heartbeat file; frozen (SIGSTOP) it does not, and a stopped
    worker leaves none: what `adplane liveness worker`, compose's health check, reads."""
    heartbeats = tmp_path / "heartbeats"
    heartbeats.mkdir()
    worker = workers.start(ADPLANE_HEARTBEAT_DIR=str(heartbeats))
    await workers.wait_until_listening()
    path = heartbeats / "adplane-worker.heartbeat"
    # The first beat is the loop's, which "worker started" does not wait for.
    await _wait_for(path.exists, within=HEARTBEAT_SECONDS * 3, what="the worker's first heartbeat", workers=workers)
    alive = await asyncio.to_thread(liveness, "worker", heartbeats)
    assert alive.returncode == 0, alive.stdout + alive.stderr
    first = path.stat().st_mtime_ns
    await _wait_for(
        lambda: path.stat().st_mtime_ns > first,
        within=HEARTBEAT_SECONDS * 3,
        what="a running worker touching its heartbeat again",
        workers=workers,
    )

    worker.send_signal(signal.SIGSTOP)
    try:
        frozen = path.stat().st_mtime_ns
        # Frozen right after a beat: the next one is overdue once HEARTBEAT_SECONDS (and a second
        # to spare) have passed since the file was touched.
        await eventually(
            lambda: time.time_ns() - frozen > (HEARTBEAT_SECONDS + 1) * 1e9,
            within=HEARTBEAT_SECONDS * 3,
            what="a heartbeat overdue",
            every=0.1,
        )
        assert path.stat().st_mtime_ns == frozen, "a frozen event loop must not look alive"
    finally:
        worker.send_signal(signal.SIGCONT)
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 20) == 0
    assert not path.exists()


async def test_worker_metrics_count_tasks_retries_graph_calls_and_the_outbox(
    infrastructure: Infrastructure, workers: Workers, simulator: tuple[str, SimulatorControl]
) -> None:
    """One approval that Meta throttles twice, seen on the worker's /metrics."""
    _, control = simulator
    port = free_port()
    metrics = f"http://127.0.0.1:{port}/metrics"
    workspace_id, manager_id = await _workspace_and_manager(infrastructure)
    request_id = await _ask(infrastructure, workspace_id, manager_id, "Measured")
    control.add_fault(FaultKind.RATE_LIMIT, count=2, path_prefix=f"/v26.0/{META_BUSINESS_ID}", regain_minutes=0.01)
    # No redelivery within the test (the fixture's 2 s would run the throttled task a second time).
    workers.start(WORKER_METRICS_PORT=str(port), METRICS_HOST="127.0.0.1", TASK_REDELIVERY_SECONDS="120")
    await workers.wait_until_listening()
    await _approve(infrastructure, request_id)
    await _wait_for(_finished(infrastructure, request_id), within=60, what="the throttled task", workers=workers)
    assert (await _status(infrastructure, request_id))[0] is RequestStatus.COMPLETED

    async def counted() -> bool:  # the task's own metrics are recorded just after it committed
        return total(await asyncio.to_thread(scrape, metrics), "adplane_tasks_total", task="requests.carry_out") > 0

    await _wait_for(counted, within=10, what="the task's metrics", workers=workers)
    samples = await asyncio.to_thread(scrape, metrics)
    assert total(samples, "adplane_tasks_total", task="requests.carry_out", outcome="success") == 1
    assert total(samples, "adplane_task_duration_seconds_count", task="requests.carry_out") == 1
    assert total(samples, "adplane_tasks_in_progress") == 0
    # Meta refused twice with code 17 and said when to come back: two retries, waited as asked.
    assert total(samples, "adplane_task_step_retries_total", reason="rate_limited") == 2
    assert total(samples, "adplane_meta_throttled_seconds_total", by="meta") >= 2 * 0.6
    assert total(samples, "adplane_meta_requests_total", outcome="17") == 2
    assert total(samples, "adplane_meta_requests_total", operation="POST /{id}/adaccount", outcome="ok") == 1
    assert total(samples, "adplane_meta_request_duration_seconds_count") == total(
        samples, "adplane_meta_requests_total"
    )
    assert label_values(samples, "adplane_meta_usage_percent", "quota") >= {"business"}
    assert total(samples, "adplane_outbox_published_total", topic="request.approved") == 1
    assert total(samples, "adplane_outbox_lag_seconds_count") >= 1
    assert total(samples, "adplane_db_pool_checkouts_total") > 0

    async def backlog_counted_empty() -> bool:  # counted every BACKLOG_COUNT_SECONDS
        return total(await asyncio.to_thread(scrape, metrics), "adplane_outbox_backlog") == 0

    await _wait_for(backlog_counted_empty, within=BACKLOG_COUNT_SECONDS + 5, what="an empty backlog", workers=workers)


def test_the_scheduler_serves_its_metrics(settings: Settings, redis: EmbeddedRedis, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "scheduler.log"
    env = stack_env(settings, REDIS_URL=redis.url, SCHEDULER_METRICS_PORT=str(port), METRICS_HOST="127.0.0.1")
    scheduler = subprocess.Popen([ADPLANE, "scheduler"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "scheduler started" in log.read_text(), what="scheduler", process=scheduler, log=log)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert "# TYPE adplane_scheduled_runs_total counter" in text
        assert "process_cpu_seconds_total" in text
    finally:
        scheduler.send_signal(signal.SIGTERM)
        assert scheduler.wait(timeout=20) == 0, log.read_text()[-3000:]
