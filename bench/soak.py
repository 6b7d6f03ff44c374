"""Benchmark: a soak of watch streams, 1,000 watchers on one server process for 10 minutes.

    .venv/bin/python -m bench.soak [--watchers 1000] [--sse 200] [--minutes 10] [--change-every 3]
                                   [--cycles 10000] [--profile DIR]

Starts a throwaway embedded PostgreSQL (migrated) and Redis, `adplane serve` (one process) and
Envoy, then opens `--watchers` watch streams: gRPC straight to the server and `--sse` of them as
Server-Sent Events through Envoy. Most watch a busy workspace or the whole queue (staff), a fifth a
quiet workspace in which nothing ever happens (those see heartbeats only). While they stay open,
one request of the busy workspace changes every `--change-every` seconds (made, then cancelled),
and `--cycles` short watches connect, read their snapshot and disconnect, spread over the run.

Then the same watchers open once more, for `--second-round-minutes`, and close: memory the first
round kept and the second reuses is the allocators' cache, not a leak (that would add up).

Reported: every stream that ended unasked (the target is none); delivery latency from the
change's commit (the moment the bench began to commit it) to each watcher, p50/p99 (target p99
under 250 ms); changes delivered of those expected; heartbeats of the quiet watchers and the
longest silence any of them saw; the connect/disconnect cycles; server CPU; and the server's
resident memory before, over time, with everything open, and after every stream closed (target:
within 10 % of before). It exits non-zero when a stream ended unasked or a change or a cycle was
lost; the latency and memory figures are reported against their targets.

`--profile DIR` samples the server with py-spy for the whole run; `--tracemalloc DIR` runs it under
tracemalloc (bench/serve_traced.py) and prints what the Python heap holds after every stream
closed that it did not before, and its resident memory by kind of mapping.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx

from adplane.v1 import request_service_pb2 as pb
from adplane.v1.request_service_pb2_grpc import RequestServiceStub
from bench import loadgen
from bench.dataset import seed
from bench.read_rpc import ADPLANE, PY_SPY, RATE_LIMITS_OFF, Stack, database, token_issuer
from devstack.embedded import start_redis
from server.auth.principal import Principal, PrincipalKind, set_current_principal
from server.composition import Infrastructure
from server.config import Settings
from server.db import new_id
from server.requests.schemas import PixelCreationPayload
from server.users.schemas import UserCreateRequestSchema

# A watch of the busy workspace, of the whole queue (staff), or of the quiet workspace.
BUSY, QUEUE, QUIET = "busy", "queue", "quiet"
RSS_EVERY_SECONDS = 10.0
CHANNEL_STREAMS = 100


@dataclass
class Watcher:
    kind: str
    transport: str
    changes: int = 0
    heartbeats: int = 0
    last_message: float = 0.0
    longest_silence: float = 0.0
    snapshot: bool = False
    ended: str | None = None

    def received(self, now: float) -> None:
        if self.last_message:
            self.longest_silence = max(self.longest_silence, now - self.last_message)
        self.last_message = now


@dataclass
class Results:
    watchers: list[Watcher] = field(default_factory=list)
    # When each change (request id, change kind) began to commit, by the bench's clock.
    committed: dict[tuple[str, str], float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    changes_made: int = 0
    cycles: int = 0
    cycle_errors: list[str] = field(default_factory=list)
    rss_kib: list[tuple[float, int]] = field(default_factory=list)


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for {pid}")


def on_message(watcher: Watcher, results: Results, kind: str, change: tuple[str, str] | None) -> None:
    """`change`: the (request id, change kind) of a change's message."""
    received = time.monotonic()
    watcher.received(received)
    if kind == "snapshot":
        watcher.snapshot = True
    elif kind == "heartbeat":
        watcher.heartbeats += 1
    elif kind == "change" and change is not None and change in results.committed:
        watcher.changes += 1
        results.latencies_ms.append((received - results.committed[change]) * 1000)


async def follow_grpc(watcher: Watcher, call: grpc.aio.UnaryStreamCall[Any, Any], results: Results) -> None:
    try:
        while (message := await call.read()) is not grpc.aio.EOF:
            assert isinstance(message, (pb.WatchRequestsResponse, pb.WatchWorkspaceRequestsResponse))
            kind = message.WhichOneof("event") or ""
            change = message.change
            key = (change.request.id, pb.RequestChangeKind.Name(change.kind)) if kind == "change" else None
            on_message(watcher, results, kind, key)
        watcher.ended = "end of stream"
    except grpc.aio.AioRpcError as error:
        if error.code() is not grpc.StatusCode.CANCELLED:
            watcher.ended = f"{error.code().name}: {error.details()}"


async def follow_sse(watcher: Watcher, client: httpx.AsyncClient, path: str, token: str, results: Results) -> None:
    headers = {"authorization": f"Bearer {token}"}
    try:
        async with client.stream("GET", path, headers=headers) as response:
            if response.status_code != 200:
                watcher.ended = f"HTTP {response.status_code}"
                return
            event = "message"
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line.removeprefix("event:").strip()
                elif line.startswith("data:"):
                    data = json.loads(line.removeprefix("data:"))
                    if event != "message":
                        watcher.ended = f"event {event}: {data.get('message')}"
                        return
                    kind = next((k for k in ("snapshot", "change", "heartbeat") if k in data), "")
                    change = data.get("change") or {}
                    key = (change["request"]["id"], change["kind"]) if kind == "change" else None
                    on_message(watcher, results, kind, key)
                    event = "message"
        watcher.ended = "end of stream"
    except httpx.HTTPError as error:
        watcher.ended = f"{type(error).__name__}: {error}"


@dataclass(frozen=True)
class Callers:
    busy_workspace: uuid.UUID
    quiet_workspace: uuid.UUID
    busy_token: str
    quiet_token: str
    staff_token: str
    actor: Principal


async def callers(infrastructure: Infrastructure, settings: Settings) -> Callers:
    """Two workspaces with a member each (bench.dataset), and a staff user, with access tokens."""
    tokens = token_issuer(settings)
    dataset = await seed(settings.database_url, tokens, workspaces=2, accounts_per_workspace=1, label="soak")
    busy, quiet = dataset.members
    async with infrastructure.unit_of_work() as uow:
        staff = await uow.users.create_user(
            UserCreateRequestSchema.model_validate(
                {"email": "soak-staff@example.com", "full_name": "Soak Staff", "password": "soak staff password"}
            )
        )
        await uow.users.set_user_roles(staff.id, ["staff"])
    now = dt.datetime.now(dt.UTC)
    return Callers(
        busy_workspace=busy.workspace_id,
        quiet_workspace=quiet.workspace_id,
        busy_token=busy.access_token,
        quiet_token=quiet.access_token,
        staff_token=tokens.issue_access(user_id=staff.id, family_id=new_id(), now=now).token,
        actor=Principal(kind=PrincipalKind.USER, id=busy.user_id),
    )


async def make_changes(
    infrastructure: Infrastructure, who: Callers, results: Results, *, every: float, until: float
) -> int:
    """One change of a busy-workspace request every `every` seconds: made, then cancelled. The
    time each began to commit is recorded before the commit, so no watcher can see it earlier."""
    made = 0
    waiting: uuid.UUID | None = None
    set_current_principal(who.actor)
    while time.monotonic() < until:
        started = time.monotonic()
        async with infrastructure.unit_of_work() as uow:
            if waiting is None:
                payload = PixelCreationPayload(name=f"soak {made}", business_manager_id=uuid.uuid4())
                request = await uow.requests.submit(who.busy_workspace, payload, actor=who.actor, idempotency_key=None)
                waiting, kind = request.id, "REQUEST_CHANGE_KIND_CREATED"
                results.committed[(str(request.id), kind)] = time.monotonic()
            else:
                await uow.requests.cancel_request(waiting, workspace_id=who.busy_workspace)
                results.committed[(str(waiting), "REQUEST_CHANGE_KIND_CANCELLED")] = time.monotonic()
                waiting = None
        made += 1
        await asyncio.sleep(max(0.0, every - (time.monotonic() - started)))
    return made


async def churn(stack: Stack, who: Callers, results: Results, *, cycles: int, seconds: float, sse_every: int) -> None:
    """`cycles` watches that connect, read their snapshot and disconnect, spread over `seconds`."""
    interval = seconds / max(1, cycles)
    metadata = (("authorization", f"Bearer {who.quiet_token}"),)
    path = f"/api/workspaces/{who.quiet_workspace}/requests:watch"
    limits = httpx.Limits(max_connections=64)
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{stack.grpc_port}") as channel,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{stack.http_port}", timeout=httpx.Timeout(30), limits=limits
        ) as client,
    ):
        stub = RequestServiceStub(channel)
        gate = asyncio.Semaphore(32)

        async def cycle(n: int) -> None:
            async with gate:
                try:
                    if sse_every and n % sse_every == 0:
                        async with client.stream("GET", path, headers={"authorization": metadata[0][1]}) as response:
                            async for line in response.aiter_lines():
                                if line.startswith("data:"):
                                    break
                    else:
                        call = stub.WatchWorkspaceRequests(
                            pb.WatchWorkspaceRequestsRequest(workspace_id=str(who.quiet_workspace)), metadata=metadata
                        )
                        first = await call.read()
                        call.cancel()
                        if not isinstance(first, pb.WatchWorkspaceRequestsResponse) or not first.HasField("snapshot"):
                            raise RuntimeError(f"no snapshot: {first}")
                    results.cycles += 1
                except Exception as error:
                    results.cycle_errors.append(repr(error))

        started = time.monotonic()
        pending: set[asyncio.Task[None]] = set()
        for n in range(cycles):
            await asyncio.sleep(max(0.0, started + n * interval - time.monotonic()))
            task = asyncio.create_task(cycle(n))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)


async def sample_rss(pid: int, results: Results, *, every: float, started: float) -> None:
    while True:
        results.rss_kib.append((time.monotonic() - started, resident_kib(pid)))
        await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def watching(
    stack: Stack, who: Callers, results: Results, *, count: int, sse: int
) -> AsyncIterator[list[asyncio.Task[None]]]:
    """`count` open watches (`sse` of them Server-Sent Events through Envoy) until the block ends."""
    grpc_count = count - sse
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{stack.grpc_port}")
        for _ in range(math.ceil(grpc_count / CHANNEL_STREAMS))
    ]
    limits = httpx.Limits(max_connections=sse + 8, max_keepalive_connections=sse + 8)
    client = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack.http_port}", timeout=httpx.Timeout(30, read=None), limits=limits
    )
    tasks: list[asyncio.Task[None]] = []
    try:
        for n in range(count):
            # A fifth watch the quiet workspace; of the others, a quarter of the gRPC ones the queue.
            kind = QUIET if n % 5 == 4 else (QUEUE if n % 4 == 1 and n < grpc_count else BUSY)
            transport = "grpc" if n < grpc_count else "sse"
            watcher = Watcher(kind=kind, transport=transport)
            results.watchers.append(watcher)
            workspace, token = (
                (who.quiet_workspace, who.quiet_token) if kind == QUIET else (who.busy_workspace, who.busy_token)
            )
            if transport == "grpc":
                stub = RequestServiceStub(channels[n // CHANNEL_STREAMS])
                call: grpc.aio.UnaryStreamCall[Any, Any]
                if kind == QUEUE:
                    call = stub.WatchRequests(
                        pb.WatchRequestsRequest(), metadata=(("authorization", f"Bearer {who.staff_token}"),)
                    )
                else:
                    call = stub.WatchWorkspaceRequests(
                        pb.WatchWorkspaceRequestsRequest(workspace_id=str(workspace)),
                        metadata=(("authorization", f"Bearer {token}"),),
                    )
                tasks.append(asyncio.create_task(follow_grpc(watcher, call, results)))
            else:
                path = f"/api/workspaces/{workspace}/requests:watch"
                tasks.append(asyncio.create_task(follow_sse(watcher, client, path, token, results)))
            if n % 50 == 49:
                await asyncio.sleep(0.2)  # open them over a few seconds, not in one burst
        deadline = time.monotonic() + 120
        while not all(w.snapshot or w.ended for w in results.watchers[-count:]):
            if time.monotonic() > deadline:
                raise TimeoutError("not every watch got its snapshot within 120 s")
            await asyncio.sleep(0.2)
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
        for channel in channels:
            await channel.close()


@dataclass(frozen=True)
class Report:
    lines: list[str]
    # Every target: no stream ended, every change delivered, p99 < 250 ms, RSS back within 10 %.
    met: bool
    # Something went wrong (a stream ended, a change or a cycle was lost): the bench fails.
    broken: bool


def report(results: Results, *, before_kib: int, after_kib: int, seconds: float, cpu: float, args: Any) -> Report:
    ended = [w for w in results.watchers if w.ended]
    latencies = sorted(results.latencies_ms)
    p50, p99 = loadgen.percentile(latencies, 0.5), loadgen.percentile(latencies, 0.99)
    slowest = latencies[-1] if latencies else 0.0
    listeners = [w for w in results.watchers if w.kind in (BUSY, QUEUE)]
    expected = results.changes_made * len(listeners)
    delivered = sum(w.changes for w in listeners)
    quiet = [w for w in results.watchers if w.kind == QUIET]
    beats = [w.heartbeats for w in quiet] or [0]
    silence = max((w.longest_silence for w in quiet), default=0.0)
    peak = max((kib for _, kib in results.rss_kib), default=0)
    growth = (after_kib - before_kib) / before_kib * 100
    step = max(1, len(results.rss_kib) // 12)
    over_time = ", ".join(f"{t / 60:.1f} min {kib / 1024:.0f}" for t, kib in results.rss_kib[::step])
    met = not ended and p99 < 250 and abs(growth) <= 10 and delivered == expected
    sse = sum(w.transport == "sse" for w in results.watchers)
    lines = [
        f"{len(results.watchers)} watchers ({sse} as SSE through Envoy) on one server process for "
        f"{seconds / 60:.1f} min, a change every {args.change_every:g} s",
        f"streams that ended unasked: {len(ended)}" + (f" (first: {ended[0].ended})" if ended else ""),
        f"delivery latency from commit: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {slowest:.1f} ms "
        f"({len(latencies):,} deliveries)",
        f"changes delivered: {delivered:,} of {expected:,} expected "
        f"({results.changes_made} changes x {len(listeners)} watchers)",
        f"heartbeats of the {len(quiet)} quiet watchers: {sum(beats):,} ({min(beats)}-{max(beats)} each); "
        f"longest silence {silence:.1f} s",
        f"connect/disconnect cycles: {results.cycles:,} of {args.cycles:,}, {len(results.cycle_errors)} failed"
        + (f" (first: {results.cycle_errors[0]})" if results.cycle_errors else ""),
        f"server CPU: {cpu:.0f} s ({cpu / seconds * 100:.0f} % of one core)",
        f"server RSS (MiB): before {before_kib / 1024:.0f}, peak {peak / 1024:.0f}, after all closed "
        f"{after_kib / 1024:.0f} ({growth:+.1f} % of before)",
        f"RSS over the run (MiB): {over_time}",
        "targets " + ("met" if met else "NOT met") + ": no stream ended, p99 < 250 ms, every change delivered, "
        "RSS after close within 10 % of before",
    ]
    broken = bool(ended) or delivered != expected or bool(results.cycle_errors) or results.cycles != args.cycles
    return Report(lines=lines, met=met, broken=broken)


async def soak(stack: Stack, settings: Settings, args: argparse.Namespace) -> Report:
    infrastructure = Infrastructure.build(settings)
    try:
        who = await callers(infrastructure, settings)
        warm_up = Results()
        # Warm up unmeasured (connections, caches, the event hub's reader), then let it settle.
        async with watching(stack, who, warm_up, count=min(100, args.watchers), sse=min(20, args.sse)):
            await make_changes(infrastructure, who, warm_up, every=0.2, until=time.monotonic() + 2)
        await asyncio.sleep(10)
        before = resident_kib(stack.server_pid)
        print(f"server RSS before: {before / 1024:.0f} MiB", flush=True)
        if args.tracemalloc:
            await snapshot_heap(stack.server_pid, args.tracemalloc, 1)

        results = Results()
        seconds = args.minutes * 60
        cpu_before = loadgen.cpu_seconds(stack.server_pid)
        started = time.monotonic()
        sampler = asyncio.create_task(sample_rss(stack.server_pid, results, every=RSS_EVERY_SECONDS, started=started))
        with profiled(stack.server_pid, into=args.profile, seconds=seconds + 180):
            async with watching(stack, who, results, count=args.watchers, sse=args.sse):
                print(f"{args.watchers} watchers open after {time.monotonic() - started:.0f} s", flush=True)
                run_from = time.monotonic()
                changes = asyncio.create_task(
                    make_changes(infrastructure, who, results, every=args.change_every, until=run_from + seconds)
                )
                await churn(stack, who, results, cycles=args.cycles, seconds=seconds, sse_every=args.sse_churn_every)
                results.changes_made = await changes
                # The last change reaches every watcher before they close.
                await asyncio.sleep(5)
                elapsed = time.monotonic() - run_from
            cpu = loadgen.cpu_seconds(stack.server_pid) - cpu_before
            # Closed: give the server a moment to let go of the streams, then read its memory.
            await asyncio.sleep(20)
            sampler.cancel()
            after = resident_kib(stack.server_pid)
            if args.tracemalloc:
                await snapshot_heap(stack.server_pid, args.tracemalloc, 2)
        outcome = report(results, before_kib=before, after_kib=after, seconds=elapsed, cpu=cpu, args=args)
        if args.second_round_minutes:
            outcome.lines.append(await second_round(stack, infrastructure, who, args, after_first=after))
        return outcome
    finally:
        await infrastructure.close()


async def second_round(
    stack: Stack, infrastructure: Infrastructure, who: Callers, args: argparse.Namespace, *, after_first: int
) -> str:
    """The same watchers again, briefly: memory the first round kept that this one reuses is the
    allocators' (freed, kept for the next use), not a leak, which would add up round after round."""
    results = Results()
    async with watching(stack, who, results, count=args.watchers, sse=args.sse):
        until = time.monotonic() + args.second_round_minutes * 60
        results.changes_made = await make_changes(infrastructure, who, results, every=args.change_every, until=until)
        await asyncio.sleep(5)
        peak = resident_kib(stack.server_pid)
    await asyncio.sleep(20)
    after = resident_kib(stack.server_pid)
    ended = sum(1 for w in results.watchers if w.ended)
    growth = (after - after_first) / after_first * 100
    return (
        f"a second round ({args.watchers} watchers for {args.second_round_minutes:g} min, then closed): "
        f"RSS {peak / 1024:.0f} MiB open, {after / 1024:.0f} MiB after ({growth:+.1f} % of after the first "
        f"round); {ended} streams ended unasked"
    )


async def snapshot_heap(pid: int, into: Path, number: int) -> None:
    """Asks the traced server for heap snapshot `number` and waits until it is written."""
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while not (into / "memory.txt").exists() or len((into / "memory.txt").read_text().splitlines()) < number:
        if time.monotonic() > deadline:
            raise TimeoutError("the traced server wrote no heap snapshot")
        await asyncio.sleep(0.5)


def heap_growth(into: Path, *, top: int = 12) -> list[str]:
    """What the Python heap holds after the run that it did not before, largest first."""
    lines = [f"tracemalloc ({into}): {line}" for line in (into / "memory.txt").read_text().splitlines()]
    if not (into / "snapshot-2.pickle").exists():  # TRACEMALLOC_FRAMES=0: memory figures only
        return lines
    before = tracemalloc.Snapshot.load(str(into / "snapshot-1.pickle"))
    after = tracemalloc.Snapshot.load(str(into / "snapshot-2.pickle"))
    for stat in after.compare_to(before, "traceback")[:top]:
        # The most recent frames, where the memory was asked for.
        frames = [f"{frame.filename.rsplit('site-packages/', 1)[-1]}:{frame.lineno}" for frame in stat.traceback]
        lines.append(
            f"  {stat.size_diff / 1024:+,.0f} KiB in {stat.count_diff:+,} blocks at {' < '.join(frames[::-1][:4])}"
        )
    return lines


@contextlib.contextmanager
def profiled(pid: int, *, into: Path | None, seconds: float) -> Iterator[None]:
    """py-spy samples the server for the run (nothing when `into` is None): one collapsed-stack file."""
    if into is None:
        yield
        return
    into.mkdir(parents=True, exist_ok=True)
    sampler = subprocess.Popen(
        [
            PY_SPY,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(round(seconds)),
            "--rate",
            "50",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(into / f"soak-{pid}.txt"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        sampler.terminate()
        sampler.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--watchers", type=int, default=1000, help="watch streams kept open")
    parser.add_argument("--sse", type=int, default=200, help="of which Server-Sent Events through Envoy")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--change-every", type=float, default=3.0, help="seconds between changes")
    parser.add_argument("--cycles", type=int, default=10_000, help="connect/disconnect cycles over the run")
    parser.add_argument("--sse-churn-every", type=int, default=10, help="every Nth cycle as SSE (0: none)")
    parser.add_argument(
        "--second-round-minutes", type=float, default=1, help="open the watchers again this long (0: no second round)"
    )
    parser.add_argument("--profile", type=Path, metavar="DIR", help="sample the server with py-spy into DIR")
    parser.add_argument(
        "--tracemalloc", type=Path, metavar="DIR", help="run the server under tracemalloc, heap snapshots into DIR"
    )
    args = parser.parse_args(argv)
    with database() as (database_settings, database_env), tempfile.TemporaryDirectory() as tmp:
        redis = start_redis(Path(tmp) / "redis", ephemeral=True)
        try:
            settings = database_settings.model_copy(update={"redis_url": redis.url})
            # One caller opens a thousand streams: what the soak measures is the streams, not the limits.
            env = {**database_env, **RATE_LIMITS_OFF, "REDIS_URL": redis.url}
            command: list[str] = [ADPLANE, "serve"]
            if args.tracemalloc:
                env["TRACEMALLOC_DIR"] = str(args.tracemalloc)
                command = [sys.executable, "-m", "bench.serve_traced"]
            with Stack(env, workers=1, log_dir=settings.data_dir, server_command=command).running() as stack:
                result = asyncio.run(soak(stack, settings, args))
                problems = [
                    line
                    for line in stack.server_log.read_text(errors="replace").splitlines()
                    if "warning" in line or "error" in line
                ]
            print()
            print(f"{dt.date.today().isoformat()}, {os.cpu_count()} cores, `python -m bench.soak`")
            print(*result.lines, sep="\n")
            if args.tracemalloc:
                print(*heap_growth(args.tracemalloc), sep="\n")
            if problems:
                print(
                    f"the server logged {len(problems)} warning/error lines; the first ones:", *problems[:5], sep="\n"
                )
        finally:
            redis.stop()
    return 1 if result.broken else 0


if __name__ == "__main__":
    sys.exit(main())
