"""The Envoy config: what it is rendered from, that Envoy accepts it, and what the edge does with it.

The behaviour tests put Envoy in front of a stub WorkspaceService, so they check the config (routes,
transcoding options, gRPC-Web, error conversion) and nothing of the real servicer.
"""

import asyncio
import base64
import hashlib
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
import pytest
import yaml
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from adplane.v1 import workspace_pb2, workspace_service_pb2_grpc
from adplane.v1 import workspace_service_pb2 as pb
from devstack.embedded import free_port
from server.config import Settings
from server.edge.envoy import (
    API_REFERENCE_PATH,
    adplane_services,
    envoy_binary,
    envoy_command,
    render_envoy_config,
    write_envoy_config,
)
from server.interceptors.request_logging import REQUEST_ID_PATTERN
from tests.waits import eventually

type Context = grpc.aio.ServicerContext[Any, Any]

APP_ORIGIN = "https://app.example.com"


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def test_services_are_those_of_the_api_package() -> None:
    services = adplane_services()

    assert "adplane.v1.WorkspaceService" in services
    assert all(service.startswith("adplane.v1.") for service in services)


def test_reads_are_retried_after_any_failure_and_other_calls_only_when_unsent() -> None:
    config = yaml.safe_load(render_envoy_config(_settings()))
    listener = next(item for item in config["static_resources"]["listeners"] if item["name"] == "edge")
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    retried = {
        route["match"].get("path") or route["match"].get("prefix") or route["match"]["safe_regex"]["regex"]: set(
            route["route"]["retry_policy"]["retry_on"].split(",")
        )
        for route in routes
        if "route" in route
    }
    unsent = {"connect-failure", "refused-stream", "reset-before-request"}
    # A read (GET in its HTTP rule) changes nothing: retried after a reset and on UNAVAILABLE too.
    assert retried["/adplane.v1.AccountService/GetAccount"] == unsent | {"reset", "unavailable"}
    assert retried["/grpc.health.v1.Health/Check"] == unsent | {"reset", "unavailable"}
    assert "/adplane.v1.WorkspaceService/CreateWorkspace" not in retried
    # Writes (the catch-all) and streams: only what never reached a server.
    assert retried["/"] == unsent
    assert [retry_on for route, retry_on in retried.items() if "Watch" in route] == [unsent]
    cluster = next(item for item in config["static_resources"]["clusters"] if item["name"] == "grpc_server")
    assert cluster["outlier_detection"]["consecutive_local_origin_failure"] == 2


def test_rendered_config_carries_the_settings() -> None:
    settings = _settings(
        http_port=18080,
        envoy_admin_port=19901,
        envoy_metrics_port=19902,
        grpc_upstream_host="server",
        grpc_port=50055,
    )

    config = yaml.safe_load(render_envoy_config(settings))

    listeners = {listener["name"]: listener for listener in config["static_resources"]["listeners"]}
    clusters = {cluster["name"]: cluster for cluster in config["static_resources"]["clusters"]}
    listener = listeners["edge"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 18080}
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 19901}
    endpoint = clusters["grpc_server"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert endpoint["endpoint"]["address"]["socket_address"] == {"address": "server", "port_value": 50055}
    # The stats listener forwards to the admin interface, which itself stays on loopback; it binds
    # METRICS_HOST (development: loopback too).
    assert listeners["metrics"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 19902}
    admin = clusters["envoy_admin"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert admin["endpoint"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 19901}
    filters = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    assert [f["name"].rsplit(".", 1)[-1] for f in filters] == [
        "header_mutation",
        "cors",
        "lua",
        "buffer",
        "strict_json",
        "grpc_web",
        "grpc_json_transcoder",
        "router",
    ]
    transcoder = next(f for f in filters if f["name"].endswith("grpc_json_transcoder"))["typed_config"]
    assert transcoder["services"] == adplane_services()
    assert Path(transcoder["proto_descriptor"]).is_file()


def test_envoy_accepts_the_rendered_config(tmp_path: Path) -> None:
    config = write_envoy_config(
        _settings(http_port=free_port(), envoy_admin_port=free_port(), envoy_metrics_port=free_port()),
        tmp_path / "e.yaml",
    )

    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "--config-path", str(config), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


class StubWorkspaces:
    """Echoes ids back; `missing` is NOT_FOUND with an ErrorInfo; remembers the last x-request-id.

    Only the RPCs these tests call are written out; every other one answers UNIMPLEMENTED.
    """

    def __init__(self) -> None:
        self.request_id: str | bytes | None = None

    async def GetWorkspace(self, request: pb.GetWorkspaceRequest, context: Context) -> pb.GetWorkspaceResponse:
        self.request_id = dict(context.invocation_metadata() or ()).get("x-request-id")
        if request.workspace_id == "missing":
            detail = any_pb2.Any()
            detail.Pack(error_details_pb2.ErrorInfo(reason="WORKSPACE_NOT_FOUND", domain="adplane"))
            status = status_pb2.Status(code=code_pb2.NOT_FOUND, message="no such workspace", details=[detail])
            await context.abort_with_status(rpc_status.to_status(status))
        return pb.GetWorkspaceResponse(workspace=workspace_pb2.Workspace(id=request.workspace_id, name="Acme"))

    async def ListWorkspaces(self, request: pb.ListWorkspacesRequest, context: Context) -> pb.ListWorkspacesResponse:
        # Echo the parsed query parameters, to see how Envoy mapped them.
        return pb.ListWorkspacesResponse(next_page_token=f"{request.page_size}/{request.status}")

    def __getattr__(self, name: str) -> Callable[[Any, Context], Awaitable[Any]]:
        async def unimplemented(request: Any, context: Context) -> Any:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED)

        return unimplemented


@dataclass
class Edge:
    url: str
    stub: StubWorkspaces


@pytest.fixture(scope="module")
async def edge(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Edge]:
    stub = StubWorkspaces()
    server = grpc.aio.server()
    workspace_service_pb2_grpc.add_WorkspaceServiceServicer_to_server(cast(Any, stub), server)
    upstream_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    settings = _settings(
        http_port=free_port(),
        envoy_admin_port=free_port(),
        envoy_metrics_port=free_port(),
        grpc_port=upstream_port,
        cors_allowed_origins=f"{APP_ORIGIN},http://localhost:*",
    )
    config = write_envoy_config(settings, tmp_path_factory.mktemp("envoy") / "envoy.yaml")
    envoy = await asyncio.create_subprocess_exec(*envoy_command(config))
    try:
        async with httpx.AsyncClient() as client:

            async def ready() -> bool:
                assert envoy.returncode is None, "envoy exited"
                try:
                    answer = await client.get(f"http://127.0.0.1:{settings.envoy_admin_port}/ready")
                except httpx.TransportError:
                    return False
                return answer.status_code == 200

            await eventually(ready, within=30, what="envoy ready", every=0.05)
        yield Edge(url=f"http://127.0.0.1:{settings.http_port}", stub=stub)
    finally:
        envoy.terminate()
        await asyncio.wait_for(envoy.wait(), timeout=10)
        await server.stop(None)


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/api/workspaces/abc", "/api/workspaces/abc/"])
async def test_rest_get_is_transcoded_with_or_without_trailing_slash(edge: Edge, path: str) -> None:
    async with httpx.AsyncClient(base_url=edge.url) as client:
        response = await client.get(path)

    assert response.status_code == 200
    # Proto field names, and default values printed rather than omitted.
    assert response.json() == {
        "workspace": {"id": "abc", "name": "Acme", "status": "WORKSPACE_STATUS_UNSPECIFIED", "etag": ""}
    }


@pytest.mark.asyncio
async def test_query_parameters_bind_and_enums_parse_case_insensitively(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=edge.url) as client:
        response = await client.get("/api/workspaces", params={"page_size": 7, "status": "workspace_status_active"})

    assert response.json()["next_page_token"] == f"7/{workspace_pb2.WORKSPACE_STATUS_ACTIVE}"


@pytest.mark.asyncio
async def test_unknown_query_parameter_and_unknown_path_are_rejected_by_envoy(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=edge.url) as client:
        unknown_parameter = await client.get("/api/workspaces", params={"colour": "red"})
        unknown_path = await client.get("/api/nothing-here")
        # auto_mapping is off: no JSON on gRPC method paths.
        method_path = await client.post("/adplane.v1.WorkspaceService/GetWorkspace", json={"workspace_id": "abc"})

    assert unknown_parameter.status_code == 400
    assert unknown_path.status_code == 404
    assert method_path.status_code == 404


@pytest.mark.asyncio
async def test_grpc_error_becomes_http_status_with_status_details(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=edge.url) as client:
        response = await client.get("/api/workspaces/missing")

    assert response.status_code == 404
    assert response.json() == {
        "code": code_pb2.NOT_FOUND,
        "message": "no such workspace",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "WORKSPACE_NOT_FOUND",
                "domain": "adplane",
                "metadata": {},
            }
        ],
    }


@pytest.mark.asyncio
async def test_request_id_is_kept_forwarded_and_returned(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=edge.url) as client:
        given = await client.get("/api/workspaces/abc", headers={"x-request-id": "client-chosen"})
        assert edge.stub.request_id == "client-chosen"
        generated = await client.get("/api/workspaces/abc")

    assert given.headers["x-request-id"] == "client-chosen"
    assert generated.headers["x-request-id"] == edge.stub.request_id
    assert edge.stub.request_id not in (None, "", "client-chosen")


@pytest.mark.asyncio
async def test_native_grpc_passes_through(edge: Edge) -> None:
    async with grpc.aio.insecure_channel(edge.url.removeprefix("http://")) as channel:
        stub = workspace_service_pb2_grpc.WorkspaceServiceStub(channel)
        reply = await stub.GetWorkspace(pb.GetWorkspaceRequest(workspace_id="native"))
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetWorkspace(pb.GetWorkspaceRequest(workspace_id="missing"))

    assert reply.workspace.id == "native"
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.asyncio
async def test_grpc_web_is_translated_and_cors_allows_browsers(edge: Edge) -> None:
    message = pb.GetWorkspaceRequest(workspace_id="web").SerializeToString()
    frame = b"\x00" + struct.pack(">I", len(message)) + message  # uncompressed gRPC-Web data frame
    origin = {"origin": "http://localhost:3000"}
    async with httpx.AsyncClient(base_url=edge.url) as client:
        preflight = await client.options(
            "/adplane.v1.WorkspaceService/GetWorkspace",
            headers={**origin, "access-control-request-method": "POST", "access-control-request-headers": "x-grpc-web"},
        )
        response = await client.post(
            "/adplane.v1.WorkspaceService/GetWorkspace",
            content=frame,
            headers={**origin, "content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
        )

    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert response.status_code == 200
    length = struct.unpack(">I", response.content[1:5])[0]
    assert pb.GetWorkspaceResponse.FromString(response.content[5 : 5 + length]).workspace.id == "web"
    assert b"grpc-status:0" in response.content[5 + length :]  # the trailer frame
    assert "grpc-status" in response.headers["access-control-expose-headers"]


def _endpoints(settings: Settings) -> list[dict[str, int | str]]:
    config = yaml.safe_load(render_envoy_config(settings))
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == "grpc_server")
    return [
        e["endpoint"]["address"]["socket_address"] for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]


def test_several_server_processes_are_one_endpoint_each() -> None:
    """GRPC_WORKERS=3: Envoy balances over each process's own port, not the shared one."""
    settings = _settings(grpc_upstream_host="server", grpc_port=50055, grpc_workers=3)
    assert _endpoints(settings) == [{"address": "server", "port_value": port} for port in (50056, 50057, 50058)]
    # An explicit upstream port (another machine's server, a test stub) is the one endpoint.
    assert _endpoints(_settings(grpc_port=50055, grpc_workers=3, grpc_upstream_port=6000)) == [
        {"address": "127.0.0.1", "port_value": 6000}
    ]


def test_several_nodes_get_every_server_process_port_each() -> None:
    settings = _settings(grpc_upstream_host="127.0.0.2, 127.0.0.3", grpc_port=50055, grpc_workers=2)
    assert _endpoints(settings) == [
        {"address": host, "port_value": port} for host in ("127.0.0.2", "127.0.0.3") for port in (50056, 50057)
    ]


def _is_edge_status(response: httpx.Response, code: int, reason: str) -> str:
    """Asserts a google.rpc.Status JSON reply with an adplane ErrorInfo; returns its message."""
    assert response.headers["content-type"] == "application/json", response.text
    body = response.json()
    assert body["code"] == code, body
    assert body["details"] == [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "adplane", "metadata": {}}
    ]
    return str(body["message"])


@pytest.mark.asyncio
async def test_envoys_own_replies_are_status_json(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=edge.url) as client:
        unknown_route = await client.get("/api/nothing-here")
        unknown_method = await client.put("/api/workspaces")
        trace = await client.request("TRACE", "/api/workspaces/abc/")
        malformed = await client.post("/api/workspaces", content=b'{"name": ')
        unknown_parameter = await client.get("/api/workspaces", params={"colour": "red"})
        unknown_enum = await client.get("/api/workspaces", params={"status": "NOPE"})
        underscore = await client.get("/api/workspaces", headers={"x_forwarded": "1"})
        not_metadata = await client.get("/api/workspaces", headers={"i~": "x", "x-request-id": "a b"})
        nul_in_path = await client.get("/api/workspaces/a%00b")
        big_headers = await client.get("/api/workspaces", headers={"x-big": "a" * 20 * 1024})
        big_body = await client.post("/api/workspaces", content=b'{"name": "' + b"a" * (5 * 1024 * 1024) + b'"}')

    assert unknown_route.status_code == 404
    assert "/api/nothing-here" in _is_edge_status(unknown_route, code_pb2.NOT_FOUND, "ROUTE_NOT_FOUND")
    # A path that exists, with a method it does not have: 405 and the methods it has.
    assert unknown_method.status_code == 405
    assert unknown_method.headers["allow"] == "GET, POST"
    _is_edge_status(unknown_method, code_pb2.NOT_FOUND, "ROUTE_NOT_FOUND")
    assert trace.status_code == 405
    assert trace.headers["allow"] == "DELETE, GET, PATCH"
    for response in (malformed, unknown_parameter, unknown_enum, underscore, nul_in_path):
        assert response.status_code == 400, response.text
        _is_edge_status(response, code_pb2.INVALID_ARGUMENT, "INVALID_REQUEST"), response.request
    assert "colour" in unknown_parameter.json()["message"]
    assert not_metadata.status_code == 400
    _is_edge_status(not_metadata, code_pb2.INVALID_ARGUMENT, "INVALID_HEADER_NAME")
    assert big_headers.status_code == 431
    # Fixed messages: nothing of Envoy's header names or sizes.
    assert _is_edge_status(big_headers, code_pb2.INVALID_ARGUMENT, "REQUEST_HEADERS_TOO_LARGE") == (
        "the request headers are larger than the limit"
    )
    assert big_body.status_code == 413
    _is_edge_status(big_body, code_pb2.INVALID_ARGUMENT, "REQUEST_BODY_TOO_LARGE")


@pytest.mark.asyncio
async def test_a_grpc_message_over_the_limit_is_resource_exhausted_at_the_edge(edge: Edge) -> None:
    async with grpc.aio.insecure_channel(edge.url.removeprefix("http://")) as channel:
        stub = workspace_service_pb2_grpc.WorkspaceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetWorkspace(pb.GetWorkspaceRequest(workspace_id="a" * (5 * 1024 * 1024)))

    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


ODD_REQUEST_IDS = [
    "a\tb",
    "",
    " ",
    "a b",
    "x" * 129,
    "x" * 10_000,
    "caf\u00e9",
    "\u65e5\u672c",
    "a;b",
    "a,b",
    "<script>",
    "../../etc/passwd",
    "%00",
    "id\x7f",
    *(f"a{chr(c)}b" for c in range(0x20, 0x7F) if not (chr(c).isalnum() or chr(c) in "._:-")),
    *(f"a{chr(c)}b" for c in range(0x80, 0x100)),
]


async def _raw_get(url: str, path: str, header: bytes) -> tuple[int, dict[str, str]]:
    """One HTTP/1.1 GET with a header line exactly as given (httpx refuses most odd values)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nhost: edge\r\n" + header + b"\r\nconnection: close\r\n\r\n")
    await writer.drain()
    head = (await reader.read(-1)).split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    writer.close()
    headers = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}


@pytest.mark.asyncio
async def test_odd_request_ids_are_replaced_never_echoed(edge: Edge) -> None:
    seen: set[str] = set()
    for value in ODD_REQUEST_IDS:
        status, headers = await _raw_get(edge.url, "/api/workspaces/abc", b"x-request-id: " + value.encode())
        assert status < 500, (value, status)
        if status == 200:
            returned = headers["x-request-id"]
            assert returned != value
            assert REQUEST_ID_PATTERN.fullmatch(returned), returned
            assert edge.stub.request_id == returned
            seen.add(returned)
        else:  # refused by Envoy's HTTP parser: a Status JSON 400
            assert status == 400, value
            assert headers["content-type"] == "application/json"
    async with httpx.AsyncClient(base_url=edge.url) as client:
        kept = await client.get("/api/workspaces/abc", headers={"x-request-id": "job-42:retry.1"})

    # About half reach the server (Envoy's parser refuses the rest), each with a fresh id.
    assert len(seen) > len(ODD_REQUEST_IDS) // 3
    assert kept.headers["x-request-id"] == "job-42:retry.1"


def _cors_and_vary(response: httpx.Response) -> tuple[str | None, str | None]:
    return response.headers.get("access-control-allow-origin"), response.headers.get("vary")


@pytest.mark.asyncio
async def test_cors_answers_the_configured_origins_only_and_every_answer_varies_on_origin(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=edge.url) as client:

        async def get(origin: str, path: str = "/api/workspaces/abc", **headers: str) -> httpx.Response:
            return await client.get(path, headers={"origin": origin, **headers})

        async def preflight(origin: str) -> httpx.Response:
            return await client.options(
                "/api/workspaces", headers={"origin": origin, "access-control-request-method": "POST"}
            )

        configured = await get(APP_ORIGIN)
        any_port = await get("http://localhost:5173")
        no_port = await get("http://localhost")
        other_scheme = await get("http://app.example.com")
        foreign = await get("https://evil.example")
        null = await get("null")
        without = await client.get("/api/workspaces/abc")
        # Answers the edge or the server make themselves carry the same headers.
        not_found = await get(APP_ORIGIN, "/api/nothing-here")
        refused_header = await get(APP_ORIGIN, **{"i~": "x"})
        server_error = await get(APP_ORIGIN, "/api/workspaces/missing")
        allowed_preflight = await preflight(APP_ORIGIN)
        foreign_preflight = await preflight("https://evil.example")

    for allowed, origin in (
        (configured, APP_ORIGIN),
        (any_port, "http://localhost:5173"),
        (no_port, "http://localhost"),
    ):
        assert _cors_and_vary(allowed) == (origin, "Origin")
    for refused in (other_scheme, foreign, null, without):
        assert _cors_and_vary(refused) == (None, "Origin"), refused.request.headers.get("origin")
    for answer in (not_found, refused_header, server_error, allowed_preflight):
        assert _cors_and_vary(answer) == (APP_ORIGIN, "Origin"), answer.status_code
    assert (not_found.status_code, refused_header.status_code, server_error.status_code) == (404, 400, 404)
    assert allowed_preflight.status_code == 200
    assert "POST" in allowed_preflight.headers["access-control-allow-methods"]
    assert _cors_and_vary(foreign_preflight) == (None, "Origin")
    assert "access-control-allow-methods" not in foreign_preflight.headers


def test_without_cors_origins_no_policy_and_no_vary() -> None:
    """Production's default: no origin may call cross-origin, and no answer depends on the Origin."""
    settings = _settings(environment="production")
    assert settings.cors_origins == []
    config = yaml.safe_load(render_envoy_config(settings))
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert manager["route_config"]["virtual_hosts"][0]["typed_per_filter_config"] == {}
    vary = next(f for f in manager["http_filters"] if f["name"].endswith("header_mutation"))
    assert vary["typed_config"]["mutations"] == {"response_mutations": []}
    # Development and tests allow this machine's pages, on any port.
    assert _settings(environment="development").cors_origins == _settings(environment="test").cors_origins != []


@pytest.mark.parametrize("origins", ["null", "*", "https://*.example.com", "app.example.com", "https://a.com/path"])
def test_cors_origins_that_would_let_any_page_in_are_refused(origins: str) -> None:
    with pytest.raises(ValueError, match="not an origin"):
        _settings(cors_allowed_origins=f"https://ok.example.com,{origins}")


def test_metrics_listeners_bind_loopback_outside_production() -> None:
    def metrics_address(settings: Settings) -> str:
        config = yaml.safe_load(render_envoy_config(settings))
        listener = next(item for item in config["static_resources"]["listeners"] if item["name"] == "metrics")
        return str(listener["address"]["socket_address"]["address"])

    assert _settings().metrics_host == _settings(environment="test").metrics_host == "127.0.0.1"
    assert _settings(environment="production").metrics_host == "0.0.0.0"
    assert _settings(environment="production", metrics_host="10.0.0.5").metrics_host == "10.0.0.5"
    assert metrics_address(_settings()) == "127.0.0.1"
    assert metrics_address(_settings(environment="production")) == "0.0.0.0"


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/api/docs", "/api/openapi.json"])
async def test_the_document_and_its_page_carry_a_content_security_policy_and_answer_head(edge: Edge, path: str) -> None:
    async with httpx.AsyncClient(base_url=edge.url) as client:
        got = await client.get(path)
        head = await client.head(path)

    assert got.status_code == head.status_code == 200
    assert head.content == b""
    for header in ("content-type", "content-length", "content-security-policy", "x-content-type-options"):
        assert head.headers[header] == got.headers[header], header
    assert int(head.headers["content-length"]) == len(got.content)
    assert got.headers["x-content-type-options"] == "nosniff"
    policy = {
        name: value for name, _, value in (d.partition(" ") for d in got.headers["content-security-policy"].split("; "))
    }
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    if path == "/api/docs":
        # Only the page's own inline scripts run: each by its hash, nothing inline besides.
        page = API_REFERENCE_PATH.read_text(encoding="utf-8")
        initializer = page[page.rindex("<script>") + len("<script>") : page.rindex("</script>")]
        digest = base64.b64encode(hashlib.sha256(initializer.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy["script-src"].split()
        assert "'unsafe-inline'" not in policy["script-src"]
        assert "'unsafe-eval'" not in policy["script-src"]
        assert policy["connect-src"] == "'self'"


@pytest.mark.asyncio
async def test_a_header_block_over_the_limit_is_answered_by_the_edge_without_naming_headers(edge: Edge) -> None:
    big = {"x-big": "a" * 20 * 1024}
    async with httpx.AsyncClient(base_url=edge.url) as client:
        rest = await client.get("/api/workspaces/abc", headers=big)
    async with grpc.aio.insecure_channel(edge.url.removeprefix("http://")) as channel:
        stub = workspace_service_pb2_grpc.WorkspaceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetWorkspace(pb.GetWorkspaceRequest(workspace_id="abc"), metadata=tuple(big.items()))

    assert rest.status_code == 431
    assert _is_edge_status(rest, code_pb2.INVALID_ARGUMENT, "REQUEST_HEADERS_TOO_LARGE") == (
        "the request headers are larger than the limit"
    )
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.value.details() == "the request headers are larger than the limit"
