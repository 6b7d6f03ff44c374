"""Benchmark: the write path (RequestAccount, ApproveRequest) over gRPC and REST via Envoy, under load.

    .venv/bin/python -m bench.write_rpc [--seconds 10] [--in-flight 64] [--workers 2]

Starts a throwaway embedded PostgreSQL (migrated) and Redis (events after commit go there, as in
production), seeds 100 workspaces with one member each and a platform business manager with COPY,
runs `adplane serve --workers N` and Envoy, then loads:

- RequestAccount over gRPC with h2load (one process per member; h2load sends one body per process,
  so these calls carry no request_id: each is a new request), and over REST through Envoy with wrk,
  whose Lua script makes every body unique (name and request_id);
- ApproveRequest over REST through Envoy with wrk, each call approving another of the waiting
  requests the bench wrote beforehand with binary COPY (so the measured window only approves), with
  a request_id; over gRPC with a Python client (h2load cannot vary the body, and every approval must
  name another request), which shares the cores with the server: its rate is a floor.

For each it prints req/s, p50/p99, CPU per request of the server process tree and of Envoy (from
/proc), how busy the machine was (every core, /proc/stat) and errors (the client's plus the
server's logged warnings). Then it checks every approved request has its audit entry and outbox rows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc

from adplane.v1 import account_service_pb2 as account_pb
from adplane.v1 import request_service_pb2 as request_pb
from adplane.v1.account_service_pb2_grpc import AccountServiceStub
from bench import loadgen
from bench.dataset import Dataset, asyncpg_dsn, seed
from bench.read_rpc import _PROBLEM, RATE_LIMITS_OFF, Row, Stack, _measure, database, token_issuer
from bench.wait_sampler import WaitSampler
from devstack.embedded import free_port, start_redis
from server.db import new_id

REQUEST_ACCOUNT_PATH = "/adplane.v1.AccountService/RequestAccount"
APPROVE_PATH = "/adplane.v1.RequestService/ApproveRequest"

HEADER = [
    "write",
    "req/s",
    "p50 ms",
    "p99 ms",
    "server CPU ms/req",
    "Envoy CPU ms/req",
    "machine busy",
    "errors (client + server log)",
]


@dataclass(frozen=True)
class WriteRow:
    row: Row
    busy: float

    def cells(self) -> list[str]:
        cells = self.row.cells()
        # The read table's min/max column gives way to how busy the whole machine was.
        return [*cells[:6], f"{self.busy * 100:.0f} %", cells[7]]


def markdown(rows: Sequence[WriteRow], *, title: str) -> str:
    lines = [title, "", "| " + " | ".join(HEADER) + " |", "| --- |" + " ---: |" * (len(HEADER) - 1)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class Staff:
    user_id: uuid.UUID
    access_token: str


async def _business_manager(database_url: str) -> uuid.UUID:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        manager_id: uuid.UUID = await connection.fetchval("SELECT id FROM business_managers LIMIT 1")
    finally:
        await connection.close()
    return manager_id


async def _add_staff(database_url: str, access_token: Callable[[uuid.UUID], str]) -> Staff:
    user_id = new_id()
    now = dt.datetime.now(dt.UTC)
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.execute(
            "INSERT INTO users (id, email, full_name, password_hash, is_active, is_superuser, version, created_at,"
            " updated_at) VALUES ($1, 'staff@example.com', 'staff', 'x', true, true, 1, $2, $2)",
            user_id,
            now,
        )
    finally:
        await connection.close()
    return Staff(user_id, access_token(user_id))


async def prepare_waiting(database_url: str, dataset: Dataset, manager_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    """`count` account requests waiting for approval, spread over the members, written with binary
    COPY; their ids in a random order."""
    now = dt.datetime.now(dt.UTC)
    rows = []
    ids = []
    for n in range(count):
        member = dataset.members[n % len(dataset.members)]
        request_id = new_id()
        ids.append(request_id)
        payload = {
            "type": "account_creation",
            "name": f"waiting {n}",
            "currency": "EUR",
            "timezone": "Europe/Berlin",
            "business_manager_id": str(manager_id),
        }
        rows.append(
            (
                request_id,
                "account_creation",
                "waiting_for_approval",
                member.workspace_id,
                "user",
                member.user_id,
                json.dumps(payload),
                now + dt.timedelta(days=7),
                1,
                now,
                now,
            )
        )
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.copy_records_to_table(
            "requests",
            columns=[
                "id",
                "type",
                "status",
                "workspace_id",
                "requester_type",
                "requester_id",
                "payload",
                "expires_at",
                "version",
                "created_at",
                "updated_at",
            ],
            records=rows,
        )
        await connection.execute("ANALYZE requests")
    finally:
        await connection.close()
    random.shuffle(ids)
    return ids


async def check_approvals(database_url: str) -> tuple[int, int, int]:
    """(approved requests, their approval audit entries, their request.approved outbox rows)."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        approved = await connection.fetchval("SELECT count(*) FROM requests WHERE status = 'approved'")
        audited = await connection.fetchval(
            "SELECT count(*) FROM audit_logs WHERE entity_type = 'request' AND action = 'approve'"
        )
        queued = await connection.fetchval("SELECT count(*) FROM outbox_messages WHERE topic = 'request.approved'")
    finally:
        await connection.close()
    return approved, audited, queued


def _request_account_message(member_workspace: uuid.UUID, manager_id: uuid.UUID, name: str) -> bytes:
    return account_pb.RequestAccountRequest(
        workspace_id=str(member_workspace),
        account=account_pb.AccountDraft(
            name=name, currency="EUR", timezone="Europe/Berlin", business_manager_id=str(manager_id)
        ),
    ).SerializeToString()


_REQUEST_ACCOUNT_LUA = """
local members = %s
local manager = %s
local run = %s
math.randomseed(%d)
local thread_number = 0
setup = function(thread)
  thread:set("number", thread_number)
  thread_number = thread_number + 1
end
local sent = 0
request = function()
  sent = sent + 1
  local member = members[math.random(#members)]
  local unique = run .. "-" .. number .. "-" .. sent
  local body = '{"name":"bench ' .. unique .. '","currency":"EUR","timezone":"Europe/Berlin",'
    .. '"businessManagerId":"' .. manager .. '"}'
  return wrk.format("POST", "/api/workspaces/" .. member[1] .. "/accounts:request?requestId=" .. unique,
    {["authorization"] = "Bearer " .. member[2], ["content-type"] = "application/json"}, body)
end
"""

# Thread n of `threads` approves ids[n + 1], ids[n + 1 + threads], ...: no request twice.
_APPROVE_LUA = """
local ids = %s
local token = %s
local run = %s
local threads = %d
local thread_number = 0
setup = function(thread)
  thread:set("number", thread_number)
  thread_number = thread_number + 1
end
local next_index = nil
request = function()
  if next_index == nil then next_index = number + 1 end
  local id = ids[next_index] or "00000000-0000-0000-0000-000000000000"
  next_index = next_index + threads
  return wrk.format("POST", "/api/requests/" .. id .. ":approve?requestId=" .. run .. "-" .. id,
    {["authorization"] = "Bearer " .. token, ["content-length"] = "0"})
end
"""


def _python_approvals(
    port: int, ids: Sequence[uuid.UUID], token: str, *, in_flight: int, seconds: float
) -> loadgen.LoadResult:
    """Each call approves the next waiting request (gRPC; the Python client)."""

    async def run() -> loadgen.LoadResult:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(APPROVE_PATH)
            metadata = (("authorization", f"Bearer {token}"),)

            async def one(n: int) -> bool:
                request_id = ids[n % len(ids)]
                message = request_pb.ApproveRequestRequest(id=str(request_id), request_id=f"grpc-{request_id}")
                try:
                    await method(message.SerializeToString(), metadata=metadata)
                except grpc.aio.AioRpcError:
                    return False
                return True

            return await loadgen.python_load(one, in_flight=in_flight, seconds=seconds)

    return asyncio.run(run())


async def _check(port: int, dataset: Dataset, manager_id: uuid.UUID) -> None:
    """A RequestAccount answers OK over gRPC (h2load cannot see gRPC errors)."""
    member = dataset.members[0]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await AccountServiceStub(channel).RequestAccount(
            account_pb.RequestAccountRequest.FromString(
                _request_account_message(member.workspace_id, manager_id, "check")
            ),
            metadata=(("authorization", f"Bearer {member.access_token}"),),
        )


def _loads(
    stack: Stack,
    *,
    dataset: Dataset,
    manager_id: uuid.UUID,
    staff: Staff,
    waiting: dict[str, list[uuid.UUID]],
    args: argparse.Namespace,
) -> list[tuple[str, str, Callable[[], loadgen.LoadResult]]]:
    """(write, label, run) of each load against `stack`; warms the stack up, unmeasured."""
    rng = random.Random(args.seed)  # noqa: S311 - reproducible picks, not secrets
    run = json.dumps(uuid.uuid4().hex[:8])
    asyncio.run(_check(stack.grpc_port, dataset, manager_id))
    grpc_members = rng.sample(dataset.members, max(1, min(len(dataset.members), args.in_flight // 4)))
    grpc_calls = [
        loadgen.GrpcCall(
            REQUEST_ACCOUNT_PATH,
            _request_account_message(m.workspace_id, manager_id, f"bench grpc {n}"),
            m.access_token,
        )
        for n, m in enumerate(grpc_members)
    ]
    members_lua = "{" + ",".join(f'{{"{m.workspace_id}", "{m.access_token}"}}' for m in dataset.members) + "}"

    def request_account_grpc(seconds: float = args.seconds) -> loadgen.LoadResult:
        return loadgen.h2load(stack.grpc_port, grpc_calls, in_flight=args.in_flight, seconds=seconds)

    def request_account_rest(seconds: float = args.seconds) -> loadgen.LoadResult:
        script = _REQUEST_ACCOUNT_LUA % (members_lua, json.dumps(str(manager_id)), run, rng.randrange(1 << 30))
        return loadgen.wrk_script(stack.http_port, script, in_flight=args.in_flight, seconds=seconds)

    def approve_rest(ids: list[uuid.UUID]) -> Callable[[], loadgen.LoadResult]:
        def load() -> loadgen.LoadResult:
            table = "{" + ",".join(f'"{i}"' for i in ids) + "}"
            script = _APPROVE_LUA % (table, json.dumps(staff.access_token), run, 2)
            return loadgen.wrk_script(stack.http_port, script, in_flight=args.in_flight, seconds=args.seconds)

        return load

    def approve_grpc(ids: list[uuid.UUID], port: int = stack.grpc_port) -> Callable[[], loadgen.LoadResult]:
        return lambda: _python_approvals(port, ids, staff.access_token, in_flight=args.in_flight, seconds=args.seconds)

    # Warm up (connections, prepared statements, caches) unmeasured.
    request_account_grpc(seconds=1)
    request_account_rest(seconds=1)
    return [
        ("account", "RequestAccount, gRPC (h2load)", request_account_grpc),
        ("account", "RequestAccount, REST via Envoy (wrk)", request_account_rest),
        ("approve", "ApproveRequest, REST via Envoy (wrk)", approve_rest(waiting["rest"])),
        ("approve", "ApproveRequest, gRPC (Python client)", approve_grpc(waiting["grpc"])),
        ("envoy", "ApproveRequest, gRPC via Envoy (Python client)", approve_grpc(waiting["envoy"], stack.http_port)),
    ]


def run_writes(
    stacks: dict[str, Stack],
    loads: dict[str, list[tuple[str, str, Callable[[], loadgen.LoadResult]]]],
    args: argparse.Namespace,
) -> list[WriteRow]:
    """Each load on every stack in turn (the variants compared within the same minutes)."""
    rows: list[WriteRow] = []
    for n, (write, label, _) in enumerate(next(iter(loads.values()))):
        if write not in args.writes:
            continue
        for variant, stack in stacks.items():
            load = loads[variant][n][2]
            named = f"{label}{variant}"
            metrics_url = f"http://127.0.0.1:{stack.env['SERVER_METRICS_PORT']}/metrics"
            before, kernel_before = loadgen.machine_ticks(), loadgen.kernel_share(stack.server_pid)
            with WaitSampler(asyncpg_dsn(stack.env["DATABASE_URL"]), metrics_url=metrics_url) as sampler:
                row = _measure(stack, named, load, profile=args.profile, seconds=args.seconds)
            written = WriteRow(row, loadgen.busy_share(before, loadgen.machine_ticks()))
            kernel_after = loadgen.kernel_share(stack.server_pid)
            print(written.cells(), flush=True)
            print(f"  {named}: {sampler.waits.summary()}", flush=True)
            requests = max(1, row.result.requests)
            print(
                f"  {named}: server system CPU {(kernel_after.system - kernel_before.system) / requests * 1000:.2f}"
                f" ms/req; context switches per request: "
                f"{(kernel_after.voluntary - kernel_before.voluntary) / requests:.1f} voluntary, "
                f"{(kernel_after.involuntary - kernel_before.involuntary) / requests:.1f} involuntary",
                flush=True,
            )
            rows.append(written)
    return rows


@contextmanager
def baseline_tree(revision: str | None) -> Iterator[Path | None]:
    """Another revision's tree in a temporary directory, whose `server/` the baseline runs (None: none)."""
    if revision is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "archive", revision], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


@contextmanager
def redis_for(env: dict[str, str]) -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        redis = start_redis(Path(tmp) / "redis", ephemeral=True)
        try:
            # No per-caller rate limits: one staff token makes every approval, members many writes.
            yield {**env, "REDIS_URL": redis.url, **RATE_LIMITS_OFF}
        finally:
            redis.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.write_rpc", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--in-flight", type=int, default=64, help="requests in flight")
    parser.add_argument("--workers", type=int, default=os.process_cpu_count() or 1, help="server processes")
    parser.add_argument("--workspaces", type=int, default=100)
    parser.add_argument("--waiting", type=int, default=20_000, help="requests prepared for each approval run")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--writes",
        nargs="+",
        choices=("account", "approve", "envoy"),
        default=["account", "approve"],
        help="which to load",
    )
    parser.add_argument(
        "--baseline",
        metavar="REVISION",
        help="also run the server/ of this git revision (e.g. main), each write alternating between the two",
    )
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="sample the server processes with py-spy into DIR during each run"
    )
    args = parser.parse_args(argv)
    if not loadgen.have_c_generators():
        print(f"the write bench needs h2load and wrk: {loadgen.INSTALL_HINT}", file=sys.stderr)
        return 2
    with database() as (settings, database_env), redis_for(database_env) as env:
        tokens = token_issuer(settings)
        now = dt.datetime.now(dt.UTC)
        dataset = asyncio.run(seed(settings.database_url, tokens, workspaces=args.workspaces, accounts_per_workspace=1))
        manager_id = asyncio.run(_business_manager(settings.database_url))
        staff = asyncio.run(
            _add_staff(
                settings.database_url, lambda user: tokens.issue_access(user_id=user, family_id=new_id(), now=now).token
            )
        )
        with baseline_tree(args.baseline) as baseline, ExitStack() as running:
            variants = (
                {"": env}
                if baseline is None
                else {
                    f" [{args.baseline}]": {**env, "PYTHONPATH": str(baseline)},
                    " [this tree]": env,
                }
            )
            stacks: dict[str, Stack] = {}
            loads = {}
            for variant, variant_env in variants.items():
                stack = Stack(
                    {**variant_env, "SERVER_METRICS_PORT": str(free_port())},
                    workers=args.workers,
                    log_dir=settings.data_dir / f"stack-{len(stacks)}",
                )
                stacks[variant] = running.enter_context(stack.running())
                waiting = {
                    way: asyncio.run(prepare_waiting(settings.database_url, dataset, manager_id, args.waiting))
                    for way in ("rest", "grpc", "envoy")
                }
                loads[variant] = _loads(
                    stack, dataset=dataset, manager_id=manager_id, staff=staff, waiting=waiting, args=args
                )
            rows = run_writes(stacks, loads, args)
            for stack in stacks.values():
                problems = [
                    line for line in stack.server_log.read_text(errors="replace").splitlines() if _PROBLEM.search(line)
                ]
                if problems:
                    print(
                        f"the server logged {len(problems)} warning/error lines; the first ones:",
                        *problems[:5],
                        sep="\n",
                    )
        approved, audited, queued = asyncio.run(check_approvals(settings.database_url))
        print(f"approved {approved:,} requests: {audited:,} approval audit entries, {queued:,} approved-work rows")
        if not approved == audited == queued:
            print("every approval must have its audit entry and its outbox row", file=sys.stderr)
            return 1
        title = (
            f"{dt.date.today().isoformat()}, {os.cpu_count()} cores, {args.workers} server process(es), "
            f"{args.in_flight} in flight, {args.seconds:g} s per write"
        )
        print()
        print(markdown(rows, title=title), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
