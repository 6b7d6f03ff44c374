"""Envoy spreads REST load over every server process: `adplane serve --workers 2` gives each
process a port of its own, and Envoy's cluster has one endpoint per process."""

import asyncio
from pathlib import Path

import httpx

from devstack.embedded import free_port
from server.composition import Infrastructure
from server.config import Settings
from tests.callers import make_caller
from tests.e2e.conftest import ServerProcess, start_envoy, start_server_processes, wait_until

WORKERS = 2
CALLS = 200


def _requests_per_endpoint(admin_port: int) -> dict[str, int]:
    text = httpx.get(f"http://127.0.0.1:{admin_port}/clusters").text
    counts = {}
    for line in text.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == "grpc_server" and parts[2] == "rq_total":
            counts[parts[1]] = int(parts[3])
    return counts


def _healthy_endpoints(admin_port: int) -> int:
    text = httpx.get(f"http://127.0.0.1:{admin_port}/clusters").text
    return sum(
        1 for line in text.splitlines() if line.startswith("grpc_server::") and "::health_flags::healthy" in line
    )


async def test_rest_load_reaches_every_server_process(
    settings: Settings, infrastructure: Infrastructure, tmp_path: Path
) -> None:
    server = start_server_processes(settings, tmp_path, WORKERS)
    port = server.port
    envoy: ServerProcess | None = None
    try:
        admin = free_port()
        envoy = start_envoy(
            settings,
            tmp_path,
            upstream_port=None,
            GRPC_WORKERS=str(WORKERS),
            GRPC_PORT=str(port),
            ENVOY_ADMIN_PORT=str(admin),
        )
        wait_until(
            lambda: _healthy_endpoints(admin) == WORKERS, what="healthy endpoints", process=envoy.process, log=envoy.log
        )
        caller = await make_caller(infrastructure)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{envoy.port}") as http:

            async def call() -> int:
                return (await http.get("/api/auth/me", headers=caller.headers)).status_code

            for _ in range(CALLS // 8):
                assert set(await asyncio.gather(*(call() for _ in range(8)))) == {200}
        counts = _requests_per_endpoint(admin)
        assert sorted(counts) == sorted(f"127.0.0.1:{own}" for own in range(port + 1, port + 1 + WORKERS))
        assert sum(counts.values()) >= CALLS
        # Within 25 % of each other: every process does its share, none idles beside a busy one.
        assert min(counts.values()) >= 0.75 * max(counts.values()), counts
    finally:
        if envoy is not None:
            envoy.stop()
        assert server.stop() == 0
