"""405 Method Not Allowed, with `Allow`, for a method a REST path does not have.

The transcoder refuses a request no `google.api.http` rule matches with 404, whatever the reason; a
known path with another method deserves 405 and the methods it has (RFC 9110 15.5.6). One route per
REST path, before the catch-all, answers every other method (OPTIONS aside: CORS preflights are the
CORS filter's) with 405; Envoy's local reply mapping (local_replies.py) writes the Status JSON.
"""

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor_pb2 import FileDescriptorSet, MethodOptions

# A path variable ({id}, {name=workspaces/*}) is one segment here: adplane's routes have no others.
_VARIABLE = re.compile(r"\{[^}]+\}")
_TRANSCODER = "envoy.filters.http.grpc_json_transcoder"


def _rules(rule: http_pb2.HttpRule) -> list[tuple[str, str]]:
    pattern = rule.WhichOneof("pattern")
    found = []
    if pattern == "custom":
        found.append((rule.custom.kind.upper(), rule.custom.path))
    elif pattern is not None:
        found.append((pattern.upper(), getattr(rule, pattern)))
    for extra in rule.additional_bindings:
        found.extend(_rules(extra))
    return found


def rest_methods(descriptor_path: Path, package: str) -> dict[str, set[str]]:
    """REST path (as the regex Envoy matches it with) -> the HTTP methods its `google.api.http` rules
    give it; templates that differ only in their variables' names are one path."""
    methods: dict[str, set[str]] = defaultdict(set)
    for file in FileDescriptorSet.FromString(descriptor_path.read_bytes()).file:
        if file.package != package:
            continue
        for service in file.service:
            for method in service.method:
                options = MethodOptions.FromString(method.options.SerializeToString())
                if options.HasExtension(annotations_pb2.http):
                    for verb, template in _rules(options.Extensions[annotations_pb2.http]):
                        methods[_path_regex(template)].add(verb)
    return methods


def _path_regex(template: str) -> str:
    parts = _VARIABLE.split(template)
    # A variable is a segment without its custom verb (`{id}:approve`); Envoy matches with and without a
    # trailing slash (see envoy.yaml), and a route's regex never sees the query string.
    return "^" + "[^/:]+".join(re.escape(part) for part in parts) + "/?$"


def method_not_allowed_routes(descriptor_path: Path, package: str) -> list[dict[str, Any]]:
    routes = []
    for path, methods in sorted(rest_methods(descriptor_path, package).items()):
        allowed = sorted(methods)
        routes.append(
            {
                "match": {
                    "safe_regex": {"regex": path},
                    "headers": [
                        {
                            "name": ":method",
                            "string_match": {"safe_regex": {"regex": "|".join([*allowed, "OPTIONS"])}},
                            "invert_match": True,
                        }
                    ],
                },
                "direct_response": {"status": 405},
                "response_headers_to_add": [{"header": {"key": "allow", "value": ", ".join(allowed)}}],
                "typed_per_filter_config": {
                    _TRANSCODER: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}
                },
            }
        )
    return routes
