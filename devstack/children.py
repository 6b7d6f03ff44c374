"""The processes `make run` keeps running: a child that dies is started again, after a back-off.

A worker killed by the OOM killer or a crash is replaced instead of taking the whole stack down;
a child that cannot stay up (it dies again within seconds, several times in a row) is a mistake
to show, and the supervisor stops the stack for it.
"""

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
# A child that ran this long counts as having started fine: its next crash starts the back-off over.
STABLE_AFTER = 30.0
# Crashes in a row, none of them after running STABLE_AFTER, before the supervisor gives up.
GIVE_UP_AFTER = 5


class ChildState(Enum):
    RUNNING = "running"
    WAITING = "waiting to restart"
    GAVE_UP = "gave up"


@dataclass
class Child:
    name: str
    start: Callable[[], subprocess.Popen[bytes]] = field(repr=False)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    delay: float = FIRST_RESTART_DELAY
    quick_crashes: int = 0
    last_exit: int | None = None
    report: Callable[[str], None] = print

    def launch(self, now: float) -> None:
        self.process = self.start()
        self.started_at = now
        self.restart_at = None

    def poll(self, now: float) -> ChildState:
        """Restarts the child when it died and its back-off is over; its state afterwards."""
        if self.quick_crashes >= GIVE_UP_AFTER:
            return ChildState.GAVE_UP
        if self.restart_at is not None:
            if now < self.restart_at:
                return ChildState.WAITING
            self.report(f"adplane dev: starting {self.name} again")
            self.launch(now)
        assert self.process is not None, "launch() the child first"
        code = self.process.poll()
        if code is None:
            if now - self.started_at >= STABLE_AFTER:
                self.delay, self.quick_crashes = FIRST_RESTART_DELAY, 0
            return ChildState.RUNNING
        self.last_exit = code
        self.quick_crashes = self.quick_crashes + 1 if now - self.started_at < STABLE_AFTER else 1
        if self.quick_crashes >= GIVE_UP_AFTER:
            self.report(
                f"adplane dev: {self.name} exited with {code}, {self.quick_crashes} times in a row within "
                f"{STABLE_AFTER:.0f}s of starting; stopping the stack"
            )
            return ChildState.GAVE_UP
        self.report(f"adplane dev: {self.name} exited with {code}; starting it again in {self.delay:.0f}s")
        self.restart_at = now + self.delay
        self.delay = min(self.delay * 2, MAX_RESTART_DELAY)
        return ChildState.WAITING


def stop_children(children: list[Child], signum: int, *, timeout: float) -> None:
    running = [child for child in children if child.process is not None and child.restart_at is None]
    for child in running:
        assert child.process is not None
        if child.process.poll() is None:
            child.process.send_signal(signum)
    deadline = time.monotonic() + timeout
    for child in running:
        assert child.process is not None
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"adplane dev: {child.name} did not stop within {timeout:.0f}s; killing it", file=sys.stderr)
            child.process.kill()
            child.process.wait()
