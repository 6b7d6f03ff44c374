"""What the `make run` supervisor watches besides its children: whether PostgreSQL and Redis still
answer, and whether Envoy routes to a serving server (the banner waits for that)."""

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

CONNECT_TIMEOUT = 1.0
POSTGRES_DEFAULT_PORT = 5432
REDIS_DEFAULT_PORT = 6379


def _connects(family: socket.AddressFamily, address: str | tuple[str, int]) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(address)
    except OSError:
        return False
    return True


def postgres_reachable(url: str) -> Callable[[], bool]:
    """Whether something accepts connections where `url` points (a unix socket directory or host)."""
    parsed = make_url(url)
    port = parsed.port or POSTGRES_DEFAULT_PORT
    socket_dir = parsed.query.get("host")
    if isinstance(socket_dir, str) and socket_dir.startswith("/"):
        path = f"{socket_dir}/.s.PGSQL.{port}"
        return lambda: _connects(socket.AF_UNIX, path)
    host = parsed.host or "127.0.0.1"
    return lambda: _connects(socket.AF_INET, (host, port))


def redis_reachable(url: str) -> Callable[[], bool]:
    parsed = urlsplit(url)
    if parsed.scheme == "unix":
        path = parsed.path
        return lambda: _connects(socket.AF_UNIX, path)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or REDIS_DEFAULT_PORT
    return lambda: _connects(socket.AF_INET, (host, port))


@dataclass
class Probe:
    """A backing service the stack needs; reports when it stops answering and when it is back."""

    name: str
    reachable: Callable[[], bool]
    up: bool = True

    def check(self) -> str | None:
        """A line to print when the service went away or came back since the last check."""
        now_up = self.reachable()
        if now_up == self.up:
            return None
        self.up = now_up
        if now_up:
            return f"adplane dev: {self.name} is answering again"
        return f"adplane dev: {self.name} is not answering; the server answers UNAVAILABLE until it is back"


def routes_to_serving_server(port: int, *, ca_file: Path | None = None, timeout: float = 1.0) -> bool:
    """Whether a gRPC health check sent through Envoy's listener comes back SERVING; over TLS,
    trusting the CA of `ca_file`, when it is given."""
    target = f"127.0.0.1:{port}"
    channel = (
        grpc.insecure_channel(target)
        if ca_file is None
        else grpc.secure_channel(target, grpc.ssl_channel_credentials(ca_file.read_bytes()))
    )
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
