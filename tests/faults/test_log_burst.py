"""A burst of logged errors does not stall the server, and the same error is written once per interval.

The server runs with the development console renderer against a PostgreSQL that is not there, so
every call fails with a logged UNAVAILABLE while health checks keep being asked on the side.
"""

import asyncio
import datetime as dt
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adplane.v1 import workspace_service_pb2 as pb
from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceStub
from devstack.embedded import free_port
from server.auth.tokens import TokenIssuer
from server.config import Settings
from tests.e2e.conftest import ADPLANE, ServerProcess, stack_env, wait_until

if TYPE_CHECKING:  # the async stub types exist only in the .pyi
    from grpc_health.v1.health_pb2_grpc import HealthAsyncStub

    from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceAsyncStub

BURST_SECONDS = 3.0
IN_FLIGHT = 32
REPEAT_SECONDS = 1.0
# A health check must answer within this, burst or not (the rich tracebacks took 1.2 s each).
HEALTH_WITHIN = 2.0


def _start_server_without_database(settings: Settings, tmp_path: Path, nowhere: Path) -> ServerProcess:
    # Health is NOT_SERVING without PostgreSQL; the server is up once health answers at all.
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"
    process = subprocess.Popen(
        [ADPLANE, "serve"],
        env=stack_env(
            settings,
            GRPC_PORT=str(port),
            GRPC_HOST="127.0.0.1",
            DATABASE_URL=f"postgresql+asyncpg://postgres@/adplane?host={nowhere}",
            LOG_FORMAT="console",
            LOG_REPEAT_SECONDS=str(REPEAT_SECONDS),
        ),
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = ServerProcess(process=process, port=port, log=log_path)
    wait_until(lambda: _health_answers(server.target), what="adplane serve", process=process, log=log_path)
    return server


def _health_answers(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return True


async def test_a_burst_of_errors_leaves_health_checks_answering_and_collapses_repeats(
    settings: Settings, tmp_path: Path
) -> None:
    nowhere = tmp_path / "no-postgres-here"
    nowhere.mkdir()
    server = _start_server_without_database(settings, tmp_path, nowhere)
    token = (
        TokenIssuer(
            secret_key=settings.secret_key.get_secret_value(),
            access_ttl=dt.timedelta(minutes=5),
            refresh_ttl=dt.timedelta(days=1),
        )
        .issue_access(user_id=uuid.uuid4(), family_id=uuid.uuid4(), now=dt.datetime.now(dt.UTC))
        .token
    )
    metadata = (("authorization", f"Bearer {token}"),)
    codes: dict[str, int] = {}
    health_latencies: list[float] = []
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            workspaces: WorkspaceServiceAsyncStub = WorkspaceServiceStub(channel)
            health: HealthAsyncStub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + BURST_SECONDS

            async def fail_repeatedly() -> None:
                while time.monotonic() < deadline:
                    try:
                        await workspaces.GetWorkspace(
                            pb.GetWorkspaceRequest(workspace_id=str(uuid.uuid4())), metadata=metadata, timeout=10
                        )
                    except grpc.aio.AioRpcError as error:
                        codes[error.code().name] = codes.get(error.code().name, 0) + 1
                    else:
                        codes["OK"] = codes.get("OK", 0) + 1

            async def check_health() -> None:
                while time.monotonic() < deadline:
                    started = time.monotonic()
                    await health.Check(health_pb2.HealthCheckRequest(), timeout=HEALTH_WITHIN)
                    health_latencies.append(time.monotonic() - started)
                    await asyncio.sleep(0.05)

            await asyncio.gather(check_health(), *(fail_repeatedly() for _ in range(IN_FLIGHT)))
    finally:
        assert server.stop() == 0
    log = server.log.read_text()

    written = len(re.findall(r"\] dependency unavailable +\[", log))
    repeated = sum(int(n) for n in re.findall(r"dependency unavailable \(repeated\).* repeated=(\d+)", log))
    tracebacks = log.count("Traceback (most recent call last)")
    print(
        f"\ncalls: {codes}; health checks: {len(health_latencies)}, slowest {max(health_latencies):.3f}s; "
        f"log: {written} lines with traceback + {repeated} counted repeats; {tracebacks} tracebacks"
    )
    assert set(codes) == {"UNAVAILABLE"}
    assert len(health_latencies) >= BURST_SECONDS / (HEALTH_WITHIN + 0.05)
    # Every failed call is accounted for: written in full once per interval, the rest counted.
    assert written + repeated == codes["UNAVAILABLE"]
    assert written <= BURST_SECONDS / REPEAT_SECONDS + 2
    assert tracebacks == written
