"""Health tells the truth: NOT_SERVING while PostgreSQL is unreachable (the process still alive to
the liveness service); SIGTERM turns it NOT_SERVING while the server still answers for GRPC_DRAIN_SECONDS."""

import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.embedded import free_port
from server.app import LIVENESS_SERVICE
from server.config import Settings
from tests.e2e.conftest import ADPLANE, stack_env, start_server
from tests.waits import eventually

pytestmark = pytest.mark.usefixtures("infrastructure")

NOT_SERVING: int = health_pb2.HealthCheckResponse.NOT_SERVING


async def _status(target: str, service: str = "") -> int | None:
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            reply = await health_pb2_grpc.HealthStub(channel).Check(request, timeout=1)
        except grpc.aio.AioRpcError:
            return None
    return int(reply.status)


def _spawn(settings: Settings, port: int, database_url: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [ADPLANE, "serve"],
        env=stack_env(settings, GRPC_PORT=str(port), GRPC_HOST="127.0.0.1", DATABASE_URL=database_url),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


async def test_not_serving_while_postgres_is_unreachable(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    unreachable = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    log = tmp_path / "server.log"
    process = _spawn(settings, port, unreachable, log)
    try:
        statuses: list[int | None] = []

        async def answered_not_serving() -> bool:
            statuses.append(await _status(f"127.0.0.1:{port}"))
            return statuses[-1] == NOT_SERVING

        await eventually(
            answered_not_serving, within=20, what="NOT_SERVING", every=0.2, detail=lambda: log.read_text()[-2000:]
        )
        assert health_pb2.HealthCheckResponse.SERVING not in statuses
        # Alive all the same: the kubelet's liveness probe must not restart it for the database's outage.
        assert await _status(f"127.0.0.1:{port}", LIVENESS_SERVICE) == health_pb2.HealthCheckResponse.SERVING
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_sigterm_drains_not_serving_before_stopping(settings: Settings, tmp_path: Path) -> None:
    server = start_server(settings, tmp_path, GRPC_DRAIN_SECONDS="2")
    assert await _status(server.target) == health_pb2.HealthCheckResponse.SERVING

    server.process.terminate()

    async def not_serving() -> bool:
        return await _status(server.target) == NOT_SERVING

    # At once, well within the drain pause (GRPC_DRAIN_SECONDS) that the server then waits out.
    await eventually(not_serving, within=1, what="NOT_SERVING after SIGTERM")
    assert server.process.poll() is None  # still draining
    assert server.stop() == 0
