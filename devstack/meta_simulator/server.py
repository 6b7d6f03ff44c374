"""`SimulatorServer`: the simulator as a real HTTP server on loopback, in a background thread.

Built on the standard library's `ThreadingHTTPServer`, the simplest robust option with nothing
installed: the stdlib parses HTTP/1.1 (keep-alive included), each connection gets its own thread so
injected latency delays one call without stalling the others, and a server on its own thread works the
same from synchronous tests, from async tests (whose event loop it never blocks) and from the command
line. An `asyncio.start_server` version would need a hand-written HTTP parser and, to serve while a
test's loop is busy, a loop thread of its own anyway.
"""

import json
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self, cast
from urllib.parse import parse_qsl, urlsplit

from devstack.meta_simulator.control import CONTROL_PREFIX, ControlApi
from devstack.meta_simulator.graph_api import GraphApi, GraphReply, GraphRequest
from devstack.meta_simulator.state import SimulatorState

# Idle keep-alive connections are dropped after this long (httpx drops its own after 5 s).
IDLE_CONNECTION_SECONDS = 30


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    # Do not wait for handler threads on close: they may sit on idle keep-alive connections.
    block_on_close = False

    def __init__(self, address: tuple[str, int], graph: GraphApi, control: ControlApi) -> None:
        super().__init__(address, _Handler)
        self.graph = graph
        self.control = control


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_SECONDS
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs add ~40 ms to each answer.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: object) -> None:
        pass  # an access log would only drown the test output

    def _handle(self) -> None:
        server = cast(_HttpServer, self.server)
        raw_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        try:
            if url.path == CONTROL_PREFIX or url.path.startswith(CONTROL_PREFIX + "/"):
                payload = json.loads(raw_body) if raw_body else None
                status, body = server.control.handle(self.command, url.path, payload)
                self._write(status, body, {})
                return
            reply = server.graph.handle(self._graph_request(url.path, url.query, raw_body))
        except json.JSONDecodeError:
            self._write(400, {"error": "the body is not JSON"}, {})
            return
        except Exception as error:
            # A simulator bug must show as one, not pass for a Meta outage the client would retry.
            traceback.print_exc(file=sys.stderr)
            self._write(500, {"error": {"message": f"simulator bug: {error!r}", "type": "SimulatorError"}}, {})
            return
        if reply.disconnect:
            self.close_connection = True
            return
        self._write_graph(reply)

    def _graph_request(self, path: str, query: str, raw_body: bytes) -> GraphRequest:
        params = dict(parse_qsl(query, keep_blank_values=True))
        content_type = self.headers.get("Content-Type", "")
        if raw_body and content_type.startswith("application/json"):
            decoded = json.loads(raw_body)
            if isinstance(decoded, dict):
                params.update(
                    {name: value if isinstance(value, str) else json.dumps(value) for name, value in decoded.items()}
                )
        elif raw_body:
            params.update(parse_qsl(raw_body.decode(), keep_blank_values=True))
        token = params.pop("access_token", None)
        authorization = self.headers.get("Authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and credentials:
            token = credentials.strip()
        return GraphRequest(
            method=self.command,
            path=path,
            params=params,
            token=token,
            host=self.headers.get("Host", "127.0.0.1"),
        )

    def _write_graph(self, reply: GraphReply) -> None:
        headers = {**reply.headers, "x-fb-trace-id": "simulator"}
        self._write(reply.status, reply.body, headers)

    def _write(self, status: int, body: object, headers: dict[str, str]) -> None:
        encoded = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(encoded)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(encoded)


class SimulatorServer:
    """A Graph API simulator on `host:port` (port 0: any free port). Dev and tests only.

    `start()` returns the base URL (`http://127.0.0.1:<port>`); the Graph API is under
    `<base_url>/<version>/` and the control API under `<base_url>/_control/`. `state` is the
    in-memory Meta, for in-process tests that prefer it to the control API.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, state: SimulatorState | None = None) -> None:
        self.host = host
        self.port = port
        self.state = state or SimulatorState()
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._http is None:
            raise RuntimeError("the simulator is not running")
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        if self._http is not None:
            raise RuntimeError("the simulator is already running")
        self._http = _HttpServer((self.host, self.port), GraphApi(self.state), ControlApi(self.state))
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.1}, name="meta-simulator", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._http is None:
            return
        self._http.shutdown()
        self._http.server_close()
        if self._thread is not None:
            self._thread.join()
        self._http = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
