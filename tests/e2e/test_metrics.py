"""Metrics of a real stack: two server processes behind Envoy, scraped after real calls.

The server's parent process serves the sum over its processes (prometheus-client multiprocess
mode); Envoy serves its own stats on a listener that exposes nothing else of its admin interface.
"""

import asyncio
import socket
from pathlib import Path

import grpc
import httpx
import pytest

from adplane.v1 import auth_service_pb2, workspace_service_pb2
from adplane.v1.auth_service_pb2_grpc import AuthServiceStub
from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceStub
from devstack.embedded import free_port
from server.composition import Infrastructure
from server.config import Settings
from tests.callers import make_caller
from tests.e2e.conftest import start_envoy, start_server, start_server_processes, wait_until
from tests.scrape import parse, scrape, total

WORKERS = 2
REST_CALLS = 40
GRPC_CALLS = 30
AUTH = {"grpc_service": "adplane.v1.AuthService", "grpc_method": "GetCurrentUser"}


async def test_server_and_envoy_metrics_count_the_calls_of_every_process(
    settings: Settings, infrastructure: Infrastructure, tmp_path: Path
) -> None:
    metrics_port, envoy_metrics_port = free_port(), free_port()
    server = start_server_processes(settings, tmp_path, WORKERS, SERVER_METRICS_PORT=str(metrics_port))
    envoy = None
    try:
        envoy = start_envoy(
            settings,
            tmp_path,
            upstream_port=None,
            GRPC_WORKERS=str(WORKERS),
            GRPC_PORT=str(server.port),
            ENVOY_METRICS_PORT=str(envoy_metrics_port),
        )
        server_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        before = scrape(server_metrics)
        caller = await make_caller(infrastructure)

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{envoy.port}") as http:
            replies = await asyncio.gather(
                *(http.get("/api/auth/me", headers=caller.headers) for _ in range(REST_CALLS))
            )
            assert {reply.status_code for reply in replies} == {200}
            refused = await http.get("/api/auth/me")
            assert refused.status_code == 401
        async with grpc.aio.insecure_channel(server.target) as channel:
            auth = AuthServiceStub(channel)
            for _ in range(GRPC_CALLS):
                await auth.GetCurrentUser(auth_service_pb2.GetCurrentUserRequest(), metadata=caller.metadata)
            with pytest.raises(grpc.aio.AioRpcError) as refused_id:
                await WorkspaceServiceStub(channel).GetWorkspace(
                    workspace_service_pb2.GetWorkspaceRequest(workspace_id="not-a-uuid"), metadata=caller.metadata
                )
            assert refused_id.value.code() is grpc.StatusCode.INVALID_ARGUMENT

        after = scrape(server_metrics)

        def moved(name: str, **labels: str) -> float:
            return total(after, name, **labels) - total(before, name, **labels)

        calls = REST_CALLS + GRPC_CALLS
        # Both processes served calls (Envoy balances over them), and the parent adds them up.
        assert moved("grpc_server_handled_total", grpc_code="OK", grpc_type="unary", **AUTH) == calls
        assert moved("grpc_server_handled_total", grpc_code="UNAUTHENTICATED", **AUTH) == 1
        assert moved("grpc_server_started_total", **AUTH) == calls + 1
        assert moved("grpc_server_handling_seconds_count", **AUTH) == calls + 1
        assert moved("grpc_server_handling_seconds_sum", **AUTH) > 0
        assert total(after, "grpc_server_in_flight", **AUTH) == 0
        assert moved("grpc_server_handled_total", grpc_method="GetWorkspace", grpc_code="INVALID_ARGUMENT") == 1
        # The database pool: every authenticated call checked out a connection and gave it back.
        assert moved("adplane_db_pool_checkouts_total") >= calls
        assert total(after, "adplane_db_pool_connections_in_use") == 0
        assert total(after, "adplane_db_pool_connections_open") >= WORKERS
        pools = settings.database_pool_size + settings.database_max_overflow + settings.database_read_pool_size
        limit = WORKERS * pools
        assert total(after, "adplane_db_pool_connections_limit") == limit

        # Outside production every metrics listener binds loopback only (METRICS_HOST).
        assert listening_addresses(metrics_port) == listening_addresses(envoy_metrics_port) == {"127.0.0.1"}

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{envoy_metrics_port}") as envoy_metrics:
            stats = await envoy_metrics.get("/stats/prometheus")
            assert stats.status_code == 200
            scraped = parse(stats.text)
            assert total(scraped, "envoy_cluster_upstream_rq_total", envoy_cluster_name="grpc_server") >= REST_CALLS
            # The metrics listener is not the admin interface: nothing else of it is reachable there.
            for path in ("/ready", "/quitquitquit", "/logging", "/stats"):
                assert (await envoy_metrics.post(path)).status_code == 404, path
            assert (await envoy_metrics.post("/stats/prometheus")).status_code == 404
    finally:
        if envoy is not None:
            envoy.stop()
        assert server.stop() == 0, server.log.read_text()[-4000:]


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on `port`, IPv4 and IPv6 (/proc/net)."""
    found: set[str] = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word of the address in host (little-endian) order.
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, packed))
    return found


async def test_a_taken_metrics_port_does_not_keep_the_server_from_serving(settings: Settings, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = start_server(settings, tmp_path, SERVER_METRICS_PORT=str(port), METRICS_HOST="127.0.0.1")
        try:
            wait_until(
                lambda: "metrics endpoint not started" in server.log.read_text(),
                what="the logged refusal",
                process=server.process,
                log=server.log,
            )
        finally:
            assert server.stop() == 0
