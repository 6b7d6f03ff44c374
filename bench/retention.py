"""Benchmark: what retention keeps of 100,000 tasks and 20,000 approvals run through a stack.

    make bench            (or: .venv/bin/python -m bench.retention [--tasks N --approvals N ...])

Starts a throwaway stack: embedded PostgreSQL (migrated to head) and Redis, the Graph API simulator in
a process of its own, and `adplane worker` processes. Then drives it as production would: each
approval is a request submitted and approved through the request service with a `request_id` (an
idempotency key each), which the worker carries out against the simulator; the other tasks are
outbox rows (`account.spend_cap_alert`, what the account sync writes) that the workers' relays
publish and the workers run. A month of sign-ins is written as refresh tokens (some spent, some
revoked, some expired). Once everything ran, the retention jobs run as they will `--days-later`
days from now (every window passed), and the report gives, before the drive, after it and after
retention: Redis memory (`INFO memory`), keys and the task stream's length (and its peak while the
work ran), and the row counts and sizes of the tables that retention keeps bounded.

Table sizes are on-disk sizes: deleted rows leave space that (auto)vacuum hands to new rows, so a
table stops growing rather than shrinks (VACUUM FULL would return it to the OS; the report runs a
plain VACUUM so the free space is visible as such).
"""

import argparse
import asyncio
import datetime as dt
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy import func, insert, select, text

from bench.sync_accounts import Simulator
from devstack.embedded import start_postgres, start_redis
from devstack.meta_simulator import SimulatorControl
from server import migrations
from server.audit_logs.partitions import rotate_partitions
from server.auth.principal import Principal, PrincipalKind
from server.business_managers.models import (
    BusinessManager,
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.composition import Infrastructure
from server.config import Environment, Settings
from server.db import new_id, new_id_at, utcnow
from server.exports.retention import expire_exports
from server.idempotency.retention import delete_expired_keys
from server.log import configure_logging
from server.outbox.models import OutboxMessage
from server.outbox.retention import delete_published
from server.requests.models import Request, RequestStatus
from server.requests.schemas import AccountCreationPayload
from server.signin.models import RefreshToken
from server.signin.retention import delete_spent_tokens
from server.taskqueue.broker import QUEUE
from server.taskqueue.trim import trim_acknowledged
from server.users.models import User
from server.workspaces.schemas import WorkspaceCreateRequestSchema

ADPLANE = str(Path(sys.executable).parent / "adplane")
META_BUSINESS_ID = "900000000000077"
TOKEN = "bench-retention-system-user-token"
STAFF = Principal(kind=PrincipalKind.API_KEY, id=uuid.uuid4())
TABLES = ("outbox_messages", "idempotency_keys", "refresh_tokens", "audit_logs", "requests", "exports")
SPEND_CAP_ALERT = "account.spend_cap_alert"
_TABLE_SIZE = (
    "SELECT pg_total_relation_size(CAST(:table AS regclass)) + coalesce((SELECT sum(pg_total_relation_size(relid)) "
    "FROM pg_partition_tree(CAST(:table AS regclass)) WHERE relid <> CAST(:table AS regclass)), 0)"
)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.retention", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks in all, the approvals' included")
    parser.add_argument("--approvals", type=int, default=20_000)
    parser.add_argument("--refresh-tokens", type=int, default=20_000, help="a month of sign-ins")
    parser.add_argument("--workers", type=int, default=2, help="`adplane worker` processes")
    parser.add_argument("--in-flight", type=int, default=8, help="approvals submitted at once")
    parser.add_argument("--days-later", type=float, default=8.0, help="when the retention jobs run, from now")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up waiting for the work after this")
    return parser.parse_args(argv)


@dataclass
class Snapshot:
    label: str
    redis_used_memory: int
    redis_keys: int
    redis_keys_with_ttl: int
    stream_length: int
    stream_bytes: int
    rows: dict[str, int]
    sizes: dict[str, int]


@dataclass
class Drive:
    tasks_sent: int = 0
    approvals: int = 0
    completed: int = 0
    failed: int = 0
    seconds: float = 0.0
    peak_stream_length: int = 0
    deleted: dict[str, int] = field(default_factory=dict)


async def snapshot(label: str, infrastructure: Infrastructure, redis: Redis) -> Snapshot:
    memory = await redis.info("memory")
    keyspace = await redis.info("keyspace")
    db0 = keyspace.get("db0") or {}
    rows: dict[str, int] = {}
    sizes: dict[str, int] = {}
    async with infrastructure.engine.connect() as connection:
        for table in TABLES:
            rows[table] = int((await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())  # noqa: S608
            # A partitioned table's size is its partitions' (the parent itself holds nothing).
            size = await connection.execute(text(_TABLE_SIZE), {"table": table})
            sizes[table] = int(size.scalar_one())
    return Snapshot(
        label=label,
        redis_used_memory=int(memory["used_memory"]),
        redis_keys=int(db0.get("keys", 0)),
        redis_keys_with_ttl=int(db0.get("expires", 0)),
        stream_length=int(await redis.xlen(QUEUE)) if await redis.exists(QUEUE) else 0,
        stream_bytes=int(await redis.memory_usage(QUEUE) or 0),
        rows=rows,
        sizes=sizes,
    )


def _size(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB" if size >= 1024 * 1024 else f"{size / 1024:.0f} KiB"


def report(snapshots: list[Snapshot], drive: Drive) -> str:
    """The figures as a markdown table, one column a snapshot."""
    header = "| | " + " | ".join(s.label for s in snapshots) + " |"
    lines = [header, "|---" * (len(snapshots) + 1) + "|"]

    def row(name: str, values: list[str]) -> None:
        lines.append(f"| {name} | " + " | ".join(values) + " |")

    row("Redis used_memory", [_size(s.redis_used_memory) for s in snapshots])
    row("Redis keys (with a TTL)", [f"{s.redis_keys:,} ({s.redis_keys_with_ttl:,})" for s in snapshots])
    row("task stream: length, memory", [f"{s.stream_length:,}, {_size(s.stream_bytes)}" for s in snapshots])
    for table in TABLES:
        row(
            f"{table}: rows, size",
            [f"{s.rows[table]:,}, {_size(s.sizes[table])}" for s in snapshots],
        )
    summary = (
        f"{drive.tasks_sent:,} tasks ({drive.approvals:,} approvals: {drive.completed:,} completed, "
        f"{drive.failed:,} failed) in {drive.seconds:.0f} s; task stream at most {drive.peak_stream_length:,} "
        "messages long while they ran. Retention deleted: "
        + ", ".join(f"{name} {count:,}" for name, count in drive.deleted.items())
    )
    return "\n".join([*lines, "", summary])


class Workers:
    def __init__(self, env: dict[str, str], count: int, logs: Path) -> None:
        self._processes = [
            subprocess.Popen(
                [ADPLANE, "worker"],
                env=env,
                stdout=(logs / f"worker-{n}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            for n in range(count)
        ]

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _seed_workspace(infrastructure: Infrastructure) -> tuple[uuid.UUID, uuid.UUID]:
    async with infrastructure.unit_of_work() as uow:
        workspace = await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name="Retention bench"))
        manager = BusinessManager(
            meta_business_id=META_BUSINESS_ID,
            name="Bench Platform",
            ownership=BusinessManagerOwnership.PLATFORM,
            status=BusinessManagerStatus.ACTIVE,
            verification_status=BusinessVerificationStatus.VERIFIED,
            encrypted_token=infrastructure.cipher.encrypt(TOKEN),
        )
        uow.session.add(manager)
        await uow.session.flush()
        return workspace.id, manager.id


async def _approve_one(infrastructure: Infrastructure, workspace_id: uuid.UUID, manager_id: uuid.UUID, n: int) -> None:
    payload = AccountCreationPayload(
        name=f"Bench account {n}", currency="EUR", timezone="Europe/Berlin", business_manager_id=manager_id
    )
    async with infrastructure.unit_of_work() as uow:
        request = await uow.requests.submit(workspace_id, payload, actor=STAFF, idempotency_key=f"submit-{n}")
    async with infrastructure.unit_of_work() as uow:
        await uow.requests.approve_request(request.id, actor=STAFF, idempotency_key=f"approve-{n}")


async def _approvals(infrastructure: Infrastructure, args: argparse.Namespace) -> None:
    workspace_id, manager_id = await _seed_workspace(infrastructure)
    numbers = iter(range(args.approvals))

    async def submitter() -> None:
        for n in numbers:
            await _approve_one(infrastructure, workspace_id, manager_id, n)

    await asyncio.gather(*(submitter() for _ in range(args.in_flight)))


async def _other_tasks(infrastructure: Infrastructure, count: int) -> None:
    """Outbox rows for the relays, a thousand per transaction (as many syncs' alerts would be)."""
    for start in range(0, count, 1000):
        async with infrastructure.unit_of_work() as uow:
            await uow.session.execute(
                insert(OutboxMessage),
                [
                    {
                        "id": new_id(),
                        "topic": SPEND_CAP_ALERT,
                        "payload": {"account_id": str(uuid.uuid4()), "percent": 80},
                        "created_at": utcnow(),
                    }
                    for _ in range(min(1000, count - start))
                ],
            )


async def _refresh_tokens(infrastructure: Infrastructure, count: int, rng: random.Random) -> None:
    """A month of sign-ins: a token every few minutes, each spent by the next of its family (refreshes),
    some families revoked (sign-outs), the oldest expired."""
    async with infrastructure.unit_of_work() as uow:
        user = User(email="bench@example.com", full_name="Bench", password_hash="not-a-hash")  # noqa: S106
        uow.session.add(user)
        await uow.session.flush()
        user_id = user.id
    now = utcnow()
    rows = []
    for n in range(count):
        made = now - dt.timedelta(days=60) * (1 - n / count)
        revoked = rng.random() < 0.2
        rows.append(
            {
                "id": new_id_at(made),
                "user_id": user_id,
                "family_id": uuid.uuid4(),
                "token_hash": uuid.uuid4().hex * 2,
                "created_at": made,
                "expires_at": made + dt.timedelta(days=30),
                "used_at": made + dt.timedelta(minutes=15) if rng.random() < 0.9 else None,
                "revoked_at": made + dt.timedelta(hours=1) if revoked else None,
            }
        )
    for start in range(0, count, 5000):
        async with infrastructure.unit_of_work() as uow:
            await uow.session.execute(insert(RefreshToken), rows[start : start + 5000])


async def _outstanding(infrastructure: Infrastructure, redis: Redis) -> tuple[int, int, int]:
    """Approved requests not finished yet, unpublished outbox rows, and the task stream's length."""
    async with infrastructure.unit_of_work(read_only=True) as uow:
        open_requests = await uow.session.scalar(
            select(func.count()).select_from(Request).where(Request.status == RequestStatus.APPROVED)
        )
        unpublished = await uow.session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None))
        )
    stream = int(await redis.xlen(QUEUE)) if await redis.exists(QUEUE) else 0
    return int(open_requests or 0), int(unpublished or 0), stream


async def _drive(infrastructure: Infrastructure, redis: Redis, args: argparse.Namespace, drive: Drive) -> None:
    started = time.monotonic()
    approvals = min(args.approvals, args.tasks)
    await asyncio.gather(
        _approvals(infrastructure, argparse.Namespace(**{**vars(args), "approvals": approvals})),
        _other_tasks(infrastructure, args.tasks - approvals),
    )
    drive.approvals, drive.tasks_sent = approvals, args.tasks
    print(f"{time.monotonic() - started:.0f} s: the work is written", file=sys.stderr)
    deadline = time.monotonic() + args.timeout
    next_progress = time.monotonic()
    while True:
        open_requests, unpublished, stream = await _outstanding(infrastructure, redis)
        drive.peak_stream_length = max(drive.peak_stream_length, stream)
        if open_requests == unpublished == stream == 0:
            break
        if time.monotonic() > next_progress:
            print(
                f"{time.monotonic() - started:.0f} s: {open_requests} approved requests to carry out, "
                f"{unpublished} outbox rows to publish, {stream} task messages",
                file=sys.stderr,
            )
            next_progress = time.monotonic() + 10
        if time.monotonic() > deadline:
            raise RuntimeError(f"work left after {args.timeout:.0f} s: {open_requests} {unpublished} {stream}")
        await asyncio.sleep(0.5)
    drive.seconds = time.monotonic() - started
    async with infrastructure.unit_of_work(read_only=True) as uow:
        result = await uow.session.execute(select(Request.status, func.count()).group_by(Request.status))
        counts = {row[0]: int(row[1]) for row in result.all()}
    drive.completed = counts.get(RequestStatus.COMPLETED, 0)
    drive.failed = counts.get(RequestStatus.FAILED, 0)


async def _retention(
    infrastructure: Infrastructure, redis: Redis, settings: Settings, later: dt.datetime
) -> dict[str, int]:
    units = infrastructure.unit_of_work
    batch = settings.retention_batch_size
    deleted = {
        "outbox_messages": await delete_published(
            units, keep=dt.timedelta(hours=settings.outbox_retention_hours), batch_size=batch, now=later
        ),
        "idempotency_keys": await delete_expired_keys(
            units, keep=dt.timedelta(hours=settings.idempotency_key_retention_hours), batch_size=batch, now=later
        ),
        "refresh_tokens": await delete_spent_tokens(
            units,
            grace=dt.timedelta(hours=settings.refresh_token_retention_grace_hours),
            access_token_ttl=dt.timedelta(seconds=settings.access_token_ttl_seconds),
            batch_size=batch,
            now=later,
        ),
        "exports": (await expire_exports(units, batch_size=batch, now=later)).deleted,
        "task stream": await trim_acknowledged(redis, QUEUE),
    }
    rotation = await rotate_partitions(
        units, keep_months=settings.audit_log_retention_months, ahead=settings.audit_log_partitions_ahead
    )
    deleted["audit_logs partitions"] = len(rotation.dropped)
    async with infrastructure.engine.connect() as opened:
        autocommit = await opened.execution_options(isolation_level="AUTOCOMMIT")
        for table in TABLES:
            await autocommit.execute(text(f"VACUUM {table}"))
    return deleted


async def _run(args: argparse.Namespace, settings: Settings) -> str:
    infrastructure = Infrastructure.build(settings)
    redis = Redis.from_url(settings.redis_url)
    try:
        drive = Drive()
        snapshots = [await snapshot("before", infrastructure, redis)]
        await _refresh_tokens(infrastructure, args.refresh_tokens, random.Random(27))  # noqa: S311
        await _drive(infrastructure, redis, args, drive)
        snapshots.append(await snapshot("after the work", infrastructure, redis))
        later = utcnow() + dt.timedelta(days=args.days_later)
        drive.deleted = await _retention(infrastructure, redis, settings, later)
        snapshots.append(await snapshot(f"after retention (+{args.days_later:g} days)", infrastructure, redis))
        return report(snapshots, drive)
    finally:
        await redis.aclose()
        await infrastructure.close()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="adplane-bench-") as scratch:
        postgres = start_postgres(Path(scratch) / "postgres", ephemeral=True)
        redis = start_redis(Path(scratch) / "redis", ephemeral=True)
        simulator: Simulator | None = None
        workers: Workers | None = None
        try:
            secret = "benchmark-secret-key-that-is-long-enough"
            settings = Settings(
                _env_file=None,
                environment=Environment.TEST,
                database_url=postgres.create_database("adplane_bench"),
                redis_url=redis.url,
                secret_key=SecretStr(secret),
                data_dir=Path(scratch) / "data",
                log_level="WARNING",
            )
            configure_logging(settings)
            migrations.upgrade(settings)
            simulator = Simulator()
            settings = settings.model_copy(update={"meta_graph_url": simulator.base_url})
            with SimulatorControl(simulator.base_url, timeout=120.0) as control:
                control.add_business("Bench Platform", business_id=META_BUSINESS_ID, token=TOKEN)
            env = {
                **os.environ,
                "ENVIRONMENT": "test",
                "DATABASE_URL": settings.database_url,
                "REDIS_URL": redis.url,
                "META_GRAPH_URL": simulator.base_url,
                "SECRET_KEY": secret,
                "DATA_DIR": str(settings.data_dir),
                "ADPLANE_HEARTBEAT_DIR": scratch,
                "LOG_LEVEL": "ERROR",
            }
            workers = Workers(env, args.workers, Path(scratch))
            print(asyncio.run(_run(args, settings)))
        finally:
            if workers is not None:
                workers.stop()
            if simulator is not None:
                simulator.stop()
            redis.stop()
            postgres.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
