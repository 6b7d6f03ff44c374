"""Prometheus metrics of every adplane process, and the endpoint that serves them.

Each process kind serves `/metrics` on a port of its own (SERVER_METRICS_PORT, WORKER_METRICS_PORT,
SCHEDULER_METRICS_PORT; unset: no endpoint). The metrics are module-level, so any module records
into them without wiring; a process that serves no endpoint only pays for the increments.

`adplane serve --workers N` runs N processes behind one port: they record into files under
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode, set up by `server.app.run` before
it starts them) and the parent process serves their sum. The variable must be set before
prometheus_client is first imported in a process, which is why the parent sets it for its
children rather than the children for themselves.

The RPC metrics follow the names of go-grpc-prometheus / grpc-ecosystem (`grpc_server_handled_total`
and friends), so existing gRPC dashboards and alerts work unchanged.
"""

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

logger = structlog.get_logger("adplane.metrics")

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Latency buckets for RPCs and Graph calls: most reads take about a millisecond, writes and Graph
# calls tens to hundreds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Tasks and outbox lag: from well under a second to minutes.
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)

# --- gRPC server (server.interceptors.metrics) ---
RPCS_STARTED = Counter(
    "grpc_server_started_total",
    "RPCs started on the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
)
RPCS_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
RPC_DURATION = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC to its status (a stream: to its end).",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)
RPCS_IN_FLIGHT = Gauge(
    "grpc_server_in_flight",
    "RPCs being handled now (open watch streams included).",
    ["grpc_type", "grpc_service", "grpc_method"],
    multiprocess_mode="livesum",
)

# --- background tasks (server.taskqueue.metrics, server.taskqueue.retry) ---
TASKS = Counter("adplane_tasks_total", "Task runs finished, by outcome (success, error).", ["task", "outcome"])
TASK_DURATION = Histogram("adplane_task_duration_seconds", "Duration of task runs.", ["task"], buckets=TASK_BUCKETS)
TASKS_IN_PROGRESS = Gauge("adplane_tasks_in_progress", "Task runs under way.", ["task"], multiprocess_mode="livesum")
STEP_RETRIES = Counter(
    "adplane_task_step_retries_total",
    "A task step run again after a transient failure: reason=rate_limited (Meta said how long to "
    "wait) or transient (an outage, a 5xx, a dropped connection).",
    ["reason"],
)
SCHEDULED_RUNS = Counter(
    "adplane_scheduled_runs_total", "Periodic task runs the scheduler sent to the broker.", ["task"]
)
SCHEDULER_LEASE_HELD = Gauge(
    "adplane_scheduler_lease_held", "1 while this scheduler holds the lease (sends the runs), else 0."
)

# --- the outbox relay (server.outbox.relay) ---
OUTBOX_PUBLISHED = Counter("adplane_outbox_published_total", "Outbox rows published to the broker.", ["topic"])
OUTBOX_LAG = Histogram(
    "adplane_outbox_lag_seconds",
    "From an outbox row's creation (in the transaction that recorded the work) to its publication.",
    buckets=TASK_BUCKETS,
)
OUTBOX_BACKLOG = Gauge(
    "adplane_outbox_backlog",
    "Outbox rows not yet published (as a relay last counted them).",
    multiprocess_mode="mostrecent",
)

# --- Meta's Graph API (server.clients.meta.client) ---
META_REQUESTS = Counter(
    "adplane_meta_requests_total",
    "Graph API calls by operation and outcome: ok, or Graph's error code (17, 80004, 190, ...), "
    "http_<status> when Graph gave none, or unreachable.",
    ["operation", "outcome"],
)
META_DURATION = Histogram(
    "adplane_meta_request_duration_seconds",
    "Duration of Graph API calls, the client's own slow-down excluded.",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
META_USAGE = Gauge(
    "adplane_meta_usage_percent",
    "The highest share of a Meta quota (app, business, ad_account) the last response reported.",
    ["quota"],
    multiprocess_mode="mostrecent",
)
META_THROTTLED_SECONDS = Counter(
    "adplane_meta_throttled_seconds_total",
    "Time spent waiting on Meta's rate limits: by=client is the client's own spacing while a quota "
    "is above 90 %, by=meta the back-off Meta asked for after refusing a call.",
    ["by"],
)

# --- the database pools: SQLAlchemy's (instrument_pool) and the read pool (server.read_pool) ---
DB_CONNECTIONS_IN_USE = Gauge(
    "adplane_db_pool_connections_in_use",
    "Database connections checked out of the pools.",
    multiprocess_mode="livesum",
)
DB_CONNECTIONS_OPEN = Gauge(
    "adplane_db_pool_connections_open",
    "Database connections the pools hold open (in use or idle).",
    multiprocess_mode="livesum",
)
DB_CONNECTIONS_LIMIT = Gauge(
    "adplane_db_pool_connections_limit",
    "The most connections the pools may open (pool size plus overflow, plus the read pool).",
    multiprocess_mode="livesum",
)
DB_CHECKOUTS = Counter("adplane_db_pool_checkouts_total", "Connections taken from the pools.")
# --- the read replica (server.read_replica) ---
DB_REPLICA_LAG = Gauge(
    "adplane_db_replica_lag_seconds",
    "How far the read replica is behind the primary, as the last probe measured it (+Inf: not answering).",
    multiprocess_mode="livemax",
)
DB_REPLICA_SKIPPED = Gauge(
    "adplane_db_replica_skipped",
    "Server processes that skip the read replica (lagging past DATABASE_READ_MAX_LAG_SECONDS, or down).",
    multiprocess_mode="livesum",
)


def instrument_pool(engine: AsyncEngine, *, limit: int) -> None:
    """Count the connections of `engine`'s pool through its events (no polling)."""
    DB_CONNECTIONS_LIMIT.inc(limit)
    pool = engine.sync_engine.pool

    def checked_out(*_: Any) -> None:
        DB_CONNECTIONS_IN_USE.inc()
        DB_CHECKOUTS.inc()

    event.listen(pool, "checkout", checked_out)
    event.listen(pool, "checkin", lambda *_: DB_CONNECTIONS_IN_USE.dec())
    event.listen(pool, "connect", lambda *_: DB_CONNECTIONS_OPEN.inc())
    event.listen(pool, "close", lambda *_: DB_CONNECTIONS_OPEN.dec())
    event.listen(pool, "close_detached", lambda *_: DB_CONNECTIONS_OPEN.dec())


def serve_metrics(port: int | None, *, host: str = "0.0.0.0", registry: CollectorRegistry | None = None) -> None:
    """Serve `/metrics` on `port` from a background thread; None: serve nothing.

    A taken port is logged, not fatal: metrics must never keep a server or worker from running.
    """
    if port is None:
        return
    try:
        if registry is None:
            start_http_server(port, addr=host)
        else:
            start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        logger.error("metrics endpoint not started", port=port, error=str(error))
        return
    logger.info("serving metrics", address=f"{_display_host(host)}:{port}", path="/metrics")


def _display_host(host: str) -> str:
    return socket.gethostname() if host in ("0.0.0.0", "::") else host


@contextmanager
def shared_across_processes(directory: str) -> Iterator[CollectorRegistry]:
    """For a parent starting processes that record metrics: they record under `directory`, and the
    registry yielded sums them. Use `process_ended(pid)` as each child exits."""
    os.environ[MULTIPROC_DIR_VARIABLE] = directory
    try:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        yield registry
    finally:
        os.environ.pop(MULTIPROC_DIR_VARIABLE, None)


def process_ended(pid: int, directory: str) -> None:
    """Drop a dead process's live gauges (in flight, in use) from the sums."""
    mark_process_dead(pid, path=directory)  # type: ignore[no-untyped-call]
