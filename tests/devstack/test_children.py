"""`make run` keeps its children running: a crashed one is started again after a back-off."""

import subprocess
import sys

from devstack.children import FIRST_RESTART_DELAY, GIVE_UP_AFTER, STABLE_AFTER, Child, ChildState


def _exits_at_once(code: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])


def _child(code: int) -> tuple[Child, list[str]]:
    said: list[str] = []
    return Child("worker", lambda: _exits_at_once(code), report=said.append), said


def test_a_crashed_child_is_started_again_after_a_growing_back_off() -> None:
    child, said = _child(3)
    child.launch(now=0.0)
    first = child.process
    assert first is not None
    first.wait()

    assert child.poll(now=1.0) is ChildState.WAITING
    assert said == [f"adplane dev: worker exited with 3; starting it again in {FIRST_RESTART_DELAY:.0f}s"]
    assert child.poll(now=1.0 + FIRST_RESTART_DELAY / 2) is ChildState.WAITING
    assert child.process is first  # not yet

    child.poll(now=1.0 + FIRST_RESTART_DELAY)
    assert child.process is not first
    assert said[-1] == "adplane dev: starting worker again"
    child.process.wait()
    child.poll(now=3.0)
    assert said[-1].endswith(f"starting it again in {2 * FIRST_RESTART_DELAY:.0f}s")


def test_quick_crashes_in_a_row_give_up_and_a_stable_run_resets_the_count() -> None:
    child, said = _child(2)
    child.launch(now=0.0)
    now = 0.0
    for crash in range(1, GIVE_UP_AFTER + 1):
        assert child.process is not None
        child.process.wait()
        state = child.poll(now)
        if crash < GIVE_UP_AFTER:
            assert state is ChildState.WAITING
            assert child.restart_at is not None
            now = child.restart_at
            child.poll(now)  # started again at once, dies at once
        else:
            assert state is ChildState.GAVE_UP
    assert "times in a row" in said[-1]
    assert child.last_exit == 2

    steady = Child("scheduler", lambda: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]))
    steady.launch(now=0.0)
    steady.quick_crashes, steady.delay = 3, 8.0
    try:
        assert steady.poll(now=STABLE_AFTER) is ChildState.RUNNING
        assert (steady.quick_crashes, steady.delay) == (0, FIRST_RESTART_DELAY)
    finally:
        assert steady.process is not None
        steady.process.kill()
        steady.process.wait()
