"""Liveness of the worker and scheduler: the heartbeat file and `adplane liveness`."""

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.taskqueue.heartbeat import STALE_AFTER_SECONDS, beat, heartbeat_path
from tests.waits import eventually

ADPLANE = str(Path(sys.executable).parent / "adplane")


def liveness(kind: str, directory: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ADPLANE_HEARTBEAT_DIR": str(directory)}
    return subprocess.run([ADPLANE, "liveness", kind], env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_beat_touches_the_file_while_running_and_removes_it_when_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADPLANE_HEARTBEAT_DIR", str(tmp_path))
    path = heartbeat_path("scheduler")
    stop = asyncio.Event()
    beating = asyncio.create_task(beat("scheduler", stop, every=0.05))
    await eventually(path.exists, within=5, what="the first heartbeat")
    first = path.stat().st_mtime_ns
    await eventually(lambda: path.stat().st_mtime_ns > first, within=5, what="the heartbeat touched again")
    stop.set()
    await asyncio.wait_for(beating, timeout=1)
    assert not path.exists()


def test_liveness_is_ok_for_a_fresh_heartbeat_and_fails_for_a_stale_or_missing_one(tmp_path: Path) -> None:
    missing = liveness("worker", tmp_path)
    assert missing.returncode == 1
    assert "no heartbeat" in missing.stdout

    path = tmp_path / "adplane-worker.heartbeat"
    path.touch()
    assert liveness("worker", tmp_path).returncode == 0
    assert liveness("scheduler", tmp_path).returncode == 1  # each kind has its own file

    stale = time.time() - STALE_AFTER_SECONDS - 5
    os.utime(path, (stale, stale))
    result = liveness("worker", tmp_path)
    assert result.returncode == 1
    assert "last heartbeat" in result.stdout


def test_liveness_refuses_an_unknown_process_kind(tmp_path: Path) -> None:
    result = liveness("server", tmp_path)
    assert result.returncode == 2
    assert "expected worker or scheduler" in result.stderr
