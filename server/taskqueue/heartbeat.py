"""Liveness of the worker and the scheduler, for an orchestrator's health check.

Each process touches a heartbeat file from its event loop every HEARTBEAT_SECONDS;
`adplane liveness worker|scheduler` (the compose health check) succeeds while the file was touched
within STALE_AFTER_SECONDS. A process that died, or whose event loop is blocked, stops touching it,
so the check fails and the orchestrator restarts the container. PostgreSQL or Redis being away does
not make a process dead: restarting it would not bring them back, and the process recovers when they
return (`server.outages`).
"""

import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Literal

type ProcessKind = Literal["worker", "scheduler"]

HEARTBEAT_SECONDS = 5.0
STALE_AFTER_SECONDS = 30.0


def heartbeat_path(kind: ProcessKind) -> Path:
    """One file per process kind per host (a container runs one process; `make run` one of each)."""
    return Path(os.environ.get("ADPLANE_HEARTBEAT_DIR") or tempfile.gettempdir()) / f"adplane-{kind}.heartbeat"


async def beat(kind: ProcessKind, stop: asyncio.Event, *, every: float = HEARTBEAT_SECONDS) -> None:
    """Touch the heartbeat file until `stop` is set; remove it then (a stopped process is not alive)."""
    path = heartbeat_path(kind)
    try:
        while not stop.is_set():
            path.touch()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)
    finally:
        path.unlink(missing_ok=True)


def staleness(kind: ProcessKind) -> float | None:
    """Seconds since the last heartbeat, or None when there is none."""
    try:
        return time.time() - heartbeat_path(kind).stat().st_mtime
    except FileNotFoundError:
        return None
