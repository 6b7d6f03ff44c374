"""Two real `adplane scheduler` processes on one Redis: one sends the runs; SIGKILLed, the other takes
over within the lease's bound, and no run goes out twice (every run in the task stream, counted by
its identity: schedule and minute)."""

import datetime as dt
import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from redis import Redis

from devstack.embedded import EmbeddedRedis, free_port, start_redis
from server.background.lease import LEASE_KEY
from server.config import Settings
from server.taskqueue.broker import QUEUE
from tests.e2e.conftest import ADPLANE, stack_env
from tests.scrape import scrape, total
from tests.waits import wait_until

LEASE_SECONDS = 10.0
# The handover bound (server/background/lease.py): the lease, plus a third of it between tries.
HANDOVER_BOUND_SECONDS = LEASE_SECONDS * 4 / 3
# Two schedules run every minute; the others not today.
EVERY_MINUTE = ("SYNC_ACCOUNTS_CRON", "EXPIRE_REQUESTS_CRON")
NOT_TODAY = (
    "SYNC_PIXELS_CRON",
    "SYNC_BUSINESS_MANAGERS_CRON",
    "SPEND_CAP_ALERTS_CRON",
    "SPEND_EXPORT_CRON",
    "REQUEUE_STALLED_CRON",
    "RETENTION_CRON",
    "AUDIT_LOG_ROTATE_CRON",
)
NOT_TODAY_CRON = "0 0 29 2 *"  # 29 February, midnight
# Slack on a machine whose cores are shared with other test processes.
LOADED_MACHINE_SLACK_SECONDS = 10.0


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = start_redis(tmp_path / "redis", ephemeral=True)
    yield server
    server.stop()


class Scheduler:
    def __init__(self, name: str, env: dict[str, str], tmp: Path) -> None:
        self.log_path = tmp / f"scheduler-{name}.log"
        self.metrics_port = free_port()
        env = {**env, "SCHEDULER_METRICS_PORT": str(self.metrics_port), "METRICS_HOST": "127.0.0.1"}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen([ADPLANE, "scheduler"], env=env, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def runs(client: Redis) -> list[tuple[str, str]]:
    """(run identity, fencing token) of every run in the task stream, in the order sent."""
    sent = []
    for _id, fields in cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(QUEUE)):
        labels = json.loads(fields[b"data"])["labels"]
        sent.append((labels["scheduled_run"], labels["scheduler_fence"]))
    return sent


def holder(client: Redis) -> str | None:
    """The lease's value: `<fencing token>:<scheduler id>`."""
    value = cast(bytes | None, client.get(LEASE_KEY))
    return None if value is None else value.decode()


def minute(run: str) -> dt.datetime:
    return dt.datetime.strptime(run.split("@", 1)[1], "%Y-%m-%dT%H:%MZ").replace(tzinfo=dt.UTC)


def test_the_standby_takes_over_from_a_killed_leader_and_no_run_goes_out_twice(
    settings: Settings, redis: EmbeddedRedis, tmp_path: Path
) -> None:
    env = stack_env(
        settings,
        REDIS_URL=redis.url,
        SCHEDULER_LEASE_SECONDS=str(LEASE_SECONDS),
        **dict.fromkeys(EVERY_MINUTE, "* * * * *"),
        **dict.fromkeys(NOT_TODAY, NOT_TODAY_CRON),
    )
    client = Redis.from_url(redis.url)
    leader = Scheduler("a", env, tmp_path)
    standby: Scheduler | None = None
    try:
        wait_until(lambda: client.exists(LEASE_KEY) == 1, within=60, what="the first scheduler taking the lease",
                   detail=leader.log)  # fmt: skip
        leader_token = holder(client)
        standby = Scheduler("b", env, tmp_path)
        wait_until(lambda: "scheduler started" in standby.log(), within=60, what="the standby started",
                   detail=standby.log)  # fmt: skip
        # The standby evaluates the minute it started in (taskiq sends what is due at once): the
        # leader's runs of that minute, or of a later one, went out while both were up.
        both_up = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)

        def leader_sent_a_minute_both_saw() -> bool:
            return sum(minute(run) >= both_up for run, _ in runs(client)) >= len(EVERY_MINUTE)

        wait_until(leader_sent_a_minute_both_saw, within=150, what="the runs of a minute both schedulers saw",
                   detail=lambda: leader.log() + standby.log())  # fmt: skip
        leader.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        leader.process.wait()

        def taken_over() -> bool:
            now = holder(client)
            return now is not None and now != leader_token

        wait_until(taken_over, within=HANDOVER_BOUND_SECONDS + LOADED_MACHINE_SLACK_SECONDS, every=0.05,
                   what="the standby taking the lease", detail=standby.log)  # fmt: skip
        handover = time.monotonic() - killed
        standby_token = holder(client)
        assert standby_token is not None

        # The next minute's runs go out, sent by the standby.
        def standby_sent() -> bool:
            return sum(token == standby_token for _, token in runs(client)) >= len(EVERY_MINUTE)

        wait_until(standby_sent, within=90, what="the standby sending the next minute's runs", detail=standby.log)
        sent = runs(client)
        twice = {run: count for run, count in Counter(run for run, _ in sent).items() if count > 1}
        assert not twice, f"runs sent more than once: {twice}"
        by_minute = Counter(minute(run) for run, _ in sent)
        assert all(count == len(EVERY_MINUTE) for count in by_minute.values()), by_minute
        lease_held = total(scrape(f"http://127.0.0.1:{standby.metrics_port}/metrics"), "adplane_scheduler_lease_held")
        assert lease_held == 1
        print(f"handover {handover:.1f} s (bound {HANDOVER_BOUND_SECONDS:.1f} s); {len(sent)} runs, none twice")
    finally:
        leader.stop()
        if standby is not None:
            standby.stop()
        client.close()
