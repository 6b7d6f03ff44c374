"""Load generators: h2load for gRPC, wrk for REST (C, so the client costs the machine little), and a
Python fallback when they are not installed. Each returns the same `LoadResult`.

h2load sends one request body per process, so gRPC load is spread over several h2load processes,
each with its own random (token, workspace, account) triple; wrk picks a random triple per request
from a Lua table. h2load reports gRPC errors as HTTP 200 (the status is in a trailer), so callers
check every triple once with a real gRPC client before the load starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "apt-get install -y nghttp2-client wrk  (Debian/Ubuntu; brew install nghttp2 wrk on macOS)"


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    # Latency percentiles in milliseconds.
    p50: float
    p99: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class GrpcCall:
    """One gRPC request: its path, body (a serialized message) and authorization."""

    path: str
    message: bytes
    token: str


@dataclass(frozen=True)
class HttpCall:
    path: str
    token: str


def have_c_generators() -> bool:
    return shutil.which("h2load") is not None and shutil.which("wrk") is not None


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: uncompressed flag, 4-byte big-endian length, the bytes."""
    return struct.pack(">?I", False, len(message)) + message


def percentile(ordered: Sequence[float], quantile: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


def parse_h2load_log(text: str) -> tuple[list[float], int]:
    """h2load --log-file lines (start µs, HTTP status, duration µs) -> (durations in ms, non-2xx count)."""
    durations: list[float] = []
    errors = 0
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        if not parts[1].startswith("2"):
            errors += 1
        durations.append(int(parts[2]) / 1000)
    return durations, errors


def h2load(
    port: int, calls: Sequence[GrpcCall], *, in_flight: int, seconds: float, rate: float | None = None
) -> LoadResult:
    """`in_flight` streams spread over one h2load process per call, for `seconds`; `rate` caps the
    total requests per second (an open-ish loop: h2load's --rps per client)."""
    per_process = max(1, in_flight // len(calls))
    with tempfile.TemporaryDirectory() as tmp:
        processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        for n, call in enumerate(calls):
            body = Path(tmp) / f"body-{n}"
            body.write_bytes(grpc_frame(call.message))
            log = Path(tmp) / f"log-{n}"
            command = [
                "h2load",
                f"http://127.0.0.1:{port}{call.path}",
                "-d",
                str(body),
                "-c",
                "1",
                "-m",
                str(per_process),
                "-D",
                f"{round(seconds * 1000)}ms",
                "--log-file",
                str(log),
                "-H",
                "content-type: application/grpc",
                "-H",
                "te: trailers",
                "-H",
                f"authorization: Bearer {call.token}",
            ]
            if rate is not None:
                command += ["--rps", str(max(1, round(rate / len(calls))))]
            processes.append((subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), log))
        durations: list[float] = []
        errors = 0
        for process, log in processes:
            _, stderr = process.communicate(timeout=seconds + 60)
            if process.returncode != 0:
                raise RuntimeError(f"h2load failed: {stderr.decode(errors='replace')}")
            found, failed = parse_h2load_log(log.read_text())
            durations += found
            errors += failed
    durations.sort()
    return LoadResult(
        requests=len(durations),
        errors=errors,
        seconds=seconds,
        p50=percentile(durations, 0.5),
        p99=percentile(durations, 0.99),
    )


_WRK_SCRIPT = """
local calls = %s
math.randomseed(%d)
request = function()
  local call = calls[math.random(#calls)]
  return wrk.format("GET", call[1], {["authorization"] = "Bearer " .. call[2]})
end
"""

# Appended to every script: the summary wrk's own report leaves out (errors of every kind, p50/p99).
_WRK_DONE = """
done = function(summary, latency, requests)
  io.stderr:write(string.format('{"requests": %d, "errors": %d, "p50": %f, "p99": %f}\\n',
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def _lua_table(calls: Sequence[HttpCall]) -> str:
    return "{" + ",".join(f"{{{json.dumps(c.path)}, {json.dumps(c.token)}}}" for c in calls) + "}"


def wrk(port: int, calls: Sequence[HttpCall], *, in_flight: int, seconds: float) -> LoadResult:
    """GETs of random `calls`."""
    script = _WRK_SCRIPT % (_lua_table(calls), random.randrange(1 << 30))  # noqa: S311
    return wrk_script(port, script, in_flight=in_flight, seconds=seconds)


def wrk_script(port: int, script: str, *, in_flight: int, seconds: float, threads: int = 2) -> LoadResult:
    """wrk running a Lua `script` (its `request` function makes each request) over `in_flight`
    connections on `threads` threads."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calls.lua"
        path.write_text(script + _WRK_DONE)
        command = [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(in_flight),
            "-d",
            f"{seconds:g}s",
            "-s",
            str(path),
            # A write can take seconds on a busy machine: slower is a latency, not an error.
            "--timeout",
            "10s",
            f"http://127.0.0.1:{port}",
        ]
        result = subprocess.run(command, capture_output=True, timeout=seconds + 60, check=True)
    summary = json.loads(result.stderr.decode().strip().splitlines()[-1])
    return LoadResult(
        requests=summary["requests"],
        errors=summary["errors"],
        seconds=seconds,
        p50=summary["p50"],
        p99=summary["p99"],
    )


async def python_load(
    call: Callable[[int], Awaitable[bool]], *, in_flight: int, seconds: float, rate: float | None = None
) -> LoadResult:
    """The fallback: `in_flight` asyncio callers (each at most `rate / in_flight` per second)."""
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    interval = in_flight / rate if rate else 0.0

    async def caller(offset: int) -> None:
        nonlocal errors
        n = offset
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
            started = time.perf_counter()
            if not await call(n):
                errors += 1
            latencies.append((time.perf_counter() - started) * 1000)
            n += in_flight

    await asyncio.gather(*(caller(i) for i in range(in_flight)))
    latencies.sort()
    return LoadResult(
        requests=len(latencies),
        errors=errors,
        seconds=seconds,
        p50=percentile(latencies, 0.5),
        p99=percentile(latencies, 0.99),
    )


def process_cpu(root: int) -> dict[int, float]:
    """User + system CPU seconds of a process and of each of its descendants, by pid."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    pending = [root]
    while pending:
        pid = pending.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except FileNotFoundError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / ticks
        pending += [int(child) for child in children]
    return found


def cpu_seconds(root: int) -> float:
    """User + system CPU of a process and all its descendants (the server's worker processes)."""
    return sum(process_cpu(root).values())


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of every core since boot, from /proc/stat (idle and iowait are
    not busy; steal is, as far as this machine's guests can tell)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])  # guest time is counted in user already
    return total - idle, total


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """How busy the machine was between two `machine_ticks()` (0 to 1)."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


@dataclass(frozen=True)
class KernelShare:
    """Of a process tree: system CPU seconds, and context switches of all its threads (voluntary:
    it waited; involuntary: the scheduler took the core away)."""

    system: float
    voluntary: int
    involuntary: int


def kernel_share(root: int) -> KernelShare:
    ticks = os.sysconf("SC_CLK_TCK")
    system, voluntary, involuntary = 0.0, 0, 0
    for pid in process_cpu(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            system += int(fields[12]) / ticks
            for task in Path(f"/proc/{pid}/task").iterdir():
                for line in (task / "status").read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        voluntary += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        involuntary += int(line.split()[1])
        except FileNotFoundError:
            continue
    return KernelShare(system, voluntary, involuntary)
