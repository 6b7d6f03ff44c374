"""Restarts that drop no request: a steady load through Envoy (reads and writes, REST and gRPC) while
every server process of `serve --workers 2` is restarted one after another, then while one is killed.

The load is `RATE` calls a second, each started on time whether or not the previous ones finished
(an open loop, as real clients are), in turn a REST read, a gRPC read, a REST write and a gRPC write.
Writes create a workspace with a `request_id`; one that fails is sent again by the client with the
same `request_id` (what the SDKs' callers do), so none is lost and none may be done twice.

- SIGTERM of each process in turn (what a deploy does): health turns NOT_SERVING, Envoy's health
  check sends new calls to the other process, in-flight calls finish, the parent starts the process
  again. Expected: no failed call at all.
- SIGKILL of one process: the calls in flight on it are reset. Envoy retries the reads on another
  process (they change nothing); a write may have committed, so Envoy does not retry it, the client
  does with its `request_id`. Expected: no failed read, at most the calls then in flight fail, and no
  write lost or doubled.

The run is bounded (every wait has a deadline, the load stops after `MAX_CALLS`) and asserts no
timing; the counts are printed (`pytest -s`).
"""

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
import httpx
import pytest
from sqlalchemy import text

from adplane.v1 import workspace_pb2
from adplane.v1 import workspace_service_pb2 as pb
from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceStub
from devstack.embedded import free_port
from server.composition import Infrastructure
from server.config import Settings
from tests import waits
from tests.callers import Caller, make_caller
from tests.e2e.conftest import ServerProcess, _serving, start_envoy, start_server_processes, wait_until
from tests.e2e.test_load_spread import _healthy_endpoints

if TYPE_CHECKING:
    from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceAsyncStub

pytestmark = [pytest.mark.timeout(420), pytest.mark.xdist_group("rolling_restart")]

WORKERS = 2
RATE = 20  # calls a second
MAX_CALLS = 3000  # the load stops here whatever happens (2.5 minutes)
# Steady calls before and after each disturbance.
SETTLE_CALLS = 2 * RATE
WRITE_ATTEMPTS = 4
# Envoy checks health every 2 s; the drain must outlast one check.
DRAIN_SECONDS = "3"


@dataclass
class Counts:
    reads: int = 0
    failed_reads: int = 0
    writes: int = 0
    # Attempts of a write that failed (the client then sent it again with its request_id).
    failed_write_attempts: int = 0
    # Writes that still failed after every attempt.
    failed_writes: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class Load:
    """An open-loop load of RATE calls a second through Envoy, until `stop`."""

    envoy_port: int
    caller: Caller
    workspace_id: str
    counts: Counts = field(default_factory=Counts)
    # request_id -> the workspace id its write returned.
    acknowledged: dict[str, str] = field(default_factory=dict)
    in_flight: int = 0
    begin: float = field(default_factory=time.monotonic)
    started: int = 0
    finished: int = 0
    stopping: bool = False

    def stop(self) -> None:
        self.stopping = True

    def note(self, what: str) -> None:
        """Something to see in a failure's list of errors, with the time it happened."""
        self.counts.errors.append(f"{time.monotonic() - self.begin:.2f} s: {what}")

    async def run(self) -> None:
        async with (
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{self.envoy_port}", headers=self.caller.headers, timeout=30
            ) as http,
            grpc.aio.insecure_channel(f"127.0.0.1:{self.envoy_port}") as channel,
        ):
            stub = WorkspaceServiceStub(channel)
            calls = [self._rest_read, self._grpc_read, self._rest_write, self._grpc_write]
            tasks: set[asyncio.Task[None]] = set()
            begin = self.begin = time.monotonic()
            while not self.stopping and self.started < MAX_CALLS:
                call = calls[self.started % len(calls)]
                task = asyncio.create_task(self._counted(call, http, stub))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.started += 1
                # Open loop: the next call starts on schedule, however long this one takes.
                await asyncio.sleep(max(0.0, begin + self.started / RATE - time.monotonic()))
            await asyncio.gather(*tasks)

    async def _counted(
        self, call: Callable[..., object], http: httpx.AsyncClient, stub: "WorkspaceServiceAsyncStub"
    ) -> None:
        self.in_flight += 1
        try:
            await call(http, stub)  # type: ignore[misc]
        finally:
            self.in_flight -= 1
            self.finished += 1

    async def _rest_read(self, http: httpx.AsyncClient, stub: "WorkspaceServiceAsyncStub") -> None:
        self.counts.reads += 1
        try:
            response = await http.get(f"/api/workspaces/{self.workspace_id}")
        except httpx.HTTPError as error:
            self._read_failed(f"REST read: {error!r}")
            return
        if response.status_code != 200:
            self._read_failed(f"REST read: {response.status_code} {response.text[:200]}")

    async def _grpc_read(self, http: httpx.AsyncClient, stub: "WorkspaceServiceAsyncStub") -> None:
        self.counts.reads += 1
        try:
            await stub.GetWorkspace(
                pb.GetWorkspaceRequest(workspace_id=self.workspace_id), metadata=self.caller.metadata, timeout=30
            )
        except grpc.aio.AioRpcError as error:
            self._read_failed(f"gRPC read: {error.code().name} {error.details()}")

    def _read_failed(self, what: str) -> None:
        self.counts.failed_reads += 1
        self.note(what)

    async def _rest_write(self, http: httpx.AsyncClient, stub: "WorkspaceServiceAsyncStub") -> None:
        request_id = f"rolling-{uuid.uuid4()}"

        async def attempt() -> str | None:
            try:
                response = await http.post(
                    "/api/workspaces", params={"request_id": request_id}, json={"name": request_id}
                )
            except httpx.HTTPError as error:
                self.note(f"REST write: {error!r}")
                return None
            if response.status_code != 200:
                self.note(f"REST write: {response.status_code} {response.text[:200]}")
                return None
            return str(response.json()["workspace"]["id"])

        await self._write(request_id, attempt)

    async def _grpc_write(self, http: httpx.AsyncClient, stub: "WorkspaceServiceAsyncStub") -> None:
        request_id = f"rolling-{uuid.uuid4()}"

        async def attempt() -> str | None:
            try:
                reply = await stub.CreateWorkspace(
                    pb.CreateWorkspaceRequest(
                        workspace=workspace_pb2.Workspace(name=request_id), request_id=request_id
                    ),
                    metadata=self.caller.metadata,
                    timeout=30,
                )
            except grpc.aio.AioRpcError as error:
                self.note(f"gRPC write: {error.code().name} {error.details()}")
                return None
            return str(reply.workspace.id)

        await self._write(request_id, attempt)

    async def _write(self, request_id: str, attempt: Callable[[], object]) -> None:
        self.counts.writes += 1
        for tries in range(WRITE_ATTEMPTS):
            workspace_id = await attempt()  # type: ignore[misc]
            if workspace_id is not None:
                self.acknowledged[request_id] = str(workspace_id)
                return
            self.counts.failed_write_attempts += 1
            await asyncio.sleep(0.2 * (tries + 1))
        self.counts.failed_writes += 1


@dataclass
class Cluster:
    server: ServerProcess
    envoy: ServerProcess
    admin_port: int

    def own_target(self, index: int) -> str:
        return f"127.0.0.1:{self.server.port + 1 + index}"

    def pid_of(self, index: int) -> int | None:
        """The pid of the process serving on port GRPC_PORT + 1 + index, from its last `serving` line."""
        own_port = self.server.port + 1 + index
        pid = None
        for line in self.server.log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == "serving" and entry.get("own_port") == own_port:
                pid = int(entry["pid"])
        return pid

    def retry_stats(self) -> str:
        """Envoy's counts of retries, connection failures and ejections (printed with the results)."""
        stats = httpx.get(f"http://127.0.0.1:{self.admin_port}/stats", timeout=5).text.splitlines()
        wanted = ("upstream_rq_retry", "upstream_cx_connect_fail", "ejections_enforced_total", "health_check.failure")
        return ", ".join(
            line.removeprefix("cluster.grpc_server.")
            for line in stats
            if line.startswith("cluster.grpc_server.") and any(name in line for name in wanted)
        )

    def all_healthy(self) -> bool:
        return _healthy_endpoints(self.admin_port) == WORKERS


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("rolling")
    server = start_server_processes(settings, tmp, WORKERS, GRPC_DRAIN_SECONDS=DRAIN_SECONDS)
    admin = free_port()
    envoy = start_envoy(
        settings,
        tmp,
        upstream_port=None,
        GRPC_WORKERS=str(WORKERS),
        GRPC_PORT=str(server.port),
        ENVOY_ADMIN_PORT=str(admin),
    )
    cluster = Cluster(server=server, envoy=envoy, admin_port=admin)
    try:
        wait_until(cluster.all_healthy, what="healthy endpoints", process=envoy.process, log=envoy.log)
        yield cluster
    finally:
        envoy.stop()
        assert server.stop() == 0, server.log.read_text()[-4000:]


async def _started_load(cluster: Cluster, infrastructure: Infrastructure) -> tuple[Load, asyncio.Task[None]]:
    caller = await make_caller(infrastructure, superuser=True)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cluster.envoy.port}", headers=caller.headers) as http:
        created = await http.post("/api/workspaces", json={"name": "Read me"})
        assert created.status_code == 200, created.text
    load = Load(envoy_port=cluster.envoy.port, caller=caller, workspace_id=created.json()["workspace"]["id"])
    return load, asyncio.create_task(load.run())


async def _calls_pass(load: Load, count: int) -> None:
    target = load.finished + count
    await waits.eventually(lambda: load.finished >= target, within=60, what=f"{count} more calls")


async def _replaced(cluster: Cluster, load: Load, index: int, old_pid: int) -> None:
    """Until process `index` runs again under a new pid, serves, and Envoy has both endpoints healthy."""

    def back() -> bool:
        pid = cluster.pid_of(index)
        return pid is not None and pid != old_pid and _serving(cluster.own_target(index)) and cluster.all_healthy()

    await waits.eventually(
        lambda: asyncio.to_thread(back), within=90, what=f"server process {index} replaced and healthy"
    )
    load.note(f"process {index} replaced and healthy")


async def _writes_in_database(infrastructure: Infrastructure, load: Load) -> tuple[int, int]:
    """(acknowledged writes missing from the database, request_ids with more than one workspace)."""
    async with infrastructure.engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT name, count(*) FROM workspaces WHERE name LIKE 'rolling-%' GROUP BY name")
            )
        ).all()
    per_name = {str(name): int(count) for name, count in rows}
    lost = sum(1 for request_id in load.acknowledged if request_id not in per_name)
    doubled = sum(1 for count in per_name.values() if count > 1)
    return lost, doubled


def _report(title: str, load: Load, lost: int, doubled: int, **extra: int) -> str:
    c = load.counts
    fields = {
        "calls": load.finished,
        "reads": c.reads,
        "failed reads": c.failed_reads,
        "writes": c.writes,
        "failed write attempts": c.failed_write_attempts,
        "failed writes": c.failed_writes,
        "lost writes": lost,
        "doubled writes": doubled,
        **extra,
    }
    return f"{title}: " + ", ".join(f"{name} {value}" for name, value in fields.items())


async def test_restarting_every_server_process_in_turn_fails_no_call(
    cluster: Cluster, infrastructure: Infrastructure
) -> None:
    load, running = await _started_load(cluster, infrastructure)
    try:
        await _calls_pass(load, SETTLE_CALLS)
        for index in range(WORKERS):
            pid = cluster.pid_of(index)
            assert pid is not None
            os.kill(pid, signal.SIGTERM)
            load.note(f"SIGTERM to process {index}")
            await _replaced(cluster, load, index, pid)
            await _calls_pass(load, SETTLE_CALLS)
    finally:
        load.stop()
        await running
    lost, doubled = await _writes_in_database(infrastructure, load)
    print(_report("rolling restart (SIGTERM each process in turn)", load, lost, doubled))
    print(f"Envoy: {cluster.retry_stats()}")
    assert load.counts.failed_reads == 0, load.counts.errors
    assert load.counts.failed_write_attempts == 0, load.counts.errors
    assert (lost, doubled) == (0, 0)
    assert len(load.acknowledged) == load.counts.writes


async def test_killing_a_server_process_fails_at_most_the_calls_in_flight_on_it(
    cluster: Cluster, infrastructure: Infrastructure
) -> None:
    await waits.eventually(lambda: asyncio.to_thread(cluster.all_healthy), within=60, what="healthy endpoints")
    load, running = await _started_load(cluster, infrastructure)
    try:
        await _calls_pass(load, SETTLE_CALLS)
        pid = cluster.pid_of(0)
        assert pid is not None
        # Every call in flight on the client's side: those on the killed process are among them.
        in_flight = load.in_flight
        os.kill(pid, signal.SIGKILL)
        load.note("SIGKILL to process 0")
        await _replaced(cluster, load, 0, pid)
        await _calls_pass(load, SETTLE_CALLS)
    finally:
        load.stop()
        await running
    lost, doubled = await _writes_in_database(infrastructure, load)
    print(_report("SIGKILL of one process", load, lost, doubled, **{"calls in flight at the kill": in_flight}))
    print(f"Envoy: {cluster.retry_stats()}")
    assert load.counts.failed_reads == 0, load.counts.errors
    assert load.counts.failed_write_attempts <= in_flight, load.counts.errors
    assert load.counts.failed_writes == 0, load.counts.errors
    assert (lost, doubled) == (0, 0)
