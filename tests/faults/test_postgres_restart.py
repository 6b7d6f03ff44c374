"""PostgreSQL stops and comes back while the real server and Envoy are under load.

The test runs a PostgreSQL of its own (the session's shared one is not disturbed) under a bounded
load of reads (through SQLAlchemy's engine and through the read pool) and writes over REST and gRPC,
stops it with `pg_ctl stop -m fast` until every client has been refused, and starts it again. Every call must end
200/OK or 503/UNAVAILABLE (never 500, never a client timeout), the same server process must serve
again once the database is back, and a write whose outcome the caller did not see, retried with its
request_id, must exist exactly once.
"""

import asyncio
import collections
import math
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import func, select

from adplane.v1 import workspace_pb2
from adplane.v1 import workspace_service_pb2 as pb
from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceStub
from devstack.embedded import EmbeddedPostgres, start_postgres
from server import migrations
from server.composition import Infrastructure
from server.config import Settings
from server.workspaces.models import Workspace
from tests.callers import Caller, make_caller
from tests.e2e.conftest import ServerProcess, start_envoy, start_server
from tests.waits import eventually

if TYPE_CHECKING:  # the async stub type exists only in the .pyi
    from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceAsyncStub

CALL_TIMEOUT = 5.0
# Each client pauses this long between calls: 10 clients at most ~100 calls/s in all.
PAUSE = 0.1
RECOVERY_WITHIN = 10.0


@pytest.fixture
def own_postgres(postgres_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = start_postgres(postgres_dir, ephemeral=True)
    yield server
    server.stop()


@pytest.fixture
def own_settings(settings: Settings, own_postgres: EmbeddedPostgres) -> Settings:
    database_url = own_postgres.create_database("adplane")
    own = settings.model_copy(update={"database_url": database_url})
    migrations.upgrade(own)
    return own


@pytest.fixture
async def own_infrastructure(own_settings: Settings) -> AsyncIterator[Infrastructure]:
    infrastructure = Infrastructure.build(own_settings)
    yield infrastructure
    await infrastructure.close()


@pytest.fixture
def own_stack(own_settings: Settings, tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    server = start_server(own_settings, tmp_path)
    try:
        envoy = start_envoy(own_settings, tmp_path, upstream_port=server.port)
    except BaseException:
        server.stop()
        raise
    yield server, envoy
    envoy.stop()
    server.stop()


async def _in_helper_process(postgres: EmbeddedPostgres, method: str) -> None:
    """Runs `pg_ctl` from a fresh process. Forking this one while its gRPC threads run can crash the
    child (pg_ctl runs as another user when the tests run as root, which rules out vfork)."""
    script = (
        f"import sys; from pathlib import Path; from {EmbeddedPostgres.__module__} import EmbeddedPostgres; "
        f"getattr(EmbeddedPostgres(Path(sys.argv[1]), ephemeral=True), {method!r})()"
    )
    helper = await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(postgres.pgdata))
    assert await helper.wait() == 0, f"{method} failed"


@dataclass
class Observed:
    """Outcomes by transport and status, and when each client last succeeded."""

    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    unexpected: list[str] = field(default_factory=list)
    last_success: dict[str, float] = field(default_factory=dict)
    last_refusal: dict[str, float] = field(default_factory=dict)
    retry_info_seen: bool = False
    # request_id -> attempts it took (writes only)
    writes: dict[str, int] = field(default_factory=dict)

    def record(self, client: str, transport: str, status: str, *, ok: bool) -> None:
        self.outcomes[f"{transport} {status}"] += 1
        if ok:
            self.last_success[client] = time.monotonic()
        elif status in ("503", "UNAVAILABLE"):
            self.last_refusal[client] = time.monotonic()

    def all_since(self, times: dict[str, float], clients: Iterable[str], moment: float) -> bool:
        """Whether every client has an entry in `times` after `moment`."""
        return all(times.get(client, -math.inf) > moment for client in clients)


async def _rest_reads(client: str, http: httpx.AsyncClient, path: str, seen: Observed, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            response = await http.get(path)
        except httpx.HTTPError as error:
            seen.unexpected.append(f"{client}: {type(error).__name__}")
        else:
            seen.record(client, "rest", str(response.status_code), ok=response.status_code == 200)
            if response.status_code not in (200, 503):
                seen.unexpected.append(f"{client}: {response.status_code} {response.text[:200]}")
        await asyncio.sleep(PAUSE)


async def _grpc_reads(
    client: str,
    stub: "WorkspaceServiceAsyncStub",
    caller: Caller,
    workspace_id: str,
    seen: Observed,
    stop: asyncio.Event,
) -> None:
    while not stop.is_set():
        try:
            await stub.GetWorkspace(
                pb.GetWorkspaceRequest(workspace_id=workspace_id), metadata=caller.metadata, timeout=CALL_TIMEOUT
            )
        except grpc.aio.AioRpcError as error:
            seen.record(client, "grpc", error.code().name, ok=False)
            if error.code() is not grpc.StatusCode.UNAVAILABLE:
                seen.unexpected.append(f"{client}: {error.code().name} {error.details()}")
            else:
                _note_retry_info(error, seen)
        else:
            seen.record(client, "grpc", "OK", ok=True)
        await asyncio.sleep(PAUSE)


def _note_retry_info(error: grpc.aio.AioRpcError, seen: Observed) -> None:
    status = rpc_status.from_call(error)
    if status is not None and any(detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for detail in status.details):
        seen.retry_info_seen = True


async def _rest_writes(client: str, http: httpx.AsyncClient, seen: Observed, stop: asyncio.Event) -> None:
    """Creates workspaces one after another; a 503 is retried with the same request_id."""
    while not stop.is_set():
        request_id = str(uuid.uuid4())
        seen.writes[request_id] = 0
        while True:
            seen.writes[request_id] += 1
            try:
                response = await http.post(
                    "/api/workspaces", params={"request_id": request_id}, json={"name": f"w-{request_id}"}
                )
            except httpx.HTTPError as error:
                seen.unexpected.append(f"{client}: {type(error).__name__}")
                return
            seen.record(client, "rest-write", str(response.status_code), ok=response.status_code == 200)
            if response.status_code == 200:
                break
            if response.status_code != 503:
                seen.unexpected.append(f"{client}: {response.status_code} {response.text[:200]}")
                return
            await asyncio.sleep(PAUSE)
        await asyncio.sleep(PAUSE)


async def _grpc_writes(
    client: str, stub: "WorkspaceServiceAsyncStub", caller: Caller, seen: Observed, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        request_id = str(uuid.uuid4())
        seen.writes[request_id] = 0
        while True:
            seen.writes[request_id] += 1
            try:
                await stub.CreateWorkspace(
                    pb.CreateWorkspaceRequest(
                        workspace=workspace_pb2.Workspace(name=f"w-{request_id}"), request_id=request_id
                    ),
                    metadata=caller.metadata,
                    timeout=CALL_TIMEOUT,
                )
            except grpc.aio.AioRpcError as error:
                seen.record(client, "grpc-write", error.code().name, ok=False)
                if error.code() is not grpc.StatusCode.UNAVAILABLE:
                    seen.unexpected.append(f"{client}: {error.code().name} {error.details()}")
                    return
                await asyncio.sleep(PAUSE)
            else:
                seen.record(client, "grpc-write", "OK", ok=True)
                break
        await asyncio.sleep(PAUSE)


async def test_a_postgres_restart_under_load_answers_503_and_recovers_without_losing_or_doubling_writes(
    own_postgres: EmbeddedPostgres,
    own_infrastructure: Infrastructure,
    own_stack: tuple[ServerProcess, ServerProcess],
) -> None:
    server, envoy = own_stack
    caller = await make_caller(own_infrastructure, superuser=True)
    seen = Observed()
    stop = asyncio.Event()
    async with (
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{envoy.port}", headers=caller.headers, timeout=CALL_TIMEOUT
        ) as http,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        stub: WorkspaceServiceAsyncStub = WorkspaceServiceStub(channel)
        created = await http.post("/api/workspaces", json={"name": "Readers"})
        assert created.status_code == 200, created.text
        workspace_id = created.json()["workspace"]["id"]
        clients = {
            **{
                f"rest-read-{n}": _rest_reads(f"rest-read-{n}", http, f"/api/workspaces/{workspace_id}", seen, stop)
                for n in range(3)
            },
            # Account lists run on the read pool (asyncpg), not on SQLAlchemy's engine.
            **{
                f"rest-list-{n}": _rest_reads(
                    f"rest-list-{n}", http, f"/api/workspaces/{workspace_id}/accounts", seen, stop
                )
                for n in range(2)
            },
            **{
                f"grpc-read-{n}": _grpc_reads(f"grpc-read-{n}", stub, caller, workspace_id, seen, stop)
                for n in range(3)
            },
            **{f"rest-write-{n}": _rest_writes(f"rest-write-{n}", http, seen, stop) for n in range(2)},
            **{f"grpc-write-{n}": _grpc_writes(f"grpc-write-{n}", stub, caller, seen, stop) for n in range(2)},
        }
        tasks = [asyncio.create_task(coroutine) for coroutine in clients.values()]
        try:
            started = time.monotonic()
            await eventually(
                lambda: seen.all_since(seen.last_success, clients, started), within=30, what="every client served"
            )
            await _in_helper_process(own_postgres, "stop_server")
            stopped = time.monotonic()
            # The outage lasts until every client has been refused at least once.
            await eventually(
                lambda: seen.all_since(seen.last_refusal, clients, stopped),
                within=30,
                what="every client refused during the outage",
                detail=lambda: f"{dict(seen.outcomes)}; unexpected: {seen.unexpected[:5]}",
            )
            during_outage = sum(count for key, count in seen.outcomes.items() if key.endswith(("503", "UNAVAILABLE")))
            await _in_helper_process(own_postgres, "start")
            back = time.monotonic()
            await eventually(
                lambda: seen.all_since(seen.last_success, clients, back),
                within=RECOVERY_WITHIN,
                what="every client served again",
                detail=lambda: f"last successes: {seen.last_success}",
            )
            recovered_after = time.monotonic() - back
            # ... and served again after that: the recovery holds.
            recovered = time.monotonic()
            await eventually(
                lambda: seen.all_since(seen.last_success, clients, recovered), within=30, what="recovery holding"
            )
        finally:
            stop.set()
            await asyncio.gather(*tasks)

    print(f"\noutcomes: {dict(sorted(seen.outcomes.items()))}; recovered {recovered_after:.2f}s after restart")
    assert seen.unexpected == []
    assert during_outage > 0, "no call saw the outage"
    assert seen.retry_info_seen, "UNAVAILABLE came without RetryInfo"
    assert server.process.poll() is None, "the server did not survive the outage"

    async with own_infrastructure.unit_of_work() as uow:
        rows = dict(
            (
                await uow.session.execute(
                    select(Workspace.name, func.count()).where(Workspace.name.like("w-%")).group_by(Workspace.name)
                )
            ).all()
        )
    retried = sum(1 for attempts in seen.writes.values() if attempts > 1)
    print(f"writes: {len(seen.writes)} ({retried} retried after a 503); rows: {len(rows)}")
    assert retried > 0, "no write was caught by the outage"
    duplicates = {name: count for name, count in rows.items() if count != 1}
    assert duplicates == {}
    assert set(rows) == {f"w-{request_id}" for request_id in seen.writes}
