"""Health that tells the truth: SERVING only while PostgreSQL (and Redis, when configured) answer.

A loop probes them every HEALTH_CHECK_INTERVAL_SECONDS (`SELECT 1` on a connection of its own,
`PING`, each bounded by HEALTH_CHECK_TIMEOUT_SECONDS) and sets every service of the grpc.health.v1
servicer to SERVING or NOT_SERVING; Envoy's active health checks then stop sending calls to a server
that cannot do its work. Changes are logged once, not per probe.
"""

import asyncio
from collections.abc import Iterable

import asyncpg
import structlog
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from server.composition import Infrastructure
from server.db import driver_connect_arguments
from server.tracing import untraced

logger = structlog.get_logger("adplane.health")


class DatabaseProbe:
    """`SELECT 1` on a connection of the probe's own, opened again after any failure.

    A probe that took a pooled connection would queue behind the calls waiting for one: a burst
    of calls (a cold cache after a deploy) would read as an outage, every server would turn
    NOT_SERVING together, and Envoy would answer 503 to everyone. PostgreSQL's own state is what
    the probe is for.
    """

    def __init__(self, infrastructure: Infrastructure) -> None:
        self._arguments = driver_connect_arguments(infrastructure.engine)
        self._connection: asyncpg.Connection | None = None

    async def check(self) -> None:
        if self._connection is None or self._connection.is_closed():
            self._connection = await asyncpg.connect(**self._arguments)
        try:
            await self._connection.fetchval("SELECT 1")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None


async def dependencies_ok(infrastructure: Infrastructure, database: DatabaseProbe, *, limit_seconds: float) -> bool:
    try:
        async with asyncio.timeout(limit_seconds):
            await database.check()
            if infrastructure.redis is not None:
                await infrastructure.redis.ping()
    except Exception as error:
        logger.debug("dependency probe failed", error=repr(error))
        return False
    return True


async def set_all(health: HealthServicer, services: Iterable[str], serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in ("", *services):
        await health.set(service, status)


async def keep_health_true(
    health: HealthServicer,
    services: list[str],
    infrastructure: Infrastructure,
    *,
    interval: float,
    probe_seconds: float,
) -> None:
    """Runs until cancelled; the first probe runs at once. The probes are not traced."""
    serving: bool | None = None
    database = DatabaseProbe(infrastructure)
    try:
        with untraced():
            while True:
                ok = await dependencies_ok(infrastructure, database, limit_seconds=probe_seconds)
                if ok is not serving:
                    await set_all(health, services, ok)
                    if serving is not None or not ok:
                        logger.warning("readiness changed", serving=ok)
                    serving = ok
                await asyncio.sleep(interval)
    finally:
        database.close()
