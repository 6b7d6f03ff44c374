"""How many PostgreSQL connections each adplane process may open: the budget compose and the
Kubernetes manifests size `max_connections` by (docs/deploy/connections.md).

The pool sizes are not re-derived here: each process's pools are built by the code that builds them
(`Infrastructure.build`, `WorkerResources.open`) and the limit they declare to the metrics
(`adplane_db_pool_connections_limit`: pool size + overflow + read pool) is read back. A server process
adds the readiness probe's own connection (server/readiness.py, `DatabaseProbe`) and the standing
cache's listening one (server/auth/standing_cache.py); the scheduler
reaches Redis only; `adplane migrate` holds one connection.
"""

import asyncio

from prometheus_client import REGISTRY

from server.background.resources import WorkerResources
from server.composition import Infrastructure
from server.config import Settings
from server.metrics import DB_CONNECTIONS_LIMIT

# The subcommands that open no pool, and what they hold instead.
FIXED_CONNECTIONS = {"scheduler": 0, "migrate": 1}
# Beside the pools, server processes only: the readiness probe's connection and the standing cache's
# LISTEN connection (to DATABASE_DIRECT_URL, which is PostgreSQL itself even behind PgBouncer).
PROBE_CONNECTIONS = 2
# PostgreSQL's default superuser_reserved_connections: not available to the application's role.
SUPERUSER_RESERVED = 3
# Room for one-off commands (`adplane createsuperuser`, `sync accounts`, psql) beside the processes.
OPERATOR_RESERVE = 10

FAKE_URLS = {
    "database_url": "postgresql+asyncpg://adplane:x@postgres:5432/adplane",
    "redis_url": "redis://redis:6379/0",
}


def declared_limit() -> float:
    return REGISTRY.get_sample_value("adplane_db_pool_connections_limit") or 0.0


def pool_connections(subcommand: str, settings: Settings) -> int:
    """The most connections one process of `adplane <subcommand>` opens with these settings."""
    if subcommand in FIXED_CONNECTIONS:
        return FIXED_CONNECTIONS[subcommand]
    assert subcommand in ("serve", "worker"), f"no connection budget for `adplane {subcommand}`"
    missing_urls = {key: value for key, value in FAKE_URLS.items() if not getattr(settings, key)}
    settings = settings.model_copy(update=missing_urls)
    before = declared_limit()
    if subcommand == "serve":
        infrastructure = Infrastructure.build(settings)
        closing = infrastructure.close()
    else:
        resources = WorkerResources.open(settings)
        closing = resources.close()
    declared = declared_limit() - before
    asyncio.run(closing)  # nothing was connected: the pools open on first use
    DB_CONNECTIONS_LIMIT.dec(declared)
    return int(declared) + (PROBE_CONNECTIONS if subcommand == "serve" else 0)


def processes(subcommand: str, settings: Settings) -> int:
    """Processes one container of `adplane <subcommand>` runs (GRPC_WORKERS for the server)."""
    return settings.effective_grpc_workers if subcommand == "serve" else 1


def available(max_connections: int) -> int:
    """What the application's processes may use of PostgreSQL's max_connections."""
    return max_connections - SUPERUSER_RESERVED - OPERATOR_RESERVE
