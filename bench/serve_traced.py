"""`adplane serve` (one process) under tracemalloc, for `python -m bench.soak --tracemalloc DIR`.

    TRACEMALLOC_DIR=DIR .venv/bin/python -m bench.serve_traced

On SIGUSR1 it writes a snapshot of the Python heap (`snapshot-<n>.pickle`, 25 frames per trace)
and a line of figures (`memory.txt`: Python-traced bytes, RSS before and after asking the C
allocator to give back free memory with malloc_trim) into DIR; the soak compares the snapshot taken
before the watchers opened with the one after they closed. Tracing costs CPU; figures of a traced
run are for memory only.
"""

import ctypes
import ctypes.util
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

from server import app
from server.config import load_settings

FRAMES = 25


def resident_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def mappings() -> str:
    """Resident KiB by kind of mapping: the brk heap (glibc's main arena), 64 MiB-aligned anonymous
    regions (glibc's thread arenas), 1 MiB ones (pymalloc's arenas), other anonymous memory, files."""
    kinds: dict[str, int] = {}
    size = 0
    name = ""
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:
            start, end = (int(value, 16) for value in fields[0].split("-"))
            size = end - start
            path = fields[5] if len(fields) > 5 else ""
            if path == "[heap]":
                name = "heap"
            elif path:
                name = "files" if path.startswith("/") else path
            elif size == 1 << 20:
                name = "pymalloc-sized"
            elif size >= 32 << 20 or size in (1 << 26,):
                name = "thread-arena-sized"
            else:
                name = "anon"
        elif fields[0] == "Rss:":
            kinds[name] = kinds.get(name, 0) + int(fields[1])
            if name == "anon" and int(fields[1]) > 2048:
                aligned = "64MiB-aligned" if start % (1 << 26) == 0 else "unaligned"
                kinds[f"anon@{start:x}({size >> 20}MiB,{aligned})"] = int(fields[1])
    return " ".join(f"{kind}={kib}" for kind, kib in sorted(kinds.items()))


def main() -> int:
    into = Path(os.environ["TRACEMALLOC_DIR"])
    into.mkdir(parents=True, exist_ok=True)
    # TRACEMALLOC_FRAMES=0: no tracing, only the resident memory and what malloc_trim gives back.
    frames = int(os.environ.get("TRACEMALLOC_FRAMES", FRAMES))
    if frames:
        tracemalloc.start(frames)
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    taken = 0

    def snapshot(_signum: int, _frame: FrameType | None) -> None:
        nonlocal taken
        taken += 1
        traced = 0
        if frames:
            tracemalloc.take_snapshot().dump(str(into / f"snapshot-{taken}.pickle"))
            traced, _peak = tracemalloc.get_traced_memory()
        before_trim, by_mapping = resident_kib(), mappings()
        libc.malloc_trim(0)
        with (into / "memory.txt").open("a") as out:
            out.write(
                f"{taken} traced_kib={traced // 1024} rss_kib={before_trim} rss_after_trim_kib={resident_kib()}\n"
                f"  resident KiB by mapping: {by_mapping}\n  after malloc_trim: {mappings()}\n"
            )

    signal.signal(signal.SIGUSR1, snapshot)
    app.run_process(load_settings(grpc_workers=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
