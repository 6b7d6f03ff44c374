"""Health that tells the truth: SERVING only while PostgreSQL (and Redis, when configured) answer.

A loop probes them every HEALTH_CHECK_INTERVAL_SECONDS (`SELECT 1` on a connection of its own,
`PING`, each bounded by HEALTH_CHECK_TIMEOUT_SECONDS) and sets every service of the grpc.health.v1
servicer to SERVING or NOT_SERVING; Envoy's active health checks then stop sending calls to a server
that cannot do its work. A dependency that errors turns the server NOT_SERVING at once; one that
is merely slow, only after several slow probes in a row (`Readiness`). Changes are logged once,
not per probe.
"""

import asyncio
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import asyncpg
import structlog
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio  # the public path of the asyncio servicer
from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from server.config import Settings
from server.db import pooled_connect_arguments
from server.read_pool import ReadPool
from server.tracing import untraced

logger = structlog.get_logger("adplane.health")


class Dependencies(Protocol):
    """What readiness probes (the composition root's infrastructure)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def engine(self) -> AsyncEngine: ...
    @property
    def read_pool(self) -> ReadPool: ...
    @property
    def redis(self) -> "Redis | None": ...


class DatabaseProbe:
    """`SELECT 1` on a connection of the probe's own, opened again after any failure.

    A probe that took a pooled connection would queue behind the calls waiting for one: a burst
    of calls (a cold cache after a deploy) would read as an outage, every server would turn
    NOT_SERVING together, and Envoy would answer 503 to everyone. PostgreSQL's own state is what
    the probe is for.

    A probe that runs out of time stops waiting but leaves its query running, and the next probe
    waits for that same query: cancelling it would leave the connection unusable until PostgreSQL
    acknowledged the cancel, and a busy database would then also have to accept a new connection.

    The calls' own statements count as answers too (`calls_answered_within`): on a machine short
    of CPU, PostgreSQL can leave the probe's idle backend waiting for a second while it answers the
    calls' busy ones (seen in /proc/<pid>/schedstat under `make bench`), and a database that is
    answering calls is up.
    """

    def __init__(self, infrastructure: Dependencies) -> None:
        self._arguments = pooled_connect_arguments(infrastructure.settings)
        self._connection: asyncpg.Connection | None = None
        self._query: asyncio.Future[object] | None = None
        # True while, or after failing while, opening a connection (a timeout then is not "slow").
        self.connecting = False
        self._read_pool = infrastructure.read_pool
        self._engine = infrastructure.engine.sync_engine
        self._engine_answered_at = -math.inf
        event.listen(self._engine, "after_cursor_execute", self._engine_answered)

    def _engine_answered(self, *_: object) -> None:
        self._engine_answered_at = time.monotonic()

    def calls_answered_within(self, seconds: float) -> bool:
        """Whether a call's statement (on the engine or the read pool) came back in the last `seconds`."""
        latest = max(self._engine_answered_at, self._read_pool.answered_at)
        return time.monotonic() - latest <= seconds

    async def check(self) -> None:
        if self._query is None:
            if self._connection is None or self._connection.is_closed():
                self.connecting = True  # stays True if the connect fails or is cancelled
                self._connection = await asyncpg.connect(**self._arguments)
                self.connecting = False
            self._query = asyncio.ensure_future(self._connection.fetchval("SELECT 1"))
        query = self._query
        try:
            # A timeout cancels this wait, not the query.
            await asyncio.shield(query)
        except Exception:
            self._drop_connection()  # the next probe opens another
            raise
        finally:
            if query.done():
                self._query = None

    def close(self) -> None:
        """For good: the connection, and the listening to the calls' statements."""
        if event.contains(self._engine, "after_cursor_execute", self._engine_answered):
            event.remove(self._engine, "after_cursor_execute", self._engine_answered)
        self._drop_connection()

    def _drop_connection(self) -> None:
        if self._query is not None:
            self._query.cancel()
            self._query = None
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None


@dataclass(frozen=True)
class ProbeFailure:
    reason: str
    # The dependency answered nothing within the limit (as opposed to refusing or erroring).
    slow: bool


async def dependency_failure(
    infrastructure: Dependencies, database: DatabaseProbe, *, limit_seconds: float
) -> ProbeFailure | None:
    """None when PostgreSQL (and Redis) answered within `limit_seconds`, else what went wrong.
    PostgreSQL counts as answering when the probe is slow but the calls' statements come back."""
    step = "PostgreSQL"
    try:
        async with asyncio.timeout(limit_seconds):
            await database.check()
            if infrastructure.redis is not None:
                step = "Redis"
                await infrastructure.redis.ping()
    except TimeoutError:
        if step == "PostgreSQL" and database.connecting:
            # Nothing answered at all (a host that drops packets): as bad as a refusal.
            return ProbeFailure(f"PostgreSQL: no connection within {limit_seconds:g} s", slow=False)
        if step == "PostgreSQL" and database.calls_answered_within(limit_seconds):
            return None
        return ProbeFailure(f"{step} did not answer within {limit_seconds:g} s", slow=True)
    except Exception as error:
        return ProbeFailure(f"{step}: {error!r}", slow=False)
    return None


class Readiness:
    """Whether to serve, from the probes so far.

    A dependency that refuses or errors turns the server NOT_SERVING at once. One that is only
    slow must be slow `slow_probes_allowed + 1` times in a row. A probe that is slow while calls
    are answered does not even count (`dependency_failure`); this covers the stalls no call
    vouches for (an idle server, or Redis), where one slow answer is a blip rather than an outage,
    and turning every server NOT_SERVING over it would only make Envoy answer 503 (or, with every
    host out, ignore health altogether). Before the first probe has answered, any failure counts.
    """

    def __init__(self, *, slow_probes_allowed: int) -> None:
        self._slow_probes_allowed = slow_probes_allowed
        self.slow_in_a_row = 0
        self.serving: bool | None = None

    def observe(self, failure: ProbeFailure | None) -> bool:
        """Record a probe's outcome; True when it changed `serving`."""
        self.slow_in_a_row = self.slow_in_a_row + 1 if failure is not None and failure.slow else 0
        tolerated = (
            failure is not None
            and failure.slow
            and self.serving is True
            and self.slow_in_a_row <= self._slow_probes_allowed
        )
        serving = failure is None or tolerated
        changed = serving is not self.serving
        self.serving = serving
        return changed


async def set_all(health: health_aio.HealthServicer, services: Iterable[str], serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in ("", *services):
        await health.set(service, status)


async def keep_health_true(
    health: health_aio.HealthServicer,
    services: list[str],
    infrastructure: Dependencies,
    *,
    interval: float,
    probe_seconds: float,
    slow_probes_allowed: int = 2,
) -> None:
    """Runs until cancelled; the first probe runs at once. The probes are not traced."""
    readiness = Readiness(slow_probes_allowed=slow_probes_allowed)
    database = DatabaseProbe(infrastructure)
    try:
        with untraced():
            while True:
                failure = await dependency_failure(infrastructure, database, limit_seconds=probe_seconds)
                first = readiness.serving is None
                if readiness.observe(failure):
                    await set_all(health, services, bool(readiness.serving))
                    # Distinct events: the log collapses repeats of one event (whatever its fields),
                    # and a recovery, or a failure of another kind, must show.
                    if failure is not None and failure.slow:
                        logger.warning(
                            "not ready: a dependency is too slow",
                            reason=failure.reason,
                            slow_probes_in_a_row=readiness.slow_in_a_row,
                        )
                    elif failure is not None:
                        logger.warning("not ready: a dependency is failing", reason=failure.reason)
                    elif not first:
                        logger.warning("ready again: dependencies answer")
                elif failure is not None and readiness.serving:
                    logger.info("a dependency was slow to answer the readiness probe", reason=failure.reason)
                await asyncio.sleep(interval)
    finally:
        database.close()
