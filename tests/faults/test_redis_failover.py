"""The Redis failover drill: the whole stack through Sentinel (a server, two workers and a scheduler,
each reaching Redis only through three sentinels), the Redis primary SIGKILLed while approvals flow.

Every approved request ends `completed`, each account created on Meta exactly once (the Graph API
simulator counts them), a watch stream carries on (resuming with its token if it was ended), and
nothing is restarted. Work whose task message the failover lost (acknowledged by the old primary,
not yet replicated) is found again by the requeue job the scheduler sends every minute here.
The seconds are printed (`pytest -s`): the sentinels' failover, and the first request approved
after the kill completing.
"""

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from adplane.v1 import request_service_pb2 as pb
from adplane.v1.request_service_pb2_grpc import RequestServiceStub
from devstack.embedded import free_port
from devstack.meta_simulator import SimulatorServer
from devstack.meta_simulator.control_client import SimulatorControl
from server.auth.principal import Principal, PrincipalKind
from server.background.registry import event_streams, publish, register_tasks
from server.composition import Infrastructure
from server.config import Settings
from server.outbox.relay import OutboxRelay
from server.redis_client import connection_pool
from server.requests.models import Request, RequestStatus
from server.requests.schemas import AccountCreationPayload
from server.taskqueue.broker import QUEUE, create_broker
from server.workspaces.schemas import WorkspaceCreateRequestSchema
from tests.callers import make_caller
from tests.e2e.conftest import ADPLANE, ServerProcess, stack_env, start_server
from tests.e2e.test_watch import Watch
from tests.meta_work import CREATE_ACCOUNT_ROUTE, add_business_manager
from tests.sentinel import SentinelGroup, sentinel_env, sentinel_settings
from tests.waits import eventually

if TYPE_CHECKING:  # only in the stubs
    from adplane.v1.request_service_pb2_grpc import RequestServiceAsyncStub

META_BUSINESS_ID = "900000000000022"
TOKEN = "failover-drill-system-user-token-22"
STAFF = Principal(kind=PrincipalKind.API_KEY, id=uuid.uuid4())
REQUESTS = 24
LOST = 4
OTHER_CRONS = (
    "SYNC_ACCOUNTS_CRON",
    "SYNC_PIXELS_CRON",
    "SYNC_BUSINESS_MANAGERS_CRON",
    "EXPIRE_REQUESTS_CRON",
    "SPEND_CAP_ALERTS_CRON",
    "SPEND_EXPORT_CRON",
    "RETENTION_CRON",
    "AUDIT_LOG_ROTATE_CRON",
)
KILL_AFTER = 8  # approvals before the primary dies
APPROVAL_GAP_SECONDS = 0.2
NOT_TODAY_CRON = "0 0 29 2 *"
COMPLETED = pb.REQUEST_CHANGE_KIND_COMPLETED


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    with SentinelGroup(tmp_path / "sentinel") as group:
        yield group


@pytest.fixture
def simulator() -> Iterator[tuple[str, SimulatorControl]]:
    with SimulatorServer() as server, SimulatorControl(server.base_url) as control:
        control.add_business("Failover Co Platform", business_id=META_BUSINESS_ID, token=TOKEN)
        yield server.base_url, control


class Background:
    """The worker and scheduler processes, through the sentinels."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self._env = env
        self._tmp = tmp
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, command: str, **env: str) -> None:
        log = (self._tmp / f"{command}-{len(self.processes)}.log").open("wb")
        env = {**self._env, "METRICS_HOST": "127.0.0.1", **env}
        self.processes.append(subprocess.Popen([ADPLANE, command], env=env, stdout=log, stderr=subprocess.STDOUT))

    def all_logged(self, text: str) -> bool:
        return all(text in path.read_text() for path in self._tmp.glob("*-*.log") if "server" not in path.name)

    def alive(self) -> bool:
        return all(process.poll() is None for process in self.processes)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in sorted(self._tmp.glob("*-*.log")))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@dataclass
class Watcher:
    """A watch stream read as a client would: on UNAVAILABLE it resumes with its last token."""

    completed_at: dict[str, float] = field(default_factory=dict)
    resumed: int = 0
    token: str = ""

    async def follow(self, stub: "RequestServiceAsyncStub", metadata: tuple[tuple[str, str], ...]) -> None:
        while True:
            call: Watch = stub.WatchRequests(pb.WatchRequestsRequest(resume_token=self.token), metadata=metadata)
            try:
                while (message := await call.read()) is not grpc.aio.EOF:
                    assert isinstance(message, pb.WatchRequestsResponse)
                    self.token = message.resume_token or self.token
                    if message.WhichOneof("event") == "change" and message.change.kind == COMPLETED:
                        self.completed_at.setdefault(message.change.request.id, time.monotonic())
            except grpc.aio.AioRpcError as error:
                if error.code() is not grpc.StatusCode.UNAVAILABLE:
                    raise
            self.resumed += 1
            await asyncio.sleep(0.2)


async def _workspace_and_manager(infrastructure: Infrastructure) -> tuple[uuid.UUID, uuid.UUID]:
    """A new workspace, and the platform business manager of META_BUSINESS_ID with its token."""
    async with infrastructure.unit_of_work() as uow:
        workspace = await uow.workspaces.create_workspace(
            WorkspaceCreateRequestSchema(name=f"Failover {uuid.uuid4().hex[:6]}")
        )
    return workspace.id, await add_business_manager(infrastructure, meta_business_id=META_BUSINESS_ID, token=TOKEN)


async def _submit(infrastructure: Infrastructure, workspace_id: uuid.UUID, manager_id: uuid.UUID, n: int) -> str:
    payload = AccountCreationPayload(
        name=f"Failover {n}", currency="EUR", timezone="Europe/Berlin", business_manager_id=manager_id
    )
    async with infrastructure.unit_of_work() as uow:
        return str((await uow.requests.submit(workspace_id, payload, actor=STAFF, idempotency_key=None)).id)


async def _statuses(infrastructure: Infrastructure, ids: list[str]) -> dict[str, RequestStatus]:
    async with infrastructure.unit_of_work() as uow:
        rows = await uow.session.execute(
            select(Request.id, Request.status).where(Request.id.in_([uuid.UUID(i) for i in ids]))
        )
        return {str(request_id): status for request_id, status in rows}


async def test_a_redis_failover_while_approvals_flow_loses_and_doubles_nothing(
    settings: Settings,
    infrastructure: Infrastructure,
    group: SentinelGroup,
    simulator: tuple[str, SimulatorControl],
    tmp_path: Path,
) -> None:
    graph_url, control = simulator
    workspace_id, manager_id = await _workspace_and_manager(infrastructure)
    ids = [await _submit(infrastructure, workspace_id, manager_id, n) for n in range(REQUESTS)]
    approver = await make_caller(infrastructure, roles=["approver"])
    admin = await make_caller(infrastructure, superuser=True)

    through_sentinels = sentinel_env(group)
    # Two servers: on the first a watch outlives the failover (shorter than its outage limit); on the
    # second the limit is shorter than a failover, so its watch may be ended and resume with its token.
    server: ServerProcess = start_server(
        settings, tmp_path, **through_sentinels, WATCH_HEARTBEAT_SECONDS="0.5", WATCH_OUTAGE_SECONDS="5"
    )
    strict: ServerProcess = start_server(
        settings, tmp_path, **through_sentinels, WATCH_HEARTBEAT_SECONDS="0.5", WATCH_OUTAGE_SECONDS="0.5"
    )
    background = Background(
        stack_env(
            settings,
            **through_sentinels,
            META_GRAPH_URL=graph_url,
            OUTBOX_POLL_SECONDS="0.2",
            TASK_MAX_BACKOFF_SECONDS="1",
            # Lost work is looked for every minute, 5 s after its approval.
            REQUEUE_STALLED_CRON="* * * * *",
            REQUEUE_STALLED_AFTER_SECONDS="5",
            **dict.fromkeys(OTHER_CRONS, NOT_TODAY_CRON),
        ),
        tmp_path,
    )
    watcher, resuming = Watcher(), Watcher()
    try:
        for _ in range(2):
            background.start("worker", WORKER_METRICS_PORT=str(free_port()))
        background.start("scheduler", SCHEDULER_METRICS_PORT=str(free_port()))
        # Every process is up (each logs "... started" once it listens) before the approvals start.
        await eventually(lambda: background.all_logged(" started"), within=90, every=0.2,
                         what="the workers and the scheduler started", detail=background.logs)  # fmt: skip
        async with (
            grpc.aio.insecure_channel(server.target) as channel,
            grpc.aio.insecure_channel(strict.target) as strict_channel,
        ):
            stub = RequestServiceStub(channel)
            watching = [
                asyncio.create_task(watcher.follow(stub, admin.metadata)),
                asyncio.create_task(resuming.follow(RequestServiceStub(strict_channel), admin.metadata)),
            ]
            await eventually(lambda: bool(watcher.token and resuming.token), within=30, what="the watches' snapshots")

            refused = 0
            approved_at: dict[str, float] = {}
            killed_at = 0.0
            failover: asyncio.Task[float] | None = None
            for n, request_id in enumerate(ids):
                if n == KILL_AFTER:
                    # Work is flowing: the first approvals' requests are being completed.
                    await eventually(lambda: len(watcher.completed_at) >= 2, within=60,
                                     what="the first completions", detail=background.logs)  # fmt: skip
                    group.kill_primary()
                    killed_at = time.monotonic()
                    failover = asyncio.create_task(asyncio.to_thread(group.wait_for_new_primary))
                while True:  # as a client does: UNAVAILABLE is retried after its RetryInfo
                    try:
                        await stub.ApproveRequest(pb.ApproveRequestRequest(id=request_id), metadata=approver.metadata)
                        break
                    except grpc.aio.AioRpcError as error:
                        if error.code() is not grpc.StatusCode.UNAVAILABLE:
                            raise
                        refused += 1
                        await asyncio.sleep(1)
                approved_at[request_id] = time.monotonic()
                await asyncio.sleep(APPROVAL_GAP_SECONDS)
            assert failover is not None
            failover_seconds = await failover

            async def all_completed() -> bool:
                return set((await _statuses(infrastructure, ids)).values()) <= {RequestStatus.COMPLETED}

            await eventually(all_completed, within=180, every=0.5, what="every approved request completed",
                             detail=background.logs)  # fmt: skip
            after_kill = [i for i in ids if approved_at[i] > killed_at]
            # The watches carry the completions of the requests approved after the failover.
            await eventually(lambda: all(i in w.completed_at for i in after_kill for w in (watcher, resuming)),
                             within=60, what="the watches carrying the completions after the failover")  # fmt: skip
            for task in watching:
                task.cancel()
        recovered = min(watcher.completed_at[i] for i in after_kill) - killed_at
        counters = control.counters()
        assert counters.objects.ad_accounts == REQUESTS, "an account created twice, or never"
        assert counters.calls.by_route[CREATE_ACCOUNT_ROUTE] == REQUESTS
        assert background.alive(), "a worker or the scheduler died (nothing may need a restart)"
        print(
            f"failover {failover_seconds:.1f} s; first completion of an approval after the kill "
            f"{recovered:.1f} s after it; {refused} approval calls refused (retried); watch resumed "
            f"{watcher.resumed} time(s), {len(watcher.completed_at)}/{REQUESTS} completions seen; the watch "
            f"with a 0.5 s outage limit resumed {resuming.resumed} time(s), "
            f"{len(resuming.completed_at)}/{REQUESTS} seen"
        )
    finally:
        background.stop()
        server.stop()
        strict.stop()


async def test_task_messages_a_failover_lost_are_found_again_and_carried_out_once(
    settings: Settings,
    infrastructure: Infrastructure,
    group: SentinelGroup,
    simulator: tuple[str, SimulatorControl],
    tmp_path: Path,
) -> None:
    """The replica is cut off, approvals are relayed to the primary only, the primary dies: the
    promoted replica has none of their task messages (the outbox rows say published). The requeue
    job finds the approved requests that are neither completed nor failed nor in progress and queues
    them again; each is carried out once."""
    graph_url, control = simulator
    through_sentinels = sentinel_settings(settings, group)
    workspace_id, manager_id = await _workspace_and_manager(infrastructure)
    ids = [await _submit(infrastructure, workspace_id, manager_id, n) for n in range(LOST)]
    async with infrastructure.unit_of_work() as uow:
        for request_id in ids:
            await uow.requests.approve_request(uuid.UUID(request_id), actor=STAFF, idempotency_key=None)

    broker = create_broker(through_sentinels)
    register_tasks(broker, through_sentinels)
    await broker.startup()
    replica = group.cut_off_replica()
    try:
        # What a worker's relay does: publish the approvals (to the primary alone now) and mark them.
        relay = OutboxRelay(
            infrastructure.unit_of_work,
            partial(publish, broker, streams=event_streams(infrastructure.request_event_publisher)),
            batch_size=100,
            poll_seconds=0.1,
        )
        assert await relay.relay_once() >= LOST
        async with Redis(connection_pool=connection_pool(through_sentinels)) as redis:
            assert await redis.xlen(QUEUE) == LOST
        group.kill_primary()
        group.restore_replica(replica)
        failover_seconds = await asyncio.to_thread(group.wait_for_new_primary)
        async with Redis(connection_pool=connection_pool(through_sentinels)) as redis:
            assert await redis.xlen(QUEUE) == 0, "the failover lost the task messages (the premise)"
    finally:
        await broker.shutdown()

    lost_at = time.monotonic()
    background = Background(
        stack_env(
            settings,
            **sentinel_env(group),
            META_GRAPH_URL=graph_url,
            OUTBOX_POLL_SECONDS="0.2",
            REQUEUE_STALLED_CRON="* * * * *",
            REQUEUE_STALLED_AFTER_SECONDS="5",
            **dict.fromkeys(OTHER_CRONS, NOT_TODAY_CRON),
        ),
        tmp_path,
    )
    try:
        background.start("worker", WORKER_METRICS_PORT=str(free_port()))
        background.start("scheduler", SCHEDULER_METRICS_PORT=str(free_port()))

        async def all_completed() -> bool:
            return set((await _statuses(infrastructure, ids)).values()) == {RequestStatus.COMPLETED}

        # The requeue runs every minute here: within one after the workers are up.
        await eventually(all_completed, within=180, every=0.5, what="the lost work carried out",
                         detail=background.logs)  # fmt: skip
        found_again = time.monotonic() - lost_at
    finally:
        background.stop()
    counters = control.counters()
    assert counters.objects.ad_accounts == LOST
    assert counters.calls.by_route[CREATE_ACCOUNT_ROUTE] == LOST
    print(f"failover {failover_seconds:.1f} s lost {LOST} task messages; all carried out {found_again:.1f} s later")
