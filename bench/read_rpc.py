"""Benchmark: the read path (GetAccount, ListAccounts) over gRPC and REST via Envoy, under load.

    .venv/bin/python -m bench.read_rpc [--seconds 10] [--in-flight 64] [--workers 2]
    .venv/bin/python -m bench.read_rpc --keyset          # page 1 vs page 200 at 1,000 and 1,000,000 rows
    .venv/bin/python -m bench.read_rpc --rate-limits     # GetAccount's server CPU with and without them
    .venv/bin/python -m bench.read_rpc --databases direct pgbouncer replica   # the same reads three ways

Starts a throwaway embedded PostgreSQL (migrated), seeds 100 workspaces x 1,000 ad accounts with
COPY (one member each, a signed-in access token per member), runs `adplane serve --workers N` and
Envoy, and loads each read with random (token, workspace, account) triples: h2load for gRPC, wrk
for REST (the README says how to install them; without them the bench says so and falls back to a
Python client, which competes with the server for CPU). For each read it prints req/s, p50/p99,
and CPU per request of the server process tree and of Envoy, read from /proc; then the p99 of
GetAccount over gRPC at half the maximum rate it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import functools
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import httpx
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from adplane.v1 import account_service_pb2 as pb
from adplane.v1.account_service_pb2_grpc import AccountServiceStub
from bench import keyset, loadgen
from bench.dataset import Dataset, seed
from devstack.embedded import (
    EmbeddedPostgres,
    free_port,
    free_port_block,
    start_postgres,
    start_redis,
    start_replica,
)
from devstack.pgbouncer import start_pgbouncer
from server import migrations
from server.auth.tokens import TokenIssuer
from server.config import Environment, Settings

ADPLANE = str(Path(sys.executable).parent / "adplane")
PY_SPY = str(Path(sys.executable).parent / "py-spy")
GET_PATH = "/adplane.v1.AccountService/GetAccount"
LIST_PATH = "/adplane.v1.AccountService/ListAccounts"
PAGE_SIZE = 50


@dataclass(frozen=True)
class Row:
    label: str
    result: loadgen.LoadResult
    server_cpu: float
    envoy_cpu: float
    # CPU seconds of each server process, to see whether the load was spread.
    per_process: list[float]

    def cells(self) -> list[str]:
        requests = max(1, self.result.requests)
        spread = (
            f"{min(self.per_process) / max(self.per_process):.2f}"
            if len(self.per_process) > 1 and max(self.per_process) > 0
            else "-"
        )
        return [
            self.label,
            f"{self.result.rate:,.0f}",
            f"{self.result.p50:.1f}",
            f"{self.result.p99:.1f}",
            f"{self.server_cpu / requests * 1000:.2f}",
            f"{self.envoy_cpu / requests * 1000:.2f}" if self.envoy_cpu else "-",
            spread,
            str(self.result.errors),
        ]


HEADER = [
    "read",
    "req/s",
    "p50 ms",
    "p99 ms",
    "server CPU ms/req",
    "Envoy CPU ms/req",
    "min/max process CPU",
    "errors (client + server log)",
]


def markdown(rows: Sequence[Row], *, title: str) -> str:
    lines = [title, "", "| " + " | ".join(HEADER) + " |", "| --- |" + " ---: |" * (len(HEADER) - 1)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def _wait_for_port(port: int, *, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


@dataclass(frozen=True)
class Triple:
    token: str
    workspace_id: str
    account_id: str


def triples(dataset: Dataset, count: int, *, rng: random.Random) -> list[Triple]:
    """`count` random (member token, their workspace, one of its accounts)."""
    picked = []
    for _ in range(count):
        member = rng.choice(dataset.members)
        account = rng.choice(dataset.accounts[member.workspace_id])
        picked.append(Triple(member.access_token, str(member.workspace_id), str(account)))
    return picked


def _grpc_calls(read: str, picked: Sequence[Triple]) -> list[loadgen.GrpcCall]:
    if read == "get":
        return [
            loadgen.GrpcCall(
                GET_PATH,
                pb.GetAccountRequest(workspace_id=t.workspace_id, account_id=t.account_id).SerializeToString(),
                t.token,
            )
            for t in picked
        ]
    return [
        loadgen.GrpcCall(
            LIST_PATH,
            pb.ListAccountsRequest(workspace_id=t.workspace_id, page_size=PAGE_SIZE).SerializeToString(),
            t.token,
        )
        for t in picked
    ]


def _http_calls(read: str, picked: Sequence[Triple]) -> list[loadgen.HttpCall]:
    if read == "get":
        return [loadgen.HttpCall(f"/api/workspaces/{t.workspace_id}/accounts/{t.account_id}", t.token) for t in picked]
    return [
        loadgen.HttpCall(f"/api/workspaces/{t.workspace_id}/accounts?page_size={PAGE_SIZE}", t.token) for t in picked
    ]


async def _check(grpc_port: int, http_port: int, picked: Sequence[Triple]) -> None:
    """Every triple answers OK over both transports (h2load cannot see gRPC errors)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = AccountServiceStub(channel)
        for t in picked:
            metadata = (("authorization", f"Bearer {t.token}"),)
            await stub.GetAccount(
                pb.GetAccountRequest(workspace_id=t.workspace_id, account_id=t.account_id), metadata=metadata
            )
            listed = await stub.ListAccounts(
                pb.ListAccountsRequest(workspace_id=t.workspace_id, page_size=PAGE_SIZE), metadata=metadata
            )
            assert len(listed.accounts) == PAGE_SIZE, "the dataset has fewer accounts than a page"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
        for call in _http_calls("get", picked[:4]) + _http_calls("list", picked[:4]):
            (await http.get(call.path, headers={"authorization": f"Bearer {call.token}"})).raise_for_status()


class Stack:
    """`adplane serve --workers N` and Envoy, on free ports, for the length of a `with` block."""

    def __init__(
        self, env: dict[str, str], *, workers: int, log_dir: Path, server_command: Sequence[str] = (ADPLANE, "serve")
    ) -> None:
        # The server's warnings and errors: h2load cannot see a gRPC error (HTTP 200, status in a
        # trailer), so the bench counts what the server logged during each run instead.
        log_dir.mkdir(parents=True, exist_ok=True)
        self.server_log = log_dir / "server.log"
        # The shared port and each process's own (the next `workers` ports) must be free.
        self.grpc_port, self.http_port, self.admin_port = free_port_block(workers), free_port(), free_port()
        self.env = {
            **env,
            "GRPC_PORT": str(self.grpc_port),
            "GRPC_WORKERS": str(workers),
            "HTTP_PORT": str(self.http_port),
            "ENVOY_ADMIN_PORT": str(self.admin_port),
            "ENVOY_METRICS_PORT": str(free_port()),
            "LOG_LEVEL": "WARNING",
        }
        self.workers = workers
        self.server_command = list(server_command)

    @contextmanager
    def running(self) -> Iterator[Stack]:
        server = subprocess.Popen(
            self.server_command, env=self.env, stdout=self.server_log.open("wb"), stderr=subprocess.STDOUT
        )
        envoy = subprocess.Popen([ADPLANE, "envoy"], env=self.env)
        self.server_pid, self.envoy_pid = server.pid, envoy.pid
        try:
            _wait_for_port(self.grpc_port)
            _wait_for_port(self.http_port)
            time.sleep(3)  # Envoy's first health checks mark the upstreams healthy
            yield self
        finally:
            for process in (envoy, server):
                process.terminate()
                process.wait(timeout=60)

    def logged_problems(self) -> int:
        """Warning and error lines the server has logged so far."""
        if not self.server_log.exists():
            return 0
        return len(_PROBLEM.findall(self.server_log.read_text(errors="replace")))

    def server_processes(self) -> dict[int, float]:
        found = loadgen.process_cpu(self.server_pid)
        if len(found) > 1:
            # The supervising parent does no work; the workers (and multiprocessing's helper) do.
            found.pop(self.server_pid, None)
        return found


_PROBLEM = re.compile(r"\[(warning|error|critical) *\]|\"level\": *\"(warning|error|critical)\"")


def _measure(
    stack: Stack, label: str, run: Callable[[], loadgen.LoadResult], *, profile: Path | None = None, seconds: float = 0
) -> Row:
    problems = stack.logged_problems()
    before_server, before_envoy = stack.server_processes(), loadgen.cpu_seconds(stack.envoy_pid)
    with profiled(stack, label, into=profile, seconds=seconds):
        result = run()
    after_server, after_envoy = stack.server_processes(), loadgen.cpu_seconds(stack.envoy_pid)
    time.sleep(0.2)  # the server's log writer thread catches up
    logged = stack.logged_problems() - problems
    if logged:
        result = dataclasses.replace(result, errors=result.errors + logged)
    per_process = sorted((after_server[pid] - before_server.get(pid, 0.0) for pid in after_server), reverse=True)
    return Row(
        label=label,
        result=result,
        server_cpu=sum(per_process),
        envoy_cpu=after_envoy - before_envoy,
        # The busiest `workers` processes are the workers (multiprocessing's helper idles).
        per_process=per_process[: stack.workers] if stack.workers > 1 else [],
    )


@contextmanager
def profiled(stack: Stack, label: str, *, into: Path | None, seconds: float) -> Iterator[None]:
    """py-spy samples every server process while the block runs (nothing when `into` is None):
    one collapsed-stack file per process, `<read>-<pid>.txt`, for flamegraph.pl or speedscope."""
    if into is None:
        yield
        return
    into.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    samplers = [
        subprocess.Popen(
            [
                PY_SPY,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(seconds))),
                "--rate",
                "250",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(into / f"{name}-{pid}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in stack.server_processes()
    ]
    try:
        yield
    finally:
        for sampler in samplers:
            sampler.wait(timeout=seconds + 60)


def _python_grpc(
    stack: Stack, calls: Sequence[loadgen.GrpcCall], *, in_flight: int, seconds: float, rate: float | None = None
) -> loadgen.LoadResult:
    async def run() -> loadgen.LoadResult:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.grpc_port}") as channel:

            async def one(n: int) -> bool:
                call = calls[n % len(calls)]
                method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(call.path)
                try:
                    await method(call.message, metadata=(("authorization", f"Bearer {call.token}"),))
                except grpc.aio.AioRpcError:
                    return False
                return True

            return await loadgen.python_load(one, in_flight=in_flight, seconds=seconds, rate=rate)

    return asyncio.run(run())


def _python_http(
    stack: Stack, calls: Sequence[loadgen.HttpCall], *, in_flight: int, seconds: float
) -> loadgen.LoadResult:
    async def run() -> loadgen.LoadResult:
        limits = httpx.Limits(max_connections=in_flight)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.http_port}", limits=limits) as http:

            async def one(n: int) -> bool:
                call = calls[n % len(calls)]
                response = await http.get(call.path, headers={"authorization": f"Bearer {call.token}"})
                return response.is_success

            return await loadgen.python_load(one, in_flight=in_flight, seconds=seconds)

    return asyncio.run(run())


def run_reads(stack: Stack, dataset: Dataset, args: argparse.Namespace) -> list[Row]:
    rng = random.Random(args.seed)  # noqa: S311 - reproducible picks, not secrets
    c_generators = loadgen.have_c_generators() and not args.python_client
    if not c_generators:
        print(
            "h2load and/or wrk not found (or --python-client): falling back to the Python client, which\n"
            f"runs on the same cores as the server; figures are a floor. Install them: {loadgen.INSTALL_HINT}",
            flush=True,
        )
    # h2load: one process (one triple) per 4 streams; wrk and the Python client: a pool of triples.
    grpc_triples = triples(dataset, max(1, args.in_flight // 4), rng=rng)
    http_triples = triples(dataset, 4096, rng=rng)
    asyncio.run(_check(stack.grpc_port, stack.http_port, grpc_triples[:16]))
    rows: list[Row] = []
    for read, name in (("get", "GetAccount"), ("list", f"ListAccounts ({PAGE_SIZE})")):
        if read not in args.reads:
            continue
        grpc_calls = _grpc_calls(read, grpc_triples if c_generators else http_triples)
        http_calls = _http_calls(read, http_triples)

        def grpc_run(rate: float | None = None, seconds: float = args.seconds) -> loadgen.LoadResult:
            if c_generators:
                return loadgen.h2load(stack.grpc_port, grpc_calls, in_flight=args.in_flight, seconds=seconds, rate=rate)
            return _python_grpc(stack, grpc_calls, in_flight=args.in_flight, seconds=seconds, rate=rate)

        def http_run() -> loadgen.LoadResult:
            if c_generators:
                return loadgen.wrk(stack.http_port, http_calls, in_flight=args.in_flight, seconds=args.seconds)
            return _python_http(stack, http_calls, in_flight=args.in_flight, seconds=args.seconds)

        # Warm up (connections, prepared statements, caches) unmeasured: a measured run's CPU and
        # its requests then cover the same window.
        grpc_run(seconds=1)
        measure = functools.partial(_measure, stack, profile=args.profile, seconds=args.seconds)
        row = measure(f"{name}, gRPC", grpc_run)
        print(row.cells(), flush=True)
        rows.append(row)
        if read == "get":
            half = row.result.rate / 2
            half_row = measure(f"{name}, gRPC at {half:,.0f} req/s (half the maximum)", lambda: grpc_run(half))
            print(half_row.cells(), flush=True)
            rows.append(half_row)
        row = measure(f"{name}, REST via Envoy", http_run)
        print(row.cells(), flush=True)
        rows.append(row)
    return rows


# Per-caller rate limits off (a bench's few callers would be held to them).
RATE_LIMITS_OFF = {
    "RATE_LIMIT_READS_PER_SECOND": "0",
    "RATE_LIMIT_WRITES_PER_SECOND": "0",
    "RATE_LIMIT_STREAMS_PER_SECOND": "0",
}


def _refused(metrics_port: int) -> int:
    """GetAccount calls the server refused for their rate limit so far (its Prometheus counter)."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    pattern = re.compile(r'^grpc_server_handled_total\{[^}]*grpc_code="RESOURCE_EXHAUSTED"[^}]*\} ([0-9.e+]+)$', re.M)
    return sum(int(float(value)) for value in pattern.findall(text))


def compare_rate_limits(env: dict[str, str], dataset: Dataset, args: argparse.Namespace) -> list[Row]:
    """GetAccount over gRPC on two stacks that differ only in the rate limits (both with Redis), run in
    alternating short rounds so that the load of a shared machine falls on both alike. The limited
    stack's callers stay under their limit (each h2load process is one caller), so every call takes
    the whole path of an admitted one: a token of the process's lease, and a Redis round trip per
    lease (`--rate-limit` / 10 calls)."""
    rng = random.Random(args.seed)  # noqa: S311 - reproducible picks, not secrets
    # One member per h2load process: each caller's share of the load stays under its limit.
    members = rng.sample(dataset.members, min(len(dataset.members), max(1, args.in_flight // 4)))
    picked = [
        Triple(m.access_token, str(m.workspace_id), str(rng.choice(dataset.accounts[m.workspace_id]))) for m in members
    ]
    calls = _grpc_calls("get", picked)
    limited = {
        "RATE_LIMIT_READS_PER_SECOND": str(args.rate_limit),
        "RATE_LIMIT_READS_BURST": str(2 * args.rate_limit),
    }
    with tempfile.TemporaryDirectory() as tmp:
        redis = start_redis(Path(tmp), ephemeral=True)
        try:
            base = {**env, "REDIS_URL": redis.url}
            metrics_port = free_port()
            off = Stack({**base, **RATE_LIMITS_OFF}, workers=args.workers, log_dir=Path(tmp) / "off")
            with off.running():
                # Made once the first stack holds its ports, so that the second picks others.
                on = Stack(
                    {**base, **limited, "SERVER_METRICS_PORT": str(metrics_port)},
                    workers=args.workers,
                    log_dir=Path(tmp) / "on",
                )
                with on.running():
                    totals = _alternate({"without rate limits": off, "with rate limits": on}, calls, args)
                    refused = _refused(metrics_port)
        finally:
            redis.stop()
    rows = [_sum_rows(f"GetAccount, gRPC, {label}", measured) for label, measured in totals.items()]
    rows[1] = dataclasses.replace(
        rows[1], result=dataclasses.replace(rows[1].result, errors=rows[1].result.errors + refused)
    )
    return rows


def _alternate(
    stacks: dict[str, Stack], calls: Sequence[loadgen.GrpcCall], args: argparse.Namespace
) -> dict[str, list[Row]]:
    totals: dict[str, list[Row]] = {label: [] for label in stacks}
    for stack in stacks.values():  # warm up, unmeasured
        loadgen.h2load(stack.grpc_port, calls, in_flight=args.in_flight, seconds=1)
    for _ in range(args.rounds):
        for label, stack in stacks.items():

            def run(port: int = stack.grpc_port) -> loadgen.LoadResult:
                return loadgen.h2load(port, calls, in_flight=args.in_flight, seconds=args.seconds)

            row = _measure(stack, label, run)
            print(row.cells(), flush=True)
            totals[label].append(row)
    return totals


def _sum_rows(label: str, rows: Sequence[Row]) -> Row:
    requests = sum(row.result.requests for row in rows)
    seconds = sum(row.result.seconds for row in rows)
    return Row(
        label=label,
        result=loadgen.LoadResult(
            requests=requests,
            errors=sum(row.result.errors for row in rows),
            seconds=seconds,
            p50=sorted(row.result.p50 for row in rows)[len(rows) // 2],
            p99=sorted(row.result.p99 for row in rows)[len(rows) // 2],
        ),
        server_cpu=sum(row.server_cpu for row in rows),
        envoy_cpu=0.0,
        per_process=[],
    )


# How the server reaches PostgreSQL (--databases): straight, through PgBouncer in transaction mode,
# or with the reads on a streaming replica (devstack.pgbouncer, devstack.embedded.start_replica).
DATABASES = ("direct", "pgbouncer", "replica")


@dataclass(frozen=True)
class Target:
    """A database set-up: the server's settings, and the pid of a process in between (PgBouncer)."""

    env: dict[str, str]
    between_pid: int | None = None


@contextmanager
def database_targets(postgres: EmbeddedPostgres, url: str, wanted: Sequence[str]) -> Iterator[dict[str, Target]]:
    """The server's settings for each database set-up in `wanted`, the services they need running."""
    with ExitStack() as running:
        targets: dict[str, Target] = {}
        for name in wanted:
            if name == "direct":
                targets[name] = Target({})
            elif name == "pgbouncer":
                bouncer = running.enter_context(start_pgbouncer(postgres.url, pool_size=20))
                env = {"DATABASE_URL": bouncer.url_for(url), "DATABASE_POOLER": "pgbouncer", "DATABASE_DIRECT_URL": url}
                targets[name] = Target(env, bouncer.process.pid if bouncer.process is not None else None)
            else:
                replica = start_replica(postgres, postgres.pgdata.parent / "replica")
                running.callback(replica.stop)
                targets[name] = Target({"DATABASE_READ_URL": replica.url_for(make_url(url).database or "bench")})
        yield targets


async def _transactions(url: str) -> int:
    """Transactions the server at `url` has run in its database (a hot standby counts its reads)."""
    connection = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        count: int = await connection.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return count
    finally:
        await connection.close()


@contextmanager
def database() -> Iterator[tuple[Settings, dict[str, str]]]:
    with database_on_server() as (settings, env, _postgres):
        yield settings, env


@contextmanager
def database_on_server() -> Iterator[tuple[Settings, dict[str, str], EmbeddedPostgres]]:
    """`database()`, and the embedded server it is on (for a replica of it, or PgBouncer in front)."""
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
                access_token_ttl_seconds=86_400,
            )
            migrations.upgrade(settings)
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "SECRET_KEY": secret,
                "ENVIRONMENT": "test",
                "DATA_DIR": str(settings.data_dir),
                "ACCESS_TOKEN_TTL_SECONDS": "86400",
            }
            yield settings, env, postgres
        finally:
            postgres.stop()


def token_issuer(settings: Settings) -> TokenIssuer:
    return TokenIssuer(
        secret_key=settings.secret_key.get_secret_value(),
        access_ttl=dt.timedelta(seconds=settings.access_token_ttl_seconds),
        refresh_ttl=dt.timedelta(seconds=settings.refresh_token_ttl_seconds),
    )


def run_target(
    target: str, setup: Target, env: dict[str, str], dataset: Dataset, args: argparse.Namespace
) -> list[Row]:
    """The reads against a server on one database set-up (`database_targets`), labelled with it."""
    data_dir = Path(env["DATA_DIR"])
    stack = Stack({**env, **setup.env}, workers=args.workers, log_dir=data_dir / target)
    with stack.running():
        between = loadgen.cpu_seconds(setup.between_pid) if setup.between_pid else 0.0
        found = run_reads(stack, dataset, args)
        if setup.between_pid:
            spent = loadgen.cpu_seconds(setup.between_pid) - between
            # Warm-up calls included: a slight overestimate per request.
            requests = max(1, sum(row.result.requests for row in found))
            print(f"PgBouncer's own CPU: {spent / requests * 1000:.3f} ms per request", flush=True)
        if "DATABASE_READ_URL" in setup.env:
            served = asyncio.run(_transactions(setup.env["DATABASE_READ_URL"]))
            print(f"the replica committed {served:,} (read-only) transactions", flush=True)
        problems = [line for line in stack.server_log.read_text(errors="replace").splitlines() if _PROBLEM.search(line)]
        if problems:
            print(f"the server logged {len(problems)} warning/error lines; the first ones:", *problems[:5], sep="\n")
    return [dataclasses.replace(row, label=f"{target}: {row.label}") for row in found]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.read_rpc", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--in-flight", type=int, default=64, help="requests in flight")
    parser.add_argument("--workers", type=int, default=os.process_cpu_count() or 1, help="server processes")
    parser.add_argument("--workspaces", type=int, default=100)
    parser.add_argument("--accounts", type=int, default=1000, help="accounts per workspace")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--python-client", action="store_true", help="use the Python client even if h2load/wrk exist")
    parser.add_argument(
        "--reads", nargs="+", choices=("get", "list"), default=["get", "list"], help="which reads to load"
    )
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="sample the server processes with py-spy into DIR during each read"
    )
    parser.add_argument("--keyset", action="store_true", help="keyset flatness: page 1 vs 200 at 1k and 1M rows")
    parser.add_argument("--keyset-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--rate-limits", action="store_true", help="GetAccount's server CPU with and without per-caller rate limits"
    )
    parser.add_argument("--rate-limit", type=int, default=200, help="reads per second per caller (--rate-limits)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each stack (--rate-limits)")
    parser.add_argument(
        "--databases", nargs="+", choices=DATABASES, default=["direct"], help="how the server reaches PostgreSQL"
    )
    parser.add_argument(
        "--redis", action="store_true", help="give the server a Redis (production has one; the replica's reads use it)"
    )
    args = parser.parse_args(argv)
    with database_on_server() as (settings, database_env, postgres), ExitStack() as services:
        env = dict(database_env)
        if args.redis:
            redis = services.enter_context(start_redis(settings.data_dir / "redis", ephemeral=True))
            env["REDIS_URL"] = redis.url
        if args.keyset:
            print(keyset.report(asyncio.run(keyset.measure(settings, large=args.keyset_rows))), flush=True)
            return 0
        started = time.monotonic()
        dataset = asyncio.run(
            seed(
                settings.database_url,
                token_issuer(settings),
                workspaces=args.workspaces,
                accounts_per_workspace=args.accounts,
            )
        )
        print(
            f"seeded {dataset.account_count:,} accounts in {args.workspaces} workspaces "
            f"in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        if args.rate_limits:
            rows = compare_rate_limits(env, dataset, args)
            without, with_limits = (row.server_cpu / max(1, row.result.requests) for row in rows)
            print()
            print(
                markdown(
                    rows,
                    title=f"{dt.date.today().isoformat()}, {os.cpu_count()} cores, {args.workers} "
                    f"server process(es), {args.in_flight} in flight, {args.rounds} x {args.seconds:g} s alternating, "
                    f"limit {args.rate_limit} reads/s per caller (median p50/p99 of the rounds)",
                ),
                f"\nrate limits: {(with_limits / without - 1) * 100:+.1f} % server CPU per GetAccount",
                sep="\n",
                flush=True,
            )
            return 0
        with database_targets(postgres, settings.database_url, args.databases) as targets:
            rows = [row for target, setup in targets.items() for row in run_target(target, setup, env, dataset, args)]
        generators = "h2load + wrk" if loadgen.have_c_generators() and not args.python_client else "Python client"
        title = (
            f"{dt.date.today().isoformat()}, {os.cpu_count()} cores, {args.workers} server process(es), "
            f"{args.in_flight} in flight, {args.seconds:g} s per read, {generators}, {' / '.join(args.databases)}, "
            f"{dataset.account_count:,} accounts in {args.workspaces} workspaces"
        )
        print()
        print(markdown(rows, title=title), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
