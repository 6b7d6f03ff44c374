"""One value per field: a REST call may not set a path-bound field again in its query string.

`GET /api/workspaces/{A}?workspace_id={B}` would act on B while every proxy, access log and rate
limit keyed on the URL sees A. Envoy's transcoder lets the query string override the path (and
only refuses the body doing so), and Envoy's routes cannot see the fields, so the server checks:
the transcoder forwards the URL the caller used as `x-envoy-original-path`; a query parameter
naming a field the method's `google.api.http` path binds (by proto or JSON name) is
INVALID_ARGUMENT with a BadRequest naming the field. Native gRPC calls carry no such header and
skip the check. Which fields each method binds is read from the descriptors once, at start-up.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, MethodDescriptor

from server.exceptions import FieldViolation, InvalidRequestException
from server.interceptors.pipeline import Context, Method, Step, StreamBehavior, UnaryBehavior, call_metadata

ORIGINAL_PATH_KEY = "x-envoy-original-path"
_VARIABLE = re.compile(r"\{([^}=]+)")


def _templates(rule: http_pb2.HttpRule) -> list[str]:
    pattern = rule.WhichOneof("pattern")
    template = rule.custom.path if pattern == "custom" else getattr(rule, pattern) if pattern else ""
    return [template, *(t for extra in rule.additional_bindings for t in _templates(extra))]


def path_bound_fields(method: MethodDescriptor) -> dict[str, str]:
    """Query parameter spellings (proto path and JSON path) -> the proto field path they would set."""
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return {}
    bound: dict[str, str] = {}
    for template in _templates(options.Extensions[annotations_pb2.http]):
        for path in _VARIABLE.findall(template):
            bound[path] = path
            message: Descriptor | None = method.input_type
            json_parts = []
            for part in path.split("."):
                field = message.fields_by_name.get(part) if message is not None else None
                json_parts.append(field.json_name if field is not None else part)
                message = field.message_type if field is not None else None
            bound[".".join(json_parts)] = path
    return bound


def _rebound(metadata: Any, bound: dict[str, str]) -> str | None:
    for key, value in metadata or ():
        if key == ORIGINAL_PATH_KEY and isinstance(value, str) and "?" in value:
            for name, _ in parse_qsl(value.split("?", 1)[1], keep_blank_values=True):
                if name in bound:
                    return bound[name]
    return None


def _refuse(field: str) -> InvalidRequestException:
    return InvalidRequestException(
        [
            FieldViolation(
                field=field,
                description="is bound by the URL path and must not be set again in the query string",
                reason="FIELD_BOUND_BY_PATH",
            )
        ]
    )


class PathBindings(Step):
    def __init__(self, pool: descriptor_pool.DescriptorPool | None = None) -> None:
        self._pool = pool or descriptor_pool.Default()

    def _bound(self, method: Method) -> dict[str, str]:
        try:
            descriptor = self._pool.FindMethodByName(method.name.lstrip("/").replace("/", "."))
        except KeyError:
            return {}
        return path_bound_fields(descriptor)

    def unary(self, method: Method, behavior: UnaryBehavior) -> UnaryBehavior:
        bound = self._bound(method)
        if not bound:
            return behavior

        async def checked(request: Any, context: Context) -> Any:
            field = _rebound(call_metadata(context), bound)
            if field is not None:
                raise _refuse(field)
            return await behavior(request, context)

        return checked

    def server_stream(self, method: Method, behavior: StreamBehavior) -> StreamBehavior:
        bound = self._bound(method)
        if not bound:
            return behavior

        async def checked(request: Any, context: Context) -> AsyncIterator[Any]:
            field = _rebound(call_metadata(context), bound)
            if field is not None:
                raise _refuse(field)
            async for response in behavior(request, context):
                yield response

        return checked
