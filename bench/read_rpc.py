"""Benchmark: "get one ad account of my workspace" (authenticate, authorize, fetch, convert) under load.

    .venv/bin/python -m bench.read_rpc [--seconds 10] [--concurrency 64]

Starts a throwaway embedded PostgreSQL (migrated), seeds a workspace with 100 ad accounts and a
member, then runs `adplane serve` (one process, then one per core) and Envoy, and has
`--concurrency` callers ask for accounts as fast as they can: over gRPC straight to the server and
over REST through Envoy. Prints requests per second and latency percentiles.

The callers run on the same machine (Python, grpc.aio and httpx), so on 2 cores they compete with
the server for CPU: the figures are a floor, not the server's ceiling.
"""

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import httpx
from pydantic import SecretStr

from adplane.v1 import account_service_pb2 as pb
from adplane.v1.account_service_pb2_grpc import AccountServiceStub
from devstack.embedded import free_port, start_postgres
from server import migrations
from server.accounts.models import Account, AccountStatus, MetaAccountStatus
from server.auth.schemas import LoginRequestSchema
from server.business_managers.models import (
    BusinessManager,
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.composition import Infrastructure
from server.config import Environment, Settings
from server.users.schemas import UserCreateRequestSchema
from server.workspaces.models import WorkspaceRole, WorkspaceUser
from server.workspaces.schemas import WorkspaceCreateRequestSchema

ADPLANE = str(Path(sys.executable).parent / "adplane")
PASSWORD = "benchmark password 123"


async def _seed(settings: Settings) -> tuple[str, list[str], str]:
    """(workspace id, account ids, access token of a member)."""
    infrastructure = Infrastructure.build(settings)
    try:
        async with infrastructure.unit_of_work() as uow:
            workspace = await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name="Bench"))
            user = await uow.users.create_user(
                UserCreateRequestSchema.model_validate({"email": "bench@example.com", "password": PASSWORD})
            )
            uow.session.add(WorkspaceUser(workspace_id=workspace.id, user_id=user.id, role=WorkspaceRole.MEMBER))
            manager = BusinessManager(
                meta_business_id="1",
                name="Bench BM",
                ownership=BusinessManagerOwnership.PLATFORM,
                status=BusinessManagerStatus.ACTIVE,
                verification_status=BusinessVerificationStatus.VERIFIED,
            )
            uow.session.add(manager)
            await uow.session.flush()
            accounts = [
                Account(
                    workspace_id=workspace.id,
                    business_manager_id=manager.id,
                    meta_account_id=f"act_{n}",
                    name=f"Account {n}",
                    currency="EUR",
                    timezone="Europe/Berlin",
                    spend_cap_minor=100_000,
                    amount_spent_minor=n * 100,
                    status=AccountStatus.ACTIVE,
                    meta_status=MetaAccountStatus.ACTIVE,
                )
                for n in range(100)
            ]
            uow.session.add_all(accounts)
            await uow.session.flush()
            account_ids = [str(a.id) for a in accounts]
        async with infrastructure.unit_of_work() as uow:
            tokens = await uow.auth.login(
                LoginRequestSchema(email="bench@example.com", password=PASSWORD), address="bench"
            )
        return str(workspace.id), account_ids, tokens.access_token
    finally:
        await infrastructure.close()


def _wait_for_port(port: int, *, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


async def _load(call: Callable[[int], Awaitable[None]], *, concurrency: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def caller(offset: int) -> None:
        n = offset
        while time.monotonic() < deadline:
            started = time.perf_counter()
            await call(n)
            latencies.append(time.perf_counter() - started)
            n += concurrency

    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    return latencies


def _cpu_seconds(root: int) -> float:
    """User + system CPU time of a process and its children (the server's worker processes)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [root]
    children = Path(f"/proc/{root}/task/{root}/children")
    if children.exists():
        pids += [int(pid) for pid in children.read_text().split()]
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _report(label: str, latencies: list[float], seconds: float, *, server_cpu: float) -> None:
    ordered = sorted(latencies)

    def p(quantile: float) -> float:
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1000

    print(
        f"{label:<34} {len(latencies) / seconds:8.0f} req/s   p50 {p(0.5):6.1f} ms   p99 {p(0.99):6.1f} ms"
        f"   mean {statistics.fmean(latencies) * 1000:6.1f} ms"
        f"   server CPU {server_cpu / len(latencies) * 1000:5.2f} ms/request",
        flush=True,
    )


async def _run(settings: Settings, env: dict[str, str], args: argparse.Namespace) -> None:
    workspace_id, account_ids, token = await _seed(settings)
    metadata = (("authorization", f"Bearer {token}"),)
    for workers in (1, os.cpu_count() or 1):
        grpc_port, http_port, admin_port = free_port(), free_port(), free_port()
        server_env = {**env, "GRPC_PORT": str(grpc_port), "GRPC_WORKERS": str(workers), "LOG_LEVEL": "WARNING"}
        server = subprocess.Popen([ADPLANE, "serve"], env=server_env)
        envoy = subprocess.Popen(
            [ADPLANE, "envoy"],
            env={**server_env, "HTTP_PORT": str(http_port), "ENVOY_ADMIN_PORT": str(admin_port)},
        )
        try:
            _wait_for_port(grpc_port)
            _wait_for_port(http_port)
            await asyncio.sleep(1)
            channels = [grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") for _ in range(4)]
            stubs = [AccountServiceStub(channel) for channel in channels]

            async def grpc_call(n: int) -> None:
                await stubs[n % len(stubs)].GetAccount(
                    pb.GetAccountRequest(workspace_id=workspace_id, account_id=account_ids[n % len(account_ids)]),
                    metadata=metadata,
                )

            await _load(grpc_call, concurrency=8, seconds=1)  # warm up
            cpu = _cpu_seconds(server.pid)
            latencies = await _load(grpc_call, concurrency=args.concurrency, seconds=args.seconds)
            _report(
                f"gRPC, {workers} server process(es)",
                latencies,
                args.seconds,
                server_cpu=_cpu_seconds(server.pid) - cpu,
            )
            for channel in channels:
                await channel.close()

            limits = httpx.Limits(max_connections=args.concurrency)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", limits=limits) as http:
                headers = {"authorization": f"Bearer {token}"}

                async def rest_call(n: int) -> None:
                    response = await http.get(
                        f"/api/workspaces/{workspace_id}/accounts/{account_ids[n % len(account_ids)]}", headers=headers
                    )
                    response.raise_for_status()

                await _load(rest_call, concurrency=8, seconds=1)
                cpu = _cpu_seconds(server.pid)
                latencies = await _load(rest_call, concurrency=args.concurrency, seconds=args.seconds)
                _report(
                    f"REST via Envoy, {workers} process(es)",
                    latencies,
                    args.seconds,
                    server_cpu=_cpu_seconds(server.pid) - cpu,
                )
        finally:
            for process in (envoy, server):
                process.terminate()
                process.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.read_rpc", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        postgres = start_postgres(Path(tmp) / "pg", ephemeral=True)
        try:
            url = postgres.create_database("bench")
            secret = uuid.uuid4().hex * 2
            settings = Settings(
                _env_file=None,
                environment=Environment.TEST,
                database_url=url,
                secret_key=SecretStr(secret),
                data_dir=Path(tmp) / "data",
            )
            migrations.upgrade(settings)
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "SECRET_KEY": secret,
                "ENVIRONMENT": "test",
                "DATA_DIR": str(settings.data_dir),
            }
            asyncio.run(_run(settings, env, args))
        finally:
            postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
