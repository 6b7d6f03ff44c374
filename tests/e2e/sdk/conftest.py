"""Two server processes behind one Envoy, for the SDKs' resuming watches: a test stops one under a
stream (SIGKILL: the connection drops, nothing is said) and starts it again on its port.

The TypeScript tests run in node, so they ask for the same through a small HTTP control server on
loopback (`control`): POST /kill {"port": P} or {"holder": true} (the process Envoy sends the open
watch to), POST /start {"port": P}; both answer {"port": P}.
"""

import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from devstack.embedded import free_port, free_port_block
from server.config import Settings
from tests.e2e.conftest import ServerProcess, start_envoy, start_server_on, wait_until


@dataclass
class ServerPair:
    settings: Settings
    tmp: Path
    envoy: ServerProcess
    admin_port: int
    servers: dict[int, ServerProcess] = field(default_factory=dict)

    @property
    def ports(self) -> list[int]:
        return sorted(self.servers)

    @property
    def envoy_target(self) -> str:
        return f"127.0.0.1:{self.envoy.port}"

    @property
    def web_url(self) -> str:
        return f"http://{self.envoy_target}"

    def _endpoints(self, stat: str) -> dict[int, str]:
        """Envoy's view of each server process (`/clusters`): the value of `stat` by port."""
        text = httpx.get(f"http://127.0.0.1:{self.admin_port}/clusters", timeout=5).text
        found = {}
        for line in text.splitlines():
            parts = line.split("::")
            if len(parts) == 4 and parts[0] == "grpc_server" and parts[2] == stat:
                found[int(parts[1].rsplit(":", 1)[1])] = parts[3]
        return found

    def holder(self) -> int:
        """The port of the one process Envoy has an open request with (the watch under test)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            active = [port for port, count in self._endpoints("rq_active").items() if int(count) > 0]
            if len(active) == 1:
                return active[0]
            time.sleep(0.05)
        raise AssertionError(f"no single process holds the watch: {self._endpoints('rq_active')}")

    def kill(self, port: int) -> None:
        server = self.servers[port]
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)

    def start(self, port: int) -> None:
        """Start the process on `port` again, and wait until Envoy sends it calls."""
        if self.servers[port].process.poll() is None:
            return
        self.servers[port] = start_server_on(self.settings, self.tmp, port)
        wait_until(self.all_healthy, what="envoy's health checks", process=self.envoy.process, log=self.envoy.log)

    def all_healthy(self) -> bool:
        flags = self._endpoints("health_flags")
        return len(flags) == len(self.servers) and all(flag == "healthy" for flag in flags.values())


@pytest.fixture(scope="session")
def pair(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    """Envoy on GRPC_PORT with GRPC_WORKERS=2 sends to GRPC_PORT+1 and +2: one server process each."""
    tmp = tmp_path_factory.mktemp("pair")
    base = free_port_block(2)
    servers = {port: start_server_on(settings, tmp, port) for port in (base + 1, base + 2)}
    admin = free_port()
    envoy = start_envoy(
        settings, tmp, upstream_port=None, GRPC_PORT=str(base), GRPC_WORKERS="2", ENVOY_ADMIN_PORT=str(admin)
    )
    pair = ServerPair(settings=settings, tmp=tmp, envoy=envoy, admin_port=admin, servers=servers)
    wait_until(pair.all_healthy, what="envoy's health checks", process=envoy.process, log=envoy.log)
    yield pair
    envoy.stop()
    for server in pair.servers.values():
        server.stop()


class _Control(BaseHTTPRequestHandler):
    pair: ServerPair

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        try:
            port = self.pair.holder() if body.get("holder") else int(body["port"])
            if self.path == "/kill":
                self.pair.kill(port)
            elif self.path == "/start":
                self.pair.start(port)
            else:
                raise KeyError(self.path)
        except (AssertionError, KeyError, ValueError, TimeoutError, RuntimeError) as error:
            self._answer(400, {"error": repr(error)})
            return
        self._answer(200, {"port": port})

    def _answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def control(pair: ServerPair) -> Iterator[str]:
    """The URL of the control server for `pair`."""
    handler = type("Control", (_Control,), {"pair": pair})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=10)
