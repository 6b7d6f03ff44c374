"""The multi-node topology (devstack/cluster.py, what `make cluster` starts) under a bounded load
through Envoy:

- the drill: one whole node is SIGKILLed and then the Redis primary;
- the rolling restart: one node after the other is stopped with SIGTERM and started again, as a
  deploy does.

Either way reads keep being answered, every approved request ends completed with its account
created once on Meta (the Graph API simulator counts them), and the stack recovers without a restart.
The two tests share the topology and run in either order: the rolling restart first starts again
whatever the drill killed, and each counts the accounts made on Meta during its own run.

The figures (calls per phase, failed calls, seconds to recover) are printed (`pytest -s`) and
written to cluster-drill.json / cluster-restart.json in the test's directory.
"""

import asyncio
import copy
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
from sqlalchemy import text

from adplane.v1 import account_service_pb2, request_pb2, request_service_pb2, workspace_service_pb2
from adplane.v1.account_service_pb2_grpc import AccountServiceStub
from adplane.v1.request_service_pb2_grpc import RequestServiceStub
from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceStub
from devstack.cluster import NODES, SERVER_PROCESSES_PER_NODE, Cluster, ClusterPorts, DataTier, Node, start_data_tier
from devstack.embedded import free_port
from devstack.meta_simulator import SimulatorServer
from devstack.meta_simulator.control_client import SimulatorControl
from devstack.probes import routes_to_serving_server
from server.composition import Infrastructure
from server.config import Settings
from tests.callers import Caller, make_caller
from tests.conftest import postgres_data_dir
from tests.e2e.conftest import ADPLANE, stack_env
from tests.faults.test_worker_faults import META_BUSINESS_ID, TOKEN, _workspace_and_manager
from tests.waits import eventually, wait_until

pytestmark = [pytest.mark.xdist_group("cluster"), pytest.mark.timeout(600)]

COMPLETED = request_pb2.REQUEST_STATUS_COMPLETED
# The load: one read every READ_EVERY seconds, one request asked and approved every WRITE_EVERY.
READ_EVERY = 0.05
WRITE_EVERY = 0.5
CALL_TIMEOUT = 10.0
# Seconds of load before the first fault, after each fault, and after the last.
PHASE_SECONDS = 12.0
# A write that fails with one of these is sent again with the same request_id (what a client does).
RETRIED = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
# Bounds, not expectations: a node's processes exiting after SIGTERM (drain, then the grace period),
# and nine processes starting on two shared cores until Envoy sees them healthy.
STOP_WITHIN = 60.0
START_WITHIN = 300.0


@dataclass
class Topology:
    tier: DataTier
    cluster: Cluster
    envoy_port: int
    envoy_admin: int
    settings: Settings
    control: SimulatorControl
    logs: Path
    # The workspace and business manager the loads write to (one live manager per Meta business).
    subjects: tuple[uuid.UUID, uuid.UUID] | None = None

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.logs.glob("*.log")))


@pytest.fixture(scope="module")
def topology(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    tmp = tmp_path_factory.mktemp("cluster")
    with ExitStack() as stack:
        tier = start_data_tier(stack.enter_context(postgres_data_dir()), stack)
        simulator = stack.enter_context(SimulatorServer())
        control = stack.enter_context(SimulatorControl(simulator.base_url))
        control.add_business("Cluster Co Platform", business_id=META_BUSINESS_ID, token=TOKEN)
        envoy_port, envoy_admin = free_port(), free_port()
        env = stack_env(
            settings,
            **tier.env,
            META_GRAPH_URL=simulator.base_url,
            HTTP_PORT=str(envoy_port),
            ENVOY_ADMIN_PORT=str(envoy_admin),
            ENVOY_METRICS_PORT=str(free_port()),
            # Envoy's checks notice a stopping server; quick redelivery and requeueing keep the drill short.
            GRPC_DRAIN_SECONDS="2",
            TASK_REDELIVERY_SECONDS="3",
            OUTBOX_POLL_SECONDS="0.2",
            REQUEUE_STALLED_AFTER_SECONDS="10",
        )
        migrated = subprocess.run([ADPLANE, "migrate"], env=env, capture_output=True, text=True, check=False)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        cluster = Cluster(env, ClusterPorts.pick(), tmp / "nodes", logs=tmp)
        cluster.launch(time.monotonic())
        stack.callback(cluster.stop, timeout=30)
        topology = Topology(
            tier=tier,
            cluster=cluster,
            envoy_port=envoy_port,
            envoy_admin=envoy_admin,
            # This test's own connections: PostgreSQL itself and the sentinels, with the stack's keys.
            settings=settings.model_copy(
                update={
                    "database_url": tier.env["DATABASE_DIRECT_URL"],
                    "redis_url": "",
                    "redis_sentinels": tier.redis.sentinels,
                    "redis_sentinel_service": tier.redis.service,
                }
            ),
            control=control,
            logs=tmp,
        )
        wait_until(
            lambda: healthy_endpoints(topology) == SERVER_PROCESSES_PER_NODE * len(NODES),
            within=START_WITHIN,
            every=0.5,
            what="Envoy seeing every server process of both nodes healthy",
            detail=topology.log_tail,
        )
        wait_until(lambda: routes_to_serving_server(envoy_port), within=30, what="Envoy routing to a server")
        yield topology


def healthy_endpoints(topology: Topology, address: str | None = None) -> int:
    """How many server processes (of the node at `address`, or of all) Envoy's health checks find healthy."""
    try:
        clusters = httpx.get(f"http://127.0.0.1:{topology.envoy_admin}/clusters", timeout=2).text
    except httpx.HTTPError:
        return 0
    prefix = f"grpc_server::{address}:" if address else "grpc_server::"
    return sum(
        1 for line in clusters.splitlines() if line.startswith(prefix) and line.endswith("::health_flags::healthy")
    )


# The writes of the load: each carries a request_id, so sending it again does the work once.
Keyed = account_service_pb2.RequestAccountRequest | request_service_pb2.ApproveRequestRequest


@dataclass
class Tally:
    """Calls of one kind: (seconds since the start, status code) of each."""

    calls: list[tuple[float, grpc.StatusCode]] = field(default_factory=list)

    def failed_between(self, start: float, end: float) -> list[tuple[float, grpc.StatusCode]]:
        return [(t, code) for t, code in self.calls if start <= t < end and code != grpc.StatusCode.OK]

    def count_between(self, start: float, end: float) -> int:
        return sum(1 for t, _ in self.calls if start <= t < end)


@dataclass
class Load:
    channel: grpc.aio.Channel
    admin: Caller
    workspace_id: uuid.UUID
    manager_id: uuid.UUID
    started: float = field(default_factory=time.monotonic)
    reads: Tally = field(default_factory=Tally)
    writes: Tally = field(default_factory=Tally)
    approved: list[str] = field(default_factory=list)
    running: bool = True

    def now(self) -> float:
        return time.monotonic() - self.started

    @asynccontextmanager
    async def flowing(self) -> AsyncIterator[None]:
        """The read and write loops run inside; on leaving, they finish their call and stop (an error
        of theirs fails the test)."""
        tasks = [asyncio.create_task(self.read_loop()), asyncio.create_task(self.write_loop())]
        try:
            yield
        finally:
            self.running = False
            for task in tasks:
                await asyncio.wait_for(task, CALL_TIMEOUT * 2)

    def figures(self, start: float, end: float) -> dict[str, float]:
        """The calls made between `start` and `end` (seconds since the start) and how many failed."""
        failed_reads, failed_writes = self.reads.failed_between(start, end), self.writes.failed_between(start, end)
        return {
            "seconds": round(end - start, 1),
            "reads": self.reads.count_between(start, end),
            "failed reads": len(failed_reads),
            "writes sent": self.writes.count_between(start, end),
            "failed write attempts (sent again)": len(failed_writes),
            "seconds from its start to the last failed call": round(
                max([t for t, _ in failed_reads + failed_writes], default=start) - start, 1
            ),
        }

    async def read_loop(self) -> None:
        workspaces = WorkspaceServiceStub(self.channel)
        while self.running:
            began = time.monotonic()
            try:
                await workspaces.GetWorkspace(
                    workspace_service_pb2.GetWorkspaceRequest(workspace_id=str(self.workspace_id)),
                    metadata=self.admin.metadata,
                    timeout=CALL_TIMEOUT,
                )
                code = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as error:
                code = error.code()
            self.reads.calls.append((began - self.started, code))
            await asyncio.sleep(max(0.0, READ_EVERY - (time.monotonic() - began)))

    async def write_loop(self) -> None:
        accounts, requests = AccountServiceStub(self.channel), RequestServiceStub(self.channel)
        number = 0
        while self.running:
            began = time.monotonic()
            number += 1
            draft = account_service_pb2.AccountDraft(
                name=f"Drill {number}",
                currency="EUR",
                timezone="Europe/Berlin",
                business_manager_id=str(self.manager_id),
            )
            ask = account_service_pb2.RequestAccountRequest(workspace_id=str(self.workspace_id), account=draft)
            asked = await self._until_done(accounts.RequestAccount, ask)
            request_id = asked.request.id
            approve = request_service_pb2.ApproveRequestRequest(id=request_id)
            await self._until_done(requests.ApproveRequest, approve)
            self.approved.append(request_id)
            await asyncio.sleep(max(0.0, WRITE_EVERY - (time.monotonic() - began)))

    async def _until_done[M: Keyed, T](self, method: "grpc.aio.UnaryUnaryMultiCallable[M, T]", message: M) -> T:
        """The call, sent again with the same request_id while it fails with UNAVAILABLE or a deadline."""
        keyed = copy.deepcopy(message)
        keyed.request_id = str(uuid.uuid4())
        for _ in range(30):
            began = time.monotonic()
            try:
                reply = await method(keyed, metadata=self.admin.metadata, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as error:
                self.writes.calls.append((began - self.started, error.code()))
                if error.code() not in RETRIED:
                    raise
                await asyncio.sleep(0.5)
                continue
            self.writes.calls.append((began - self.started, grpc.StatusCode.OK))
            return reply
        raise AssertionError("a write failed 30 times in a row")


async def every_approval_completed(topology: Topology, load: Load) -> float:
    """Seconds until every request the load approved is completed (they may still be in the works)."""
    requests = RequestServiceStub(load.channel)

    async def completed() -> bool:
        for request_id in load.approved:
            reply = await requests.GetRequest(
                request_service_pb2.GetRequestRequest(workspace_id=str(load.workspace_id), id=request_id),
                metadata=load.admin.metadata,
                timeout=CALL_TIMEOUT,
            )
            if reply.request.status != COMPLETED:
                return False
        return True

    began = time.monotonic()
    await eventually(
        completed, within=180, what="every approved request completed", every=1.0, detail=topology.log_tail
    )
    return time.monotonic() - began


@pytest.fixture
async def cluster_infrastructure(topology: Topology) -> AsyncIterator[Infrastructure]:
    infrastructure = Infrastructure.build(topology.settings)
    yield infrastructure
    await infrastructure.close()


@pytest.fixture
async def subjects(topology: Topology, cluster_infrastructure: Infrastructure) -> tuple[uuid.UUID, uuid.UUID]:
    """The workspace and business manager of the loads, made by whichever test runs first."""
    if topology.subjects is None:
        topology.subjects = await _workspace_and_manager(cluster_infrastructure)
    return topology.subjects


async def test_a_node_then_the_redis_primary_fail_under_load(
    topology: Topology, cluster_infrastructure: Infrastructure, subjects: tuple[uuid.UUID, uuid.UUID], tmp_path: Path
) -> None:
    workspace_id, manager_id = subjects
    admin = await make_caller(cluster_infrastructure, superuser=True)
    accounts_before = topology.control.counters().objects.ad_accounts
    async with grpc.aio.insecure_channel(f"127.0.0.1:{topology.envoy_port}") as channel:
        load = Load(channel, admin, workspace_id, manager_id)
        async with load.flowing():
            await asyncio.sleep(PHASE_SECONDS)

            # 1. A whole node dies: its server processes, its worker and its scheduler.
            node_killed = load.now()
            topology.cluster.kill_node(NODES[0])
            await asyncio.sleep(PHASE_SECONDS)

            # 2. The Redis primary dies; the sentinels promote the replica.
            redis_killed = load.now()
            topology.tier.redis.kill_primary()
            failover = await asyncio.to_thread(topology.tier.redis.wait_for_new_primary)
            await asyncio.sleep(PHASE_SECONDS)
            ended = load.now()

        settle_seconds = await every_approval_completed(topology, load)

    created_on_meta = topology.control.counters().objects.ad_accounts - accounts_before
    phases = {
        "before the faults": (0.0, node_killed),
        "after a node was killed": (node_killed, redis_killed),
        "after the Redis primary was killed": (redis_killed, ended),
    }
    by_phase = {name: load.figures(start, end) for name, (start, end) in phases.items()}
    figures = by_phase | {
        "redis failover seconds (sentinels)": round(failover, 1),
        "approved requests": len(load.approved),
        "accounts created on Meta": created_on_meta,
        "seconds until every approval completed, after the load": round(settle_seconds, 1),
    }
    report = json.dumps(figures, indent=2)
    (tmp_path / "cluster-drill.json").write_text(report)
    print(f"\ncluster drill:\n{report}")

    # Nothing lost, nothing done twice: one account on Meta per approved request.
    assert created_on_meta == len(load.approved), report
    assert len(load.approved) >= PHASE_SECONDS * 3 / WRITE_EVERY / 4, report  # the writes kept flowing
    # Reads through Envoy survive a node's death (retries, health checks) and a Redis failover.
    assert [phase["failed reads"] for phase in by_phase.values()] == [0, 0, 0], report


async def node_endpoints(topology: Topology, node: Node) -> int:
    return await asyncio.to_thread(healthy_endpoints, topology, node.address)


async def wait_for_node_out(topology: Topology, node: Node) -> None:
    """Until Envoy no longer sends calls to `node` (its health checks failed)."""

    async def out() -> bool:
        return await node_endpoints(topology, node) == 0

    await eventually(out, within=30, every=0.2, what=f"Envoy seeing {node.name} down", detail=topology.log_tail)


async def wait_for_node_back(topology: Topology, node: Node, *, launched: float) -> None:
    """Until Envoy sees every server process of `node` healthy, and its worker and scheduler beat
    (`launched`: the `time.time()` they were started at)."""

    async def back() -> bool:
        serving = await node_endpoints(topology, node) == SERVER_PROCESSES_PER_NODE
        return serving and topology.cluster.background_beating(node, since=launched)

    await eventually(back, within=START_WITHIN, every=0.2, what=f"{node.name} serving again", detail=topology.log_tail)


async def requests_in(infrastructure: Infrastructure, workspace_id: uuid.UUID) -> int:
    async with infrastructure.engine.connect() as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM requests WHERE workspace_id = :workspace_id"), {"workspace_id": workspace_id}
        )
    return int(count or 0)


async def test_nodes_restarted_one_after_the_other_under_load(
    topology: Topology, cluster_infrastructure: Infrastructure, subjects: tuple[uuid.UUID, uuid.UUID], tmp_path: Path
) -> None:
    # What the drill killed, when it ran first, is started again before the load begins.
    for node in NODES:
        launched = time.time()
        topology.cluster.start_node(node)
        await wait_for_node_back(topology, node, launched=launched)
    workspace_id, manager_id = subjects
    admin = await make_caller(cluster_infrastructure, superuser=True)
    figures: dict[str, object] = {}
    accounts_before = topology.control.counters().objects.ad_accounts
    requests_before = await requests_in(cluster_infrastructure, workspace_id)
    # For each node: seconds since the start at SIGTERM, when its processes had all exited, when it was back.
    restarts: dict[str, tuple[float, float, float]] = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{topology.envoy_port}") as channel:
        load = Load(channel, admin, workspace_id, manager_id)
        async with load.flowing():
            await asyncio.sleep(PHASE_SECONDS)
            # One node after the other, as a deploy does: SIGTERM (each process drains), exit, start again.
            for node in NODES:
                signalled = load.now()
                await asyncio.to_thread(topology.cluster.stop_node, node, timeout=STOP_WITHIN)
                stopped = load.now()
                await wait_for_node_out(topology, node)
                launched = time.time()
                topology.cluster.start_node(node)
                await wait_for_node_back(topology, node, launched=launched)
                restarts[node.name] = (signalled, stopped, load.now())
                await asyncio.sleep(PHASE_SECONDS)
            ended = load.now()
        settle_seconds = await every_approval_completed(topology, load)

    created_on_meta = topology.control.counters().objects.ad_accounts - accounts_before
    requests_made = await requests_in(cluster_infrastructure, workspace_id) - requests_before
    # Phases: before the first SIGTERM, then from each node's SIGTERM to the next one (or the end).
    marks = [("before the restarts", 0.0), *((f"from {name}'s SIGTERM", r[0]) for name, r in restarts.items())]
    ends = [start for _, start in marks[1:]] + [ended]
    phases = {name: (start, end) for (name, start), end in zip(marks, ends, strict=True)}
    figures |= {name: load.figures(start, end) for name, (start, end) in phases.items()}
    figures["restarts"] = {
        name: {
            "seconds from SIGTERM until every process exited": round(stopped - signalled, 1),
            "seconds from SIGTERM until back (Envoy sees it healthy, worker and scheduler beat)": round(
                back - signalled, 1
            ),
        }
        for name, (signalled, stopped, back) in restarts.items()
    }
    whole = load.figures(0.0, ended)
    figures |= whole | {
        "approved requests": len(load.approved),
        "requests made": requests_made,
        "accounts created on Meta": created_on_meta,
        "seconds until every approval completed, after the load": round(settle_seconds, 1),
    }
    report = json.dumps(figures, indent=2)
    (tmp_path / "cluster-restart.json").write_text(report)
    print(f"\ncluster rolling restart:\n{report}")

    # Nothing lost, nothing done twice: one request per write the load made (a resent RequestAccount
    # does not make a second one), and one account on Meta per approved request.
    assert requests_made == len(load.approved), report
    assert created_on_meta == len(load.approved), report
    assert len(load.approved) >= PHASE_SECONDS * 3 / WRITE_EVERY / 4, report  # the writes kept flowing
    # Reads through Envoy never fail while a node drains, stops and starts again.
    assert whole["failed reads"] == 0, report
