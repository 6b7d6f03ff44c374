"""The OpenAPI 3.1 document of the REST surface, derived from the descriptor set (`make generate`).

No maintained protoc-gen-openapi installs offline here, so this is a small one, written for what
Envoy's gRPC-JSON transcoder does with adplane's contract (envoy/envoy.yaml):
  - every `google.api.http` route; path variables become path parameters, the `body` field (or every
    other field with `body: "*"`) the request body, and every remaining field a query parameter
    (message fields spelled as dotted paths, repeated fields repeated);
  - JSON as the transcoder prints it: proto field names, enums as their names, 64-bit integers as
    strings, well-known types in their JSON forms (Timestamp as RFC 3339, FieldMask as a string);
  - leading comments as descriptions, `field_behavior` REQUIRED as `required` and OUTPUT_ONLY as
    `readOnly`;
  - errors as `google.rpc.Status` with the HTTP statuses Envoy maps gRPC codes to;
  - bearer and API-key security schemes, each operation's `(adplane.v1.access)` policy as its
    `security`, in its description and as `x-adplane-access`.

Usage: python scripts/openapi.py generated/descriptors.binpb generated/openapi.json
"""

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor_pb2 import FieldDescriptorProto as Field

API_PACKAGE = "adplane.v1"
Schema = dict[str, Any]

_INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "format": "uint32", "minimum": 0, "maximum": 2**32 - 1}
_INT64 = {"type": "string", "format": "int64", "pattern": r"^-?[0-9]{1,19}$"}
_UINT64 = {"type": "string", "format": "uint64", "pattern": r"^[0-9]{1,20}$"}
SCALARS: dict[int, Schema] = {
    Field.TYPE_DOUBLE: {"type": "number", "format": "double"},
    Field.TYPE_FLOAT: {"type": "number", "format": "float"},
    Field.TYPE_INT32: _INT32,
    Field.TYPE_SINT32: _INT32,
    Field.TYPE_SFIXED32: _INT32,
    Field.TYPE_UINT32: _UINT32,
    Field.TYPE_FIXED32: _UINT32,
    Field.TYPE_INT64: _INT64,
    Field.TYPE_SINT64: _INT64,
    Field.TYPE_SFIXED64: _INT64,
    Field.TYPE_UINT64: _UINT64,
    Field.TYPE_FIXED64: _UINT64,
    Field.TYPE_BOOL: {"type": "boolean"},
    Field.TYPE_STRING: {"type": "string"},
    Field.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}

# Well-known types in their proto3 JSON forms.
WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {
        "type": "string",
        "pattern": r"^(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?:,|$))*$",
        "description": "Comma-separated field paths, for example `name,status`.",
    },
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "contentEncoding": "base64"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.Int32Value": _INT32,
    "google.protobuf.UInt32Value": _UINT32,
    "google.protobuf.Int64Value": _INT64,
    "google.protobuf.UInt64Value": _UINT64,
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
}

# The HTTP status Envoy's transcoder answers for each gRPC code an operation can end with (the
# server never answers UNKNOWN, INTERNAL or DATA_LOSS on purpose: those are 500 and undocumented).
ERROR_STATUSES = {
    "400": "INVALID_ARGUMENT, FAILED_PRECONDITION or OUT_OF_RANGE; or a request Envoy could not transcode.",
    "401": "UNAUTHENTICATED: no credentials, or expired or revoked ones.",
    "403": "PERMISSION_DENIED: the caller lacks the permission the operation requires.",
    "404": "NOT_FOUND: no such resource, or one the caller may not see.",
    "409": "ALREADY_EXISTS, or ABORTED (a stale etag, a concurrent change).",
    "413": "The request body is larger than the configured limit (GRPC_MAX_MESSAGE_BYTES).",
    "429": "RESOURCE_EXHAUSTED: too many attempts (sign-in throttling).",
    "431": "The request's header block is larger than the configured limit (MAX_REQUEST_HEADERS_KB).",
    "503": "UNAVAILABLE: the service or one of its dependencies is down; retry with backoff.",
    "504": "DEADLINE_EXCEEDED.",
}

# Paths of SourceCodeInfo locations (descriptor.proto field numbers).
_MESSAGE, _ENUM, _SERVICE = 4, 5, 6
_FIELD, _NESTED, _NESTED_ENUM, _VALUE, _METHOD = 2, 3, 4, 2, 2


def _comment(text: str) -> str:
    """A leading comment as one paragraph per blank-line-separated block."""
    blocks = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(" ".join(line.strip() for line in block.splitlines()) for block in blocks).strip()


class Contract:
    """The descriptor set with its comments and custom options decoded."""

    def __init__(self, descriptor_set: bytes) -> None:
        files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file
        pool = descriptor_pool.DescriptorPool()
        for file in files:
            pool.Add(file)
        # Options re-parsed with classes from this pool, so the custom extensions are known.
        classes = message_factory.GetMessageClassesForFiles([file.name for file in files], pool)
        self._method_options = classes["google.protobuf.MethodOptions"]
        self._field_options = classes["google.protobuf.FieldOptions"]
        # Any: typeshed's extension handles are generic over classes that only exist at run time here.
        self._http: Any = pool.FindExtensionByName("google.api.http")
        self._access: Any = pool.FindExtensionByName("adplane.v1.access")
        self._behavior: Any = pool.FindExtensionByName("google.api.field_behavior")
        self.files = list(files)
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.comments: dict[tuple[str, ...], str] = {}
        for file in files:
            located = {tuple(loc.path): _comment(loc.leading_comments) for loc in file.source_code_info.location}
            for index, message in enumerate(file.message_type):
                self._add_message(f"{file.package}.{message.name}", message, (_MESSAGE, index), located)
            for index, enum in enumerate(file.enum_type):
                self._add_enum(f"{file.package}.{enum.name}", enum, (_ENUM, index), located)
            for index, service in enumerate(file.service):
                name = f"{file.package}.{service.name}"
                self.comments[(name,)] = located.get((_SERVICE, index), "")
                for number, method in enumerate(service.method):
                    self.comments[(name, method.name)] = located.get((_SERVICE, index, _METHOD, number), "")

    def _add_message(
        self,
        name: str,
        message: descriptor_pb2.DescriptorProto,
        path: tuple[int, ...],
        located: dict[tuple[int, ...], str],
    ) -> None:
        self.messages[name] = message
        self.comments[(name,)] = located.get(path, "")
        for index, field in enumerate(message.field):
            self.comments[(name, field.name)] = located.get((*path, _FIELD, index), "")
        for index, nested in enumerate(message.nested_type):
            self._add_message(f"{name}.{nested.name}", nested, (*path, _NESTED, index), located)
        for index, enum in enumerate(message.enum_type):
            self._add_enum(f"{name}.{enum.name}", enum, (*path, _NESTED_ENUM, index), located)

    def _add_enum(
        self,
        name: str,
        enum: descriptor_pb2.EnumDescriptorProto,
        path: tuple[int, ...],
        located: dict[tuple[int, ...], str],
    ) -> None:
        self.enums[name] = enum
        self.comments[(name,)] = located.get(path, "")
        for index, value in enumerate(enum.value):
            self.comments[(name, value.name)] = located.get((*path, _VALUE, index), "")

    def http_rule(self, method: descriptor_pb2.MethodDescriptorProto) -> Any:
        options = self._method_options.FromString(method.options.SerializeToString())
        return options.Extensions[self._http] if options.HasExtension(self._http) else None

    def access(self, method: descriptor_pb2.MethodDescriptorProto) -> tuple[str, str]:
        """(kind, permission) of the method's `(adplane.v1.access)` policy."""
        policy: Any = self._method_options.FromString(method.options.SerializeToString()).Extensions[self._access]
        kind = policy.WhichOneof("rule")
        if kind is None:
            raise ValueError(f"{method.name} declares no (adplane.v1.access) policy")
        value = getattr(policy, kind)
        return kind, value if isinstance(value, str) else ""

    def behaviors(self, field: descriptor_pb2.FieldDescriptorProto) -> set[str]:
        options = self._field_options.FromString(field.options.SerializeToString())
        enum = self._behavior.enum_type
        return {enum.values_by_number[number].name for number in options.Extensions[self._behavior]}


def component_name(full_name: str) -> str:
    return full_name.removeprefix(f"{API_PACKAGE}.")


def _ref(full_name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{component_name(full_name)}"}


class DocumentBuilder:
    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.schemas: dict[str, Schema] = {}
        self._pending: list[str] = []

    # ---- schemas ----

    def _type_schema(self, field: descriptor_pb2.FieldDescriptorProto) -> Schema:
        """The schema of one value of the field (an element, for a repeated field)."""
        if field.type in SCALARS:
            return dict(SCALARS[field.type])
        type_name = field.type_name.lstrip(".")
        if type_name in WELL_KNOWN:
            return dict(WELL_KNOWN[type_name])
        self._pending.append(type_name)
        return _ref(type_name)

    def _map_entry(self, field: descriptor_pb2.FieldDescriptorProto) -> descriptor_pb2.DescriptorProto | None:
        if field.type != Field.TYPE_MESSAGE or field.label != Field.LABEL_REPEATED:
            return None
        entry = self.contract.messages.get(field.type_name.lstrip("."))
        return entry if entry is not None and entry.options.map_entry else None

    def field_schema(self, message_name: str, field: descriptor_pb2.FieldDescriptorProto) -> Schema:
        entry = self._map_entry(field)
        if entry is not None:
            schema: Schema = {"type": "object", "additionalProperties": self._type_schema(entry.field[1])}
        elif field.label == Field.LABEL_REPEATED:
            schema = {"type": "array", "items": self._type_schema(field)}
        else:
            schema = self._type_schema(field)
        description = self.contract.comments.get((message_name, field.name), "")
        behaviors = self.contract.behaviors(field)
        if "OUTPUT_ONLY" in behaviors:
            schema["readOnly"] = True
        if "INPUT_ONLY" in behaviors:
            schema["writeOnly"] = True
        if description:
            if "$ref" in schema:  # 3.1 allows siblings of $ref; keep the reference itself untouched
                schema = {"$ref": schema["$ref"], "description": description, **_flags(schema)}
            else:
                schema["description"] = description
        return schema

    def message_schema(self, full_name: str, *, without: frozenset[str] = frozenset()) -> Schema:
        message = self.contract.messages[full_name]
        properties: dict[str, Schema] = {}
        required: list[str] = []
        oneofs: dict[int, list[str]] = {}
        for field in message.field:
            if field.name in without:
                continue
            properties[field.name] = self.field_schema(full_name, field)
            if "REQUIRED" in self.contract.behaviors(field):
                required.append(field.name)
            if field.HasField("oneof_index") and not field.proto3_optional:
                oneofs.setdefault(field.oneof_index, []).append(field.name)
        # The transcoder ignores unknown fields in a request body, but the contract has none: a
        # response with a field the document does not name is a defect, and clients should not send one.
        schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
        if required:
            schema["required"] = required
        description = self.contract.comments.get((full_name,), "")
        for index, members in oneofs.items():
            name = message.oneof_decl[index].name
            description += f"\n\nAt most one of {', '.join(f'`{m}`' for m in members)} (oneof `{name}`)."
        if description.strip():
            schema["description"] = description.strip()
        return schema

    def enum_schema(self, full_name: str) -> Schema:
        enum = self.contract.enums[full_name]
        lines = [self.contract.comments.get((full_name,), "")]
        for value in enum.value:
            comment = self.contract.comments.get((full_name, value.name), "")
            lines.append(f"- `{value.name}`{': ' + comment if comment else ''}")
        return {
            "type": "string",
            "enum": [value.name for value in enum.value],
            "description": "\n".join(line for line in lines if line).strip(),
        }

    def resolve_components(self) -> None:
        while self._pending:
            full_name = self._pending.pop()
            name = component_name(full_name)
            if name in self.schemas:
                continue
            if full_name in self.contract.enums:
                self.schemas[name] = self.enum_schema(full_name)
            else:
                self.schemas[name] = {}  # placeholder against recursion
                self.schemas[name] = self.message_schema(full_name)

    # ---- operations ----

    def _query_parameters(self, message_name: str, skip: set[str], prefix: str = "") -> Iterator[Schema]:
        """Every field not bound by the path or the body, message fields as dotted paths."""
        message = self.contract.messages[message_name]
        for field in message.field:
            path = f"{prefix}{field.name}"
            if path in skip:
                continue
            type_name = field.type_name.lstrip(".")
            if field.type == Field.TYPE_MESSAGE and type_name not in WELL_KNOWN:
                if field.label != Field.LABEL_REPEATED:
                    yield from self._query_parameters(type_name, skip, f"{path}.")
                continue  # maps and repeated messages cannot be sent as query parameters
            schema = self.field_schema(message_name, field)
            description = schema.pop("description", "")
            if schema.get("readOnly"):
                continue
            parameter: Schema = {"name": path, "in": "query", "schema": schema}
            if "REQUIRED" in self.contract.behaviors(field):
                parameter["required"] = True
            if description:
                parameter["description"] = description
            if field.label == Field.LABEL_REPEATED:
                parameter["style"], parameter["explode"] = "form", True
            yield parameter

    def _field(self, message_name: str, path: str) -> descriptor_pb2.FieldDescriptorProto:
        message = self.contract.messages[message_name]
        head, _, rest = path.partition(".")
        field = next(f for f in message.field if f.name == head)
        return self._field(field.type_name.lstrip("."), rest) if rest else field

    def operation(
        self, service: str, method: descriptor_pb2.MethodDescriptorProto, rule: Any
    ) -> tuple[str, str, Schema]:
        verb = rule.WhichOneof("pattern")
        if verb == "custom":
            verb, template = rule.custom.kind.lower(), rule.custom.path
        else:
            template = getattr(rule, verb)
        request = method.input_type.lstrip(".")
        path_fields = re.findall(r"\{([^}=]+)(?:=[^}]*)?\}", template)
        path = re.sub(r"\{([^}=]+)=[^}]*\}", r"{\1}", template)
        parameters: list[Schema] = []
        for name in path_fields:
            field = self._field(request, name)
            schema = self.field_schema(request, field) if "." not in name else self._type_schema(field)
            description = schema.pop("description", "")
            schema.pop("readOnly", None)
            parameter: Schema = {"name": name, "in": "path", "required": True, "schema": schema}
            if description:
                parameter["description"] = description
            parameters.append(parameter)

        kind, permission = self.contract.access(method)
        summary, description = _summary(self.contract.comments.get((service, method.name), ""))
        operation: Schema = {
            "operationId": f"{service.rpartition('.')[2]}_{method.name}",
            "summary": summary,
            "tags": [service.rpartition(".")[2]],
        }
        body = rule.body
        skip = set(path_fields)
        if body == "*":
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": self.message_schema(request, without=frozenset(skip))}},
            }
        elif body:
            field = self._field(request, body)
            schema = self.field_schema(request, field)
            # A repeated body field has no empty form the transcoder accepts: the array is required.
            required = "REQUIRED" in self.contract.behaviors(field) or field.label == Field.LABEL_REPEATED
            operation["requestBody"] = {
                "required": required,
                "content": {"application/json": {"schema": schema}},
            }
            skip.add(body)
        if body != "*":
            parameters.extend(self._query_parameters(request, skip))
        if parameters:
            operation["parameters"] = parameters

        operation["description"] = "\n\n".join(part for part in (description, _access_text(kind, permission)) if part)
        operation["x-adplane-access"] = {"kind": kind, **({"permission": permission} if permission else {})}
        operation["x-grpc-method"] = f"/{service}/{method.name}"
        if kind == "public":
            operation["security"] = []
        responses: Schema = {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": _ref(method.output_type.lstrip("."))}},
            }
        }
        self._pending.append(method.output_type.lstrip("."))
        for status in ERROR_STATUSES:
            responses[status] = {"$ref": f"#/components/responses/Error{status}"}
        operation["responses"] = responses
        return path, verb, operation

    def build(self) -> Schema:
        paths: dict[str, dict[str, Schema]] = {}
        tags: list[Schema] = []
        for file in self.contract.files:
            if file.package != API_PACKAGE:
                continue
            for service in file.service:
                full_name = f"{file.package}.{service.name}"
                tags.append({"name": service.name, "description": self.contract.comments.get((full_name,), "")})
                for method in service.method:
                    if method.client_streaming or method.server_streaming:
                        # Watch streams answer REST as Server-Sent Events that never end by
                        # themselves: not described here (a fuzzer would wait on them forever);
                        # their routes and messages are documented in the protos.
                        continue
                    rule = self.contract.http_rule(method)
                    if rule is None:
                        continue
                    for binding in [rule, *rule.additional_bindings]:
                        path, verb, operation = self.operation(full_name, method, binding)
                        if verb in paths.setdefault(path, {}):
                            raise ValueError(f"two operations for {verb.upper()} {path}")
                        paths[path][verb] = operation
        self._pending.append("google.rpc.Status")
        self.resolve_components()
        return {
            "openapi": "3.1.0",
            "info": {
                "title": "adplane API",
                "version": "v1",
                "description": (
                    "REST/JSON surface of adplane, transcoded by Envoy from the gRPC services in `protos/` "
                    "(generated by `scripts/openapi.py`; do not edit). Field names are the proto field names, "
                    "enums their names, 64-bit integers strings. Errors are `google.rpc.Status` with "
                    "`ErrorInfo` (domain `adplane`, an UPPER_SNAKE `reason`) and, for invalid input, "
                    "`BadRequest` field violations. Sign in with `POST /api/auth/login` and send "
                    "`authorization: Bearer <access_token>`, or send an API key as `x-api-key`."
                ),
            },
            "servers": [{"url": "/", "description": "The Envoy edge serving this document"}],
            "security": [{"bearer": []}, {"apiKey": []}],
            "tags": sorted(tags, key=lambda tag: tag["name"]),
            "paths": {path: paths[path] for path in sorted(paths)},
            "components": {
                "schemas": {name: self.schemas[name] for name in sorted(self.schemas)},
                "responses": {
                    f"Error{status}": {
                        "description": description,
                        "content": {"application/json": {"schema": _ref("google.rpc.Status")}},
                    }
                    for status, description in ERROR_STATUSES.items()
                },
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "An access token from `POST /api/auth/login` (a JWT), or an API key.",
                    },
                    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                },
            },
        }


def _flags(schema: Schema) -> Schema:
    return {key: schema[key] for key in ("readOnly", "writeOnly") if key in schema}


def _summary(comment: str) -> tuple[str, str]:
    """The first sentence as the summary, the whole comment as the description."""
    first = re.split(r"(?<=\.)\s", comment, maxsplit=1)[0]
    return first, comment


def _access_text(kind: str, permission: str) -> str:
    match kind:
        case "public":
            return "**Access:** public, no credentials needed."
        case "authenticated":
            return "**Access:** any signed-in user or API key."
        case "system_permission":
            return f"**Access:** system permission `{permission}` (a superuser holds every permission)."
        case _:
            return (
                f"**Access:** workspace permission `{permission}` in the workspace named by `workspace_id`; "
                "the system permission of the same name passes in every workspace."
            )


def build_document(descriptor_set: bytes) -> Schema:
    return DocumentBuilder(Contract(descriptor_set)).build()


def render(document: Schema) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    source, target = (Path(arg) for arg in argv)
    target.write_text(render(build_document(source.read_bytes())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
