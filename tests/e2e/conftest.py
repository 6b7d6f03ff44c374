"""The real stack for end-to-end tests: `adplane serve` and `adplane envoy` as subprocesses,
on free ports, against the test database."""

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.embedded import free_port, free_port_block
from server.composition import Infrastructure
from server.config import Settings
from tests import waits
from tests.callers import Caller, make_caller

ADPLANE = str(Path(sys.executable).parent / "adplane")


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def stack_env(settings: Settings, **overrides: str) -> dict[str, str]:
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "LOGIN_FIRST_DELAY_SECONDS": str(settings.login_first_delay_seconds),
        "LOGIN_MAX_DELAY_SECONDS": str(settings.login_max_delay_seconds),
        "LOGIN_MAX_WAIT_SECONDS": str(settings.login_max_wait_seconds),
        "SECRET_KEY": settings.secret_key.get_secret_value(),
        "DATA_DIR": str(settings.data_dir),
        "LOG_FORMAT": "json",
        # No drain pause: tests stop servers often (test_readiness checks the pause).
        "GRPC_DRAIN_SECONDS": "0",
        # Workers' and schedulers' heartbeat files stay in the test's data, not the machine's /tmp.
        "ADPLANE_HEARTBEAT_DIR": str(settings.data_dir),
        # No per-caller rate limits: tests call as one caller in bursts (tests/e2e/test_rate_limits.py
        # sets its own).
        "RATE_LIMIT_READS_PER_SECOND": "0",
        "RATE_LIMIT_WRITES_PER_SECOND": "0",
        "RATE_LIMIT_STREAMS_PER_SECOND": "0",
    }
    env.update(overrides)
    return env


# A bound, not an expectation: a process is ready in a second or two, but the test processes share
# two cores with the servers, workers and Envoys they start.
START_WITHIN_SECONDS = 60


def wait_until(check: Callable[[], bool], *, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until `check()` holds for a process we started; fails at once if the process exits, and
    kills a process that is not ready in time (it would outlive the test)."""

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        return check()

    try:
        waits.wait_until(
            ready, within=START_WITHIN_SECONDS, what=f"{what} ready", every=0.05, detail=lambda: log.read_text()[-4000:]
        )
    except AssertionError:
        process.terminate()  # not SIGKILL: `serve --workers N` stops the processes it started
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise


def _serving(target: str, *, any_status: bool = False, credentials: grpc.ChannelCredentials | None = None) -> bool:
    with grpc.insecure_channel(target) if credentials is None else grpc.secure_channel(target, credentials) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return any_status or bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def start_server(settings: Settings, tmp: Path, **env: str) -> ServerProcess:
    return _start_server(settings, tmp, env, serving=True)


def start_tls_server(settings: Settings, tmp: Path, credentials: grpc.ChannelCredentials, **env: str) -> ServerProcess:
    """`adplane serve` with TLS settings in `env`, once health answers SERVING over TLS (`credentials`)."""
    return _start_server(settings, tmp, env, serving=True, credentials=credentials)


def start_server_on(settings: Settings, tmp: Path, port: int, **env: str) -> ServerProcess:
    """`adplane serve` on `port` (e.g. the one a stopped server had), once health answers SERVING."""
    return _start_server(settings, tmp, env, serving=True, port=port)


def start_answering_server(settings: Settings, tmp: Path, **env: str) -> ServerProcess:
    """Waits only until health answers: a server without its database answers NOT_SERVING."""
    return _start_server(settings, tmp, env, serving=False)


def _start_server(
    settings: Settings,
    tmp: Path,
    env: dict[str, str],
    *,
    serving: bool,
    port: int | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> ServerProcess:
    port = port or free_port()
    log = tmp / f"server-{port}.log"
    process = subprocess.Popen(
        [ADPLANE, "serve"],
        env=stack_env(settings, GRPC_PORT=str(port), GRPC_HOST="127.0.0.1", **env),
        stdout=log.open("ab"),  # a server started again on its port adds to its log
        stderr=subprocess.STDOUT,
    )
    server = ServerProcess(process=process, port=port, log=log)
    wait_until(
        lambda: _serving(server.target, any_status=not serving, credentials=credentials),
        what="adplane serve",
        process=process,
        log=log,
    )
    return server


def start_server_processes(settings: Settings, tmp: Path, workers: int, **env: str) -> ServerProcess:
    """`adplane serve --workers N`, once every process answers on its own port (GRPC_PORT + 1 + i)."""
    return _start_server_processes(settings, tmp, workers, env, credentials=None)


def start_tls_server_processes(
    settings: Settings, tmp: Path, workers: int, credentials: grpc.ChannelCredentials, **env: str
) -> ServerProcess:
    """The same with TLS settings in `env`, each process asked over TLS (`credentials`)."""
    return _start_server_processes(settings, tmp, workers, env, credentials=credentials)


def _start_server_processes(
    settings: Settings, tmp: Path, workers: int, env: dict[str, str], *, credentials: grpc.ChannelCredentials | None
) -> ServerProcess:
    port = free_port_block(workers)
    log = tmp / f"server-{port}.log"
    process = subprocess.Popen(
        [ADPLANE, "serve", "--workers", str(workers)],
        env=stack_env(settings, GRPC_PORT=str(port), GRPC_HOST="127.0.0.1", **env),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    for own in range(port + 1, port + 1 + workers):
        wait_until(
            partial(_serving, f"127.0.0.1:{own}", credentials=credentials),
            what=f"server process on {own}",
            process=process,
            log=log,
        )
    return ServerProcess(process=process, port=port, log=log)


def start_envoy(settings: Settings, tmp: Path, *, upstream_port: int | None, **env: str) -> ServerProcess:
    """Envoy in front of `upstream_port`; None: the ports the settings in `env` give (GRPC_WORKERS)."""
    port, admin = free_port(), int(env.pop("ENVOY_ADMIN_PORT", 0)) or free_port()
    upstream = {"GRPC_UPSTREAM_PORT": str(upstream_port)} if upstream_port is not None else {}
    log = tmp / f"envoy-{port}.log"
    process = subprocess.Popen(
        [ADPLANE, "envoy"],
        env=stack_env(
            settings,
            HTTP_PORT=str(port),
            ENVOY_ADMIN_PORT=str(admin),
            ENVOY_METRICS_PORT=env.pop("ENVOY_METRICS_PORT", "") or str(free_port()),
            **upstream,
            **env,
        ),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{admin}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, what="envoy", process=process, log=log)
    return ServerProcess(process=process, port=port, log=log)


@dataclass
class Stack:
    server: ServerProcess
    envoy: ServerProcess

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.envoy.port}"


@pytest.fixture(scope="session")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    server = start_server(settings, tmp)
    envoy = start_envoy(settings, tmp, upstream_port=server.port)
    yield Stack(server=server, envoy=envoy)
    envoy.stop()
    assert server.stop() == 0, server.log.read_text()[-4000:]


class _Authenticate(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds a caller's credentials to every call that does not bring its own."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        if not client_call_details.metadata:
            client_call_details = client_call_details._replace(metadata=grpc.aio.Metadata(*self._metadata))
        return await continuation(client_call_details, request)


@pytest.fixture
async def admin(infrastructure: Infrastructure) -> Caller:
    """A superuser, signed in."""
    return await make_caller(infrastructure, superuser=True)


@pytest.fixture
async def channel(stack: Stack, admin: Caller) -> AsyncIterator[grpc.aio.Channel]:
    """gRPC straight to the server, as the superuser unless a call passes its own metadata."""
    async with grpc.aio.insecure_channel(stack.server.target, interceptors=[_Authenticate(admin.metadata)]) as channel:
        yield channel


@pytest.fixture
async def anonymous_channel(stack: Stack) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(stack.server.target) as channel:
        yield channel


@pytest.fixture
async def envoy_channel(stack: Stack, admin: Caller) -> AsyncIterator[grpc.aio.Channel]:
    """Native gRPC through Envoy's listener, as the superuser."""
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{stack.envoy.port}", interceptors=[_Authenticate(admin.metadata)]
    ) as channel:
        yield channel


@pytest.fixture
async def http(stack: Stack, admin: Caller) -> AsyncIterator[httpx.AsyncClient]:
    """REST through Envoy, as the superuser."""
    async with httpx.AsyncClient(base_url=stack.rest_url, timeout=10, headers=admin.headers) as client:
        yield client


@pytest.fixture
async def anonymous_http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.rest_url, timeout=10) as client:
        yield client
