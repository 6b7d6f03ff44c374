"""Strict JSON at the edge: the shape of every REST request body, checked before it is transcoded.

Envoy's transcoder follows proto3's lenient JSON parsing: `[null]` for a list is an empty list,
`[["staff"]]` is `["staff"]`, a bare `"staff"` or `null` where a list belongs is a list of one or
none. After transcoding those are indistinguishable from an honest empty list, so a set-replacing
write such as `PUT /api/users/{id}/roles` with `[null]` cleared every role. The check therefore
runs on the JSON itself, in one place for every route: a Lua filter (envoy/strict_json.lua) that
walks the body against a schema rendered here from the descriptor set, and refuses with
INVALID_ARGUMENT and a BadRequest field violation (the server's own validation shape):

- a list (repeated field) must be a JSON array, never `null` or a single value; its items are
  never `null` and never arrays;
- a message must be an object (or `null`, proto3's "not set"); a string, number, boolean or enum
  field must be that scalar (or `null`), never an object or an array.

A body whose route binds a list (`body: "role_names"`) must be an array: `[]` clears the set, and
an empty body is refused. Unknown fields are skipped, as the transcoder ignores them; malformed
JSON is left to the transcoder, which refuses it itself.
"""

import json
import re
from pathlib import Path
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from server.config import PROJECT_ROOT

LUA_SOURCE_PATH = PROJECT_ROOT / "envoy" / "strict_json.lua"
# The methods whose bodies the transcoder reads (envoy/strict_json.lua checks the same ones).
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")

_FD = descriptor_pb2.FieldDescriptorProto
_NUMBERS = {
    _FD.TYPE_DOUBLE,
    _FD.TYPE_FLOAT,
    _FD.TYPE_INT64,
    _FD.TYPE_UINT64,
    _FD.TYPE_INT32,
    _FD.TYPE_FIXED64,
    _FD.TYPE_FIXED32,
    _FD.TYPE_UINT32,
    _FD.TYPE_SFIXED32,
    _FD.TYPE_SFIXED64,
    _FD.TYPE_SINT32,
    _FD.TYPE_SINT64,
}
# Well-known types whose JSON is not an object of their fields.
_WELL_KNOWN = {
    "google.protobuf.Timestamp": "string",
    "google.protobuf.Duration": "string",
    "google.protobuf.FieldMask": "string",
    "google.protobuf.StringValue": "string",
    "google.protobuf.BytesValue": "string",
    "google.protobuf.BoolValue": "bool",
    "google.protobuf.DoubleValue": "number",
    "google.protobuf.FloatValue": "number",
    "google.protobuf.Int64Value": "number",
    "google.protobuf.UInt64Value": "number",
    "google.protobuf.Int32Value": "number",
    "google.protobuf.UInt32Value": "number",
    "google.protobuf.Struct": "object",
    "google.protobuf.Any": "object",
    "google.protobuf.Empty": "object",
    "google.protobuf.Value": "any",
    "google.protobuf.ListValue": "any",
}
_VARIABLE = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")

# A kind is "string", "number", "bool", "enum", "object" (any object), "any", or
# {"message": name}, {"list": kind}, {"map": kind}.
type Kind = str | dict[str, Any]


class _Schema:
    def __init__(self, files: list[descriptor_pb2.FileDescriptorProto]) -> None:
        self.types: dict[str, descriptor_pb2.DescriptorProto] = {}
        for file in files:
            for message in file.message_type:
                self._add(f"{file.package}.{message.name}", message)
        self.messages: dict[str, dict[str, dict[str, Any]]] = {}

    def _add(self, name: str, message: descriptor_pb2.DescriptorProto) -> None:
        self.types[name] = message
        for nested in message.nested_type:
            self._add(f"{name}.{nested.name}", nested)

    def message(self, name: str) -> Kind:
        """The kind of message `name`, adding its fields (and theirs) to `messages` once."""
        if name in _WELL_KNOWN:
            return _WELL_KNOWN[name]
        if name not in self.messages:
            self.messages[name] = {}  # before the fields: messages may contain themselves
            fields: dict[str, dict[str, Any]] = {}
            for field in self.types[name].field:
                # Under its proto name and its JSON name, as the transcoder reads both.
                entry = {"name": field.name, "kind": self.field(field)}
                fields[field.name] = fields[field.json_name or field.name] = entry
            self.messages[name] = fields
        return {"message": name}

    def field(self, field: descriptor_pb2.FieldDescriptorProto) -> Kind:
        kind = self._value(field)
        if field.label != _FD.LABEL_REPEATED:
            return kind
        entry = self.types.get(field.type_name.lstrip("."))
        if entry is not None and entry.options.map_entry:
            return {"map": self._value(entry.field[1])}
        return {"list": kind}

    def _value(self, field: descriptor_pb2.FieldDescriptorProto) -> Kind:
        if field.type in (_FD.TYPE_MESSAGE, _FD.TYPE_GROUP):
            return self.message(field.type_name.lstrip("."))
        if field.type == _FD.TYPE_ENUM:
            return "enum"
        if field.type == _FD.TYPE_BOOL:
            return "bool"
        if field.type in _NUMBERS:
            return "number"
        return "string"  # string, bytes


def lua_pattern(template: str) -> str:
    """A Lua pattern for a google.api.http path template: variables match one segment (`**`: the
    rest of the path), a trailing slash is optional, as Envoy's transcoder matches."""
    parts: list[str] = []
    position = 0
    for match in _VARIABLE.finditer(template):
        parts.append(re.sub(r"([%^$().\[\]*+\-?])", r"%\1", template[position : match.start()]))
        parts.append(".+" if match.group(2) == "**" else "[^/]+")
        position = match.end()
    parts.append(re.sub(r"([%^$().\[\]*+\-?])", r"%\1", template[position:]))
    return "^" + "".join(parts) + "/?$"


def routes_and_messages(descriptor_path: Path, package: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every REST route of the package's services with the kind its body must have, and the
    messages those kinds name."""
    files = list(descriptor_pb2.FileDescriptorSet.FromString(descriptor_path.read_bytes()).file)
    schema = _Schema(files)
    routes: list[dict[str, Any]] = []
    for file in files:
        if file.package != package:
            continue
        for service in file.service:
            for method in service.method:
                # Parsed again now that google.api.http is a known extension.
                options = descriptor_pb2.MethodOptions.FromString(method.options.SerializeToString())
                if not options.HasExtension(annotations_pb2.http):
                    continue
                rule = options.Extensions[annotations_pb2.http]
                request = method.input_type.lstrip(".")
                for binding in [rule, *rule.additional_bindings]:
                    verb = binding.WhichOneof("pattern")
                    template = binding.custom.path if verb == "custom" else getattr(binding, verb)
                    verb = binding.custom.kind if verb == "custom" else verb
                    if verb.upper() not in WRITE_METHODS:
                        continue
                    if binding.body in ("", "*"):
                        # No body: the transcoder still reads one into the request message.
                        body, prefix = schema.message(request), ""
                    else:
                        field = next(f for f in schema.types[request].field if f.name == binding.body)
                        body, prefix = schema.field(field), binding.body
                    routes.append(
                        {
                            "method": verb.upper(),
                            "pattern": lua_pattern(template),
                            "body": body,
                            "prefix": prefix,
                            "required": isinstance(body, dict) and "list" in body,
                            # Custom verbs first: `/a/{id}:verb` must not be taken for `/a/{id}`.
                            "specific": ":" in template.rsplit("/", 1)[-1],
                        }
                    )
    routes.sort(key=lambda route: not route["specific"])
    return routes, schema.messages


def _lua(value: Any) -> str:
    """`value` as a Lua literal (strings via JSON escapes, which Lua reads alike for these)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "{" + ", ".join(_lua(item) for item in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{_lua(str(key))}] = {_lua(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"no Lua literal for {value!r}")


def lua_source(descriptor_path: Path, package: str) -> str:
    """The strict JSON filter's Lua: the routes and messages, then the checker."""
    routes, messages = routes_and_messages(descriptor_path, package)
    schema = f"local ROUTES = {_lua(routes)}\nlocal MESSAGES = {_lua(messages)}\n"
    return schema + LUA_SOURCE_PATH.read_text()
