"""Health that tells the truth: SERVING only while PostgreSQL (and Redis, when configured) answer.

A loop probes them every HEALTH_CHECK_INTERVAL_SECONDS (`SELECT 1`, `PING`, each bounded by
HEALTH_CHECK_TIMEOUT_SECONDS) and sets every service of the grpc.health.v1 servicer to SERVING or
NOT_SERVING; Envoy's active health checks then stop sending calls to a server that cannot do its
work. Changes are logged once, not per probe.
"""

import asyncio
from collections.abc import Iterable

import structlog
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer
from sqlalchemy import text

from server.composition import Infrastructure
from server.tracing import untraced

logger = structlog.get_logger("adplane.health")


async def dependencies_ok(infrastructure: Infrastructure, *, limit_seconds: float) -> bool:
    try:
        async with asyncio.timeout(limit_seconds):
            async with infrastructure.read_engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
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
    with untraced():
        while True:
            ok = await dependencies_ok(infrastructure, limit_seconds=probe_seconds)
            if ok is not serving:
                await set_all(health, services, ok)
                if serving is not None or not ok:
                    logger.warning("readiness changed", serving=ok)
                serving = ok
            await asyncio.sleep(interval)
