"""Builds and runs the grpc.aio server: interceptors, servicers, health, reflection, shutdown."""

import asyncio
import gc
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import grpc
import structlog
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # the public path of the asyncio servicer

from adplane.v1 import (
    account_service_pb2,
    account_service_pb2_grpc,
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    audit_log_service_pb2,
    audit_log_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    business_manager_service_pb2,
    business_manager_service_pb2_grpc,
    export_service_pb2,
    export_service_pb2_grpc,
    pixel_service_pb2,
    pixel_service_pb2_grpc,
    request_service_pb2,
    request_service_pb2_grpc,
    user_service_pb2,
    user_service_pb2_grpc,
    workspace_service_pb2,
    workspace_service_pb2_grpc,
)
from server import event_loop
from server.accounts.api import AccountServicer
from server.api_helpers import parse_networks
from server.api_keys.api import ApiKeyServicer
from server.audit_logs.api import AuditLogServicer
from server.auth.policies import PolicyTable
from server.business_managers.api import BusinessManagerServicer
from server.composition import Infrastructure
from server.config import Settings
from server.edge.envoy import DESCRIPTOR_PATH
from server.edge.header_limit import HeaderLimit, core_metadata_limit
from server.edge.stream_end import StreamEndForRest
from server.exports.api import ExportServicer
from server.interceptors.authentication import Authentication
from server.interceptors.authorization import Authorization
from server.interceptors.errors import ErrorMapping
from server.interceptors.metrics import RpcMetrics
from server.interceptors.path_bindings import PathBindings
from server.interceptors.pipeline import PipelineServer, Step
from server.interceptors.rate_limit import Limit, RateLimit, SharedBuckets
from server.interceptors.request_logging import RequestLogging
from server.log import configure_logging
from server.method_classes import MethodClass, method_classes
from server.metrics import process_ended, serve_metrics, shared_across_processes
from server.pixels.api import PixelServicer
from server.readiness import keep_health_true
from server.reflection import add_reflection
from server.requests.api import RequestServicer
from server.signin.api import AuthServicer
from server.tls import server_credentials
from server.tracing import configure_tracing, shutdown_tracing
from server.users.api import UserServicer
from server.workspaces.api import WorkspaceServicer

logger = structlog.get_logger("adplane.server")


@dataclass(frozen=True)
class Registration:
    """One adplane service: its descriptor and how to add its servicer to a server."""

    descriptor: ServiceDescriptor
    add: Callable[[Any, grpc.aio.Server], None]
    servicer: Callable[[Infrastructure], Any]

    @property
    def name(self) -> str:
        return self.descriptor.full_name


REGISTRATIONS = [
    Registration(
        descriptor=auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"],
        add=auth_service_pb2_grpc.add_AuthServiceServicer_to_server,
        servicer=lambda infrastructure: AuthServicer(
            infrastructure.unit_of_work, trusted_proxies=parse_networks(infrastructure.settings.trusted_proxy_cidrs)
        ),
    ),
    Registration(
        descriptor=user_service_pb2.DESCRIPTOR.services_by_name["UserService"],
        add=user_service_pb2_grpc.add_UserServiceServicer_to_server,
        servicer=lambda infrastructure: UserServicer(infrastructure.unit_of_work),
    ),
    Registration(
        descriptor=api_key_service_pb2.DESCRIPTOR.services_by_name["ApiKeyService"],
        add=api_key_service_pb2_grpc.add_ApiKeyServiceServicer_to_server,
        servicer=lambda infrastructure: ApiKeyServicer(infrastructure.unit_of_work),
    ),
    Registration(
        descriptor=workspace_service_pb2.DESCRIPTOR.services_by_name["WorkspaceService"],
        add=workspace_service_pb2_grpc.add_WorkspaceServiceServicer_to_server,
        servicer=lambda infrastructure: WorkspaceServicer(infrastructure.unit_of_work),
    ),
    Registration(
        descriptor=business_manager_service_pb2.DESCRIPTOR.services_by_name["BusinessManagerService"],
        add=business_manager_service_pb2_grpc.add_BusinessManagerServiceServicer_to_server,
        servicer=lambda infrastructure: BusinessManagerServicer(infrastructure.unit_of_work),
    ),
    Registration(
        descriptor=account_service_pb2.DESCRIPTOR.services_by_name["AccountService"],
        add=account_service_pb2_grpc.add_AccountServiceServicer_to_server,
        servicer=lambda infrastructure: AccountServicer(infrastructure.unit_of_work),
    ),
    Registration(
        descriptor=pixel_service_pb2.DESCRIPTOR.services_by_name["PixelService"],
        add=pixel_service_pb2_grpc.add_PixelServiceServicer_to_server,
        servicer=lambda infrastructure: PixelServicer(infrastructure.unit_of_work),
    ),
    Registration(
        descriptor=request_service_pb2.DESCRIPTOR.services_by_name["RequestService"],
        add=request_service_pb2_grpc.add_RequestServiceServicer_to_server,
        servicer=lambda infrastructure: RequestServicer(
            infrastructure.unit_of_work,
            events=infrastructure.request_events,
            heartbeat_seconds=infrastructure.settings.watch_heartbeat_seconds,
        ),
    ),
    Registration(
        descriptor=export_service_pb2.DESCRIPTOR.services_by_name["ExportService"],
        add=export_service_pb2_grpc.add_ExportServiceServicer_to_server,
        servicer=lambda infrastructure: ExportServicer(infrastructure.unit_of_work),
    ),
    Registration(
        descriptor=audit_log_service_pb2.DESCRIPTOR.services_by_name["AuditLogService"],
        add=audit_log_service_pb2_grpc.add_AuditLogServiceServicer_to_server,
        servicer=lambda infrastructure: AuditLogServicer(infrastructure.unit_of_work),
    ),
]


def server_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.so_reuseport", 1),
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        # Above ours (HeaderLimit answers between the two, with a message of its own).
        ("grpc.max_metadata_size", core_metadata_limit(settings.server_max_metadata_bytes)),
        ("grpc.absolute_max_metadata_size", core_metadata_limit(settings.server_max_metadata_bytes)),
        ("grpc.keepalive_time_ms", settings.grpc_keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", settings.grpc_keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", settings.grpc_min_ping_interval_ms),
        ("grpc.http2.max_ping_strikes", 2),
    ]


def pipeline_steps(infrastructure: Infrastructure) -> list[Step]:
    """The request pipeline, outermost first; composed around every method once, at start-up.

    Error mapping wraps authentication and authorization so that their refusals become the same
    google.rpc.Status as every other error; the stream end for REST callers sits between them, so
    a stream ended by a re-check sends its reason too. Rate limits come last: they count the caller
    authorization has established. A new concern (metrics, tracing) is one more step here.
    """
    return [
        RequestLogging(),
        RpcMetrics(),
        ErrorMapping(),
        HeaderLimit(infrastructure.settings.server_max_metadata_bytes),
        StreamEndForRest(),
        PathBindings(),
        Authentication(infrastructure.tokens),
        Authorization(
            PolicyTable.from_services(r.descriptor for r in REGISTRATIONS),
            infrastructure.principal_resolver(),
            reauthorize_seconds=infrastructure.settings.stream_reauthorize_seconds,
        ),
        RateLimit(
            SharedBuckets(infrastructure.redis),
            rate_limits(infrastructure.settings),
            method_classes(r.descriptor for r in REGISTRATIONS),
        ),
    ]


def rate_limits(settings: Settings) -> dict[MethodClass, Limit]:
    return {
        MethodClass.READ: Limit(settings.rate_limit_reads_per_second, settings.rate_limit_reads_burst),
        MethodClass.WRITE: Limit(settings.rate_limit_writes_per_second, settings.rate_limit_writes_burst),
        MethodClass.STREAM: Limit(settings.rate_limit_streams_per_second, settings.rate_limit_streams_burst),
    }


# The grpc.health.v1 service name that answers whether the process is alive (not whether it can serve).
LIVENESS_SERVICE = "adplane.liveness"


def build_server(
    settings: Settings, infrastructure: Infrastructure
) -> tuple[grpc.aio.Server, health_aio.HealthServicer]:
    server = grpc.aio.server(
        options=server_options(settings), maximum_concurrent_rpcs=settings.grpc_max_concurrent_rpcs
    )
    # Services are added through the pipeline, which wraps each of their methods with the steps.
    piped = cast(grpc.aio.Server, PipelineServer(server, pipeline_steps(infrastructure)))
    for registration in REGISTRATIONS:
        registration.add(registration.servicer(infrastructure), piped)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, piped)
    # Reflection (public, client-streaming infrastructure) is added to the server itself.
    add_reflection(
        server,
        [r.name for r in REGISTRATIONS] + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name],
        descriptor_set_path=DESCRIPTOR_PATH,
    )
    return server, health


def health_only_server(settings: Settings, health: health_aio.HealthServicer) -> grpc.aio.Server | None:
    """GRPC_HEALTH_PORT: the health service alone, in plaintext, for probes that cannot speak TLS
    (the kubelet's native gRPC probes) to a server that serves TLS and may require client
    certificates. The same servicer as GRPC_PORT's, so the same answers; nothing else is reachable
    there. None when the setting is unset."""
    if settings.grpc_health_port is None:
        return None
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_health_port}")
    return server


async def serve(settings: Settings, *, own_port: int | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain: NOT_SERVING at once, in-flight RPCs get the grace period.

    `own_port`: a port this process listens on alone (besides the shared GRPC_PORT), so that
    Envoy can send each server process its share of the load.
    """
    infrastructure = Infrastructure.build(settings)
    server, health = build_server(settings, infrastructure)
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    tls = settings.tls_cert_file is not None
    for port in (settings.grpc_port, own_port):
        if port is None:
            continue
        # Credentials of their own for each port: a second port given the same dynamic credentials asks
        # their fetcher for a first configuration, gets "unchanged", and fails to bind.
        credentials = server_credentials(settings)
        if credentials is None:
            server.add_insecure_port(f"{settings.grpc_host}:{port}")
        else:
            server.add_secure_port(f"{settings.grpc_host}:{port}", credentials)
    # Everything start-up made (modules, descriptors, mappers) lives as long as the process: out of
    # the collector's sight, a full collection stops the event loop for a few milliseconds instead
    # of about 100 (bench: the p99 of reads), and every collection costs less.
    gc.collect()
    gc.freeze()
    await _open_pools(infrastructure)
    # Liveness (the kubelet's livenessProbe): SERVING from start to shutdown whatever PostgreSQL and
    # Redis do, so only a process that no longer answers is restarted, not every one in an outage.
    await health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    await server.start()
    health_server = health_only_server(settings, health)
    if health_server is not None:
        await health_server.start()
    # SERVING only while PostgreSQL (and Redis) answer; the first probe runs before "serving".
    readiness = asyncio.create_task(
        keep_health_true(
            health,
            [registration.name for registration in REGISTRATIONS],
            infrastructure,
            interval=settings.health_check_interval_seconds,
            probe_seconds=settings.health_check_timeout_seconds,
        )
    )
    logger.info(
        "serving",
        address=address,
        own_port=own_port,
        tls=tls,
        client_certificates=settings.tls_client_ca_file is not None,
        health_port=settings.grpc_health_port,
        pid=os.getpid(),
    )

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()

    logger.info("shutting down", drain_seconds=settings.grpc_drain_seconds, grace_seconds=settings.grpc_shutdown_grace)
    readiness.cancel()
    await health.enter_graceful_shutdown()
    # Still taking calls while Envoy's health checks notice NOT_SERVING and send new ones elsewhere.
    await asyncio.sleep(settings.grpc_drain_seconds)
    # Watch streams never finish by themselves: they end now with UNAVAILABLE, and their clients
    # reconnect to another server, instead of holding the drain for the whole grace period.
    await infrastructure.request_events.close()
    await server.stop(settings.grpc_shutdown_grace)
    if health_server is not None:
        await health_server.stop(None)
    await infrastructure.close()
    logger.info("stopped")


# How long start-up waits for the connection pools; a database that is down or slow does not stop
# the server from starting (it reports NOT_SERVING until the database answers).
OPEN_POOLS_WITHIN_SECONDS = 5.0


async def _open_pools(infrastructure: Infrastructure) -> None:
    try:
        async with asyncio.timeout(OPEN_POOLS_WITHIN_SECONDS):
            await infrastructure.open_pools()
    except Exception as error:
        logger.warning("connection pools not opened at start-up; they open on first use", error=repr(error))


def run_process(settings: Settings, own_port: int | None = None) -> None:
    configure_logging(settings)
    if own_port is None:  # the only server process serves its own metrics; see `run` for several
        serve_metrics(settings.server_metrics_port, host=settings.metrics_host)
    configure_tracing("server")  # before the grpc.aio server exists: the instrumentation wraps it
    try:
        event_loop.run(serve(settings, own_port=own_port), settings)
    finally:
        shutdown_tracing()


def run(settings: Settings) -> int:
    """Run GRPC_WORKERS server processes on one port (SO_REUSEPORT), each also on a port of its own.

    Direct gRPC clients connect to the shared port, where the kernel spreads their connections;
    Envoy balances over the processes' own ports (`Settings.upstream_ports`).
    """
    workers = settings.effective_grpc_workers
    if workers == 1:
        run_process(settings)
        return 0
    if settings.grpc_port == 0:
        raise SystemExit("GRPC_WORKERS > 1 needs a fixed GRPC_PORT to share")

    # The processes record their metrics into files here; this process serves the sums.
    with (
        tempfile.TemporaryDirectory(prefix="adplane-metrics-") as directory,
        shared_across_processes(directory) as registry,
    ):
        configure_logging(settings)
        serve_metrics(settings.server_metrics_port, host=settings.metrics_host, registry=registry)
        return _run_processes(settings, workers, metrics_directory=directory)


# A server process that exits is started again on its port: after a crash or the OOM killer, or a
# SIGTERM sent to it alone, which is how the processes are restarted one after another (each drains
# first, and Envoy's other endpoints take its calls meanwhile). One that keeps exiting with an error
# within STABLE_AFTER_SECONDS of its start, GIVE_UP_AFTER times in a row, stops them all with a
# non-zero exit, so that the orchestrator sees a server that cannot run.
STABLE_AFTER_SECONDS = 30.0
GIVE_UP_AFTER = 5
# How often the parent looks at its processes (a signal or an exit wakes it sooner).
SUPERVISE_SECONDS = 0.5


@dataclass
class _ServerProcess:
    index: int
    process: multiprocessing.process.BaseProcess
    started: float
    quick_failures: int = 0
    restart_at: float | None = None


def _run_processes(settings: Settings, workers: int, *, metrics_directory: str) -> int:
    context = multiprocessing.get_context("spawn")

    def start(index: int) -> multiprocessing.process.BaseProcess:
        process = context.Process(
            target=run_process, args=(settings, settings.worker_port(index)), name=f"adplane-serve-{index}"
        )
        process.start()
        return process

    processes = [_ServerProcess(i, start(i), time.monotonic()) for i in range(workers)]
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        for server in processes:
            if server.process.pid is not None and server.process.is_alive():
                os.kill(server.process.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failed = 0
    while not received and not failed:
        multiprocessing.connection.wait(
            [server.process.sentinel for server in processes if server.restart_at is None], SUPERVISE_SECONDS
        )
        now = time.monotonic()
        for server in processes:
            if received:
                break
            if server.restart_at is not None:
                if now >= server.restart_at:
                    server.process, server.started, server.restart_at = start(server.index), now, None
                continue
            if server.process.is_alive():
                continue
            server.process.join()
            if server.process.pid is not None:
                process_ended(server.process.pid, metrics_directory)
            code = server.process.exitcode
            quick = code != 0 and now - server.started < STABLE_AFTER_SECONDS
            server.quick_failures = server.quick_failures + 1 if quick else 0
            if server.quick_failures >= GIVE_UP_AFTER:
                logger.error("server process keeps exiting; stopping", index=server.index, exit_code=code)
                failed = code or 1
                break
            # At once after a clean exit or a long run; after a second, two, four... while it keeps failing.
            delay = 0.0 if not quick else min(2.0 ** (server.quick_failures - 1), 10.0)
            logger.warning("server process exited; starting it again", index=server.index, exit_code=code, delay=delay)
            server.restart_at = now + delay
    if failed:
        forward(signal.SIGTERM, None)
    for server in processes:
        if server.restart_at is None:
            server.process.join()
            if server.process.pid is not None:
                process_ended(server.process.pid, metrics_directory)
    return failed or max((abs(s.process.exitcode or 0) for s in processes if s.restart_at is None), default=0)
