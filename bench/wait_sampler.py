"""Where writes wait: samples taken beside a load run, every half second.

- PostgreSQL's `pg_stat_activity` for the bench's database: backends by state and wait event
  (`active`, `idle`, `idle in transaction`; `Lock`, `Client: ClientRead`...), and `pg_locks`:
  locks some backend waits for;
- `pg_stat_database.sessions`: connections opened during the run (a pool that closes its
  overflow connections on return opens new ones under load, each a backend forked);
- the server's pool gauges from its /metrics (connections in use of the limit).

The sampler runs in a thread with a connection of its own, so it costs the server nothing but a
backend's few queries a second.
"""

from __future__ import annotations

import asyncio
import collections
import re
import threading
import urllib.request
from dataclasses import dataclass, field

import asyncpg

_ACTIVITY = """
SELECT state, coalesce(wait_event_type, '-') || ':' || coalesce(wait_event, '-') AS waiting, count(*)
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
GROUP BY 1, 2
"""
# Locks some backend waits for (of this database, or of no database: a transaction id's).
_WAITING_LOCKS = """
SELECT count(*) FROM pg_locks
WHERE NOT granted AND (database IS NULL OR database = (SELECT oid FROM pg_database WHERE datname = current_database()))
"""
_SESSIONS = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
_GAUGE = re.compile(r"^(adplane_db_pool_connections_(?:in_use|limit|open))(?:\{[^}]*\})? ([0-9.e+]+)$", re.MULTILINE)


@dataclass
class Waits:
    samples: int = 0
    # (state, wait event) -> backends summed over the samples
    backends: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    # gauge -> values summed over the samples
    gauges: dict[str, float] = field(default_factory=lambda: collections.defaultdict(float))
    gauge_max: dict[str, float] = field(default_factory=dict)
    sessions_opened: int = 0
    # Ungranted locks, summed over the samples, and the most in one sample.
    waiting_locks: int = 0
    waiting_locks_max: int = 0

    def waits_per_sample(self) -> float:
        return self.waiting_locks / self.samples if self.samples else 0.0

    def summary(self) -> str:
        if not self.samples:
            return "no samples"
        per_sample = ", ".join(
            f"{state} {event} {count / self.samples:.1f}"
            for (state, event), count in sorted(self.backends.items(), key=lambda item: -item[1])
        )
        pools = ", ".join(
            f"{name.removeprefix('adplane_db_pool_connections_')} {total / self.samples:.1f}"
            f" (max {self.gauge_max[name]:.0f})"
            for name, total in sorted(self.gauges.items())
        )
        return (
            f"backends per sample: {per_sample}; ungranted locks per sample "
            f"{self.waits_per_sample():.1f} (max {self.waiting_locks_max}); "
            "server pools (connections in use or awaited, of the limit): "
            f"{pools or 'no metrics'}; "
            f"connections opened: {self.sessions_opened} in {self.samples} samples"
        )


class WaitSampler:
    def __init__(self, dsn: str, *, metrics_url: str | None, interval: float = 0.5) -> None:
        self._dsn = dsn
        self._metrics_url = metrics_url
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.waits = Waits()

    def __enter__(self) -> WaitSampler:
        self.waits = Waits()
        self._stop.clear()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    async def _run(self) -> None:
        connection = await asyncpg.connect(self._dsn)
        try:
            opened_before = await connection.fetchval(_SESSIONS)
            while not self._stop.is_set():
                for state, waiting, count in await connection.fetch(_ACTIVITY):
                    self.waits.backends[(state or "-", waiting)] += count
                if self._metrics_url is not None:
                    for name, value in _gauges(self._metrics_url).items():
                        self.waits.gauges[name] += value
                        self.waits.gauge_max[name] = max(self.waits.gauge_max.get(name, 0.0), value)
                waiting_locks = await connection.fetchval(_WAITING_LOCKS)
                self.waits.waiting_locks += waiting_locks
                self.waits.waiting_locks_max = max(self.waits.waiting_locks_max, waiting_locks)
                self.waits.samples += 1
                await asyncio.sleep(self._interval)
            # Less the sampler's own connection.
            self.waits.sessions_opened = await connection.fetchval(_SESSIONS) - opened_before
        finally:
            await connection.close()


def _gauges(url: str) -> dict[str, float]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - the bench's own loopback URL
            text = response.read().decode()
    except OSError:
        return {}
    found: dict[str, float] = collections.defaultdict(float)
    for name, value in _GAUGE.findall(text):
        found[name] += float(value)
    return found
