"""The OpenAPI 3.1 document of the REST surface, derived from the descriptor set (`make generate`).

No maintained protoc-gen-openapi installs offline here, so this is a small one, written for what
Envoy's gRPC-JSON transcoder does with adplane's contract (envoy/envoy.yaml):
  - every `google.api.http` route; path variables become path parameters, the `body` field (or every
    other field with `body: "*"`) the request body, and every remaining field a query parameter
    (message fields spelled as dotted paths, repeated fields repeated);
  - JSON as the transcoder prints it: proto field names, enums as their names, 64-bit integers as
    strings, well-known types in their JSON forms (Timestamp as RFC 3339, FieldMask as a string);
  - leading comments as descriptions, `field_behavior` REQUIRED as `required` and OUTPUT_ONLY as
    `readOnly`; the constraints the comments document (scripts/field_constraints.py) as keywords;
    enums as their names or numbers (the transcoder takes both; it prints names);
  - errors as `google.rpc.Status` with typed details (ErrorInfo always, BadRequest, RetryInfo) and
    the gRPC codes behind each HTTP status Envoy answers, and a `default` for any other status;
  - the Watch streams as Server-Sent Events (`text/event-stream`): one `data:` event per message in
    proto3 JSON, and a last `event: error` with the google.rpc.Status the stream ended with;
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

from field_constraints import array_constraints, field_mask, minimum, resolve, string_constraints
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

# The HTTP statuses an operation answers with an error, the gRPC codes behind each (Envoy's mapping of
# the server's codes, and the codes of the replies Envoy makes itself: server/edge/local_replies.py),
# and what they mean. Anything else (500: the server never answers UNKNOWN, INTERNAL or DATA_LOSS on
# purpose) is the `default` response.
ERROR_STATUSES: dict[str, tuple[list[int], str]] = {
    "400": (
        [3, 9, 11],
        "INVALID_ARGUMENT (with BadRequest field violations), or a request Envoy could not transcode; or "
        "FAILED_PRECONDITION: a valid request the resource's current state does not allow (ErrorInfo says "
        "which, e.g. REQUEST_NOT_WAITING).",
    ),
    "401": ([16], "UNAUTHENTICATED: no credentials, or expired or revoked ones."),
    "403": ([7], "PERMISSION_DENIED: the caller lacks the permission the operation requires."),
    "404": ([5], "NOT_FOUND: no such resource, or one the caller may not see; or no such route."),
    "409": ([6, 10], "ALREADY_EXISTS, or ABORTED (a stale etag, a concurrent change)."),
    "413": ([3], "The request body is larger than the configured limit (GRPC_MAX_MESSAGE_BYTES)."),
    "429": ([8], "RESOURCE_EXHAUSTED: too many attempts (sign-in throttling)."),
    "431": ([3], "The request's header block is larger than the configured limit (MAX_REQUEST_HEADERS_KB)."),
    "503": ([14], "UNAVAILABLE: the service or one of its dependencies is down; retry with backoff (RetryInfo)."),
    "504": ([4], "DEADLINE_EXCEEDED."),
}
# The google.rpc error details the server and the edge send (`details`, each an Any: `@type` + fields).
ERROR_DETAILS = ["google.rpc.ErrorInfo", "google.rpc.BadRequest", "google.rpc.RetryInfo"]
TYPE_URL = "type.googleapis.com/"

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


def _ref(full_name: str, *, request: bool = False) -> Schema:
    suffix = REQUEST_SUFFIX if request else ""
    return {"$ref": f"#/components/schemas/{component_name(full_name)}{suffix}"}


# A message as a request body takes (`XRequestBody`) differs from the message as responses print it:
# proto3 JSON takes null for any field that is not a list (not set), and the transcoder ignores
# fields it does not know; responses never carry either.
REQUEST_SUFFIX = "RequestBody"


class DocumentBuilder:
    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.schemas: dict[str, Schema] = {}
        # (full name, as a request body takes it) of the messages and enums still to describe.
        self._pending: list[tuple[str, bool]] = []

    # ---- schemas ----

    def _type_schema(self, field: descriptor_pb2.FieldDescriptorProto, *, request: bool = False) -> Schema:
        """The schema of one value of the field (an element, for a repeated field)."""
        if field.type in SCALARS:
            return dict(SCALARS[field.type])
        type_name = field.type_name.lstrip(".")
        if type_name in WELL_KNOWN:
            return dict(WELL_KNOWN[type_name])
        request = request and field.type == Field.TYPE_MESSAGE
        self._pending.append((type_name, request))
        return _ref(type_name, request=request)

    def _map_entry(self, field: descriptor_pb2.FieldDescriptorProto) -> descriptor_pb2.DescriptorProto | None:
        if field.type != Field.TYPE_MESSAGE or field.label != Field.LABEL_REPEATED:
            return None
        entry = self.contract.messages.get(field.type_name.lstrip("."))
        return entry if entry is not None and entry.options.map_entry else None

    def comment_of(self, message: str, field: str) -> str:
        """A field's comment, by the message's short name (as comments refer to it)."""
        return self.contract.comments.get((f"{API_PACKAGE}.{message}", field), "")

    def _constrained(self, message_name: str, field: descriptor_pb2.FieldDescriptorProto, schema: Schema) -> Schema:
        """`schema` (one value of the field) with the constraints its comment documents."""
        comment = resolve(self.contract.comments.get((message_name, field.name), ""), self.comment_of)
        required = "REQUIRED" in self.contract.behaviors(field)
        type_name = field.type_name.lstrip(".")
        if field.type == Field.TYPE_STRING:
            constraints = string_constraints(comment, required=required)
            if constraints:
                return {**schema, **constraints}
        elif field.type in (Field.TYPE_INT32, Field.TYPE_SINT32, Field.TYPE_SFIXED32):
            return {**schema, **minimum(comment)}
        elif type_name == "google.protobuf.FieldMask" and (mask := field_mask(comment)):
            return {**schema, **mask, "minLength": 1}
        elif field.type == Field.TYPE_ENUM and required:
            # UNSPECIFIED (by name or number) is no value.
            unspecified = self.contract.enums[type_name].value[0]
            return {"allOf": [schema], "not": {"enum": [unspecified.name, unspecified.number]}}
        return schema

    def field_schema(
        self, message_name: str, field: descriptor_pb2.FieldDescriptorProto, *, request: bool = False
    ) -> Schema:
        entry = self._map_entry(field)
        comment = self.contract.comments.get((message_name, field.name), "")
        if entry is not None:
            schema: Schema = {"type": "object", "additionalProperties": self._type_schema(entry.field[1])}
        elif field.label == Field.LABEL_REPEATED:
            array, item = array_constraints(resolve(comment, self.comment_of))
            items = {**self._type_schema(field, request=request), **item}
            if field.type == Field.TYPE_ENUM:  # an item is a value: UNSPECIFIED is none
                unspecified = self.contract.enums[field.type_name.lstrip(".")].value[0]
                items = {"allOf": [items], "not": {"enum": [unspecified.name, unspecified.number]}}
            schema = {"type": "array", "items": items, **array}
        else:
            schema = self._constrained(message_name, field, self._type_schema(field, request=request))
            if request and "REQUIRED" not in self.contract.behaviors(field) and _admits_default(field, schema):
                schema = {"anyOf": [schema, {"type": "null"}]}  # null: not set, as the default value
        behaviors = self.contract.behaviors(field)
        if "OUTPUT_ONLY" in behaviors:
            schema["readOnly"] = True
        if "INPUT_ONLY" in behaviors:
            schema["writeOnly"] = True
        if comment:
            if "$ref" in schema:  # 3.1 allows siblings of $ref; keep the reference itself untouched
                schema = {"$ref": schema["$ref"], "description": comment, **_flags(schema)}
            else:
                schema["description"] = comment
        return schema

    def message_schema(self, full_name: str, *, without: frozenset[str] = frozenset(), request: bool = False) -> Schema:
        message = self.contract.messages[full_name]
        properties: dict[str, Schema] = {}
        required: list[str] = []
        oneofs: dict[int, list[str]] = {}
        for field in message.field:
            if field.name in without:
                continue
            properties[field.name] = self.field_schema(full_name, field, request=request)
            if "REQUIRED" in self.contract.behaviors(field):
                required.append(field.name)
            if field.HasField("oneof_index") and not field.proto3_optional:
                oneofs.setdefault(field.oneof_index, []).append(field.name)
        # A response with a field the document does not name is a defect; the transcoder ignores the
        # fields of a request body it does not know.
        schema: Schema = {"type": "object", "properties": properties, "additionalProperties": request}
        if request:
            schema["propertyNames"] = {"minLength": 1}  # the JSON parser refuses an empty name
        if required:
            schema["required"] = required
        description = self.contract.comments.get((full_name,), "")
        for index, members in oneofs.items():
            name = message.oneof_decl[index].name
            description += f"\n\nAt most one of {', '.join(f'`{m}`' for m in members)} (oneof `{name}`)."
        if request:
            description += "\n\nAs a request body: a field may be null (not set); unknown fields are ignored."
        if description.strip():
            schema["description"] = description.strip()
        return schema

    def enum_schema(self, full_name: str) -> Schema:
        enum = self.contract.enums[full_name]
        lines = [self.contract.comments.get((full_name,), "")]
        for value in enum.value:
            comment = self.contract.comments.get((full_name, value.name), "")
            lines.append(f"- `{value.name}` ({value.number}){': ' + comment if comment else ''}")
        lines.append("Responses carry the name; requests may send the name or the number.")
        return {
            "anyOf": [
                {"type": "string", "enum": [value.name for value in enum.value]},
                {"type": "integer", "enum": [value.number for value in enum.value]},
            ],
            "description": "\n".join(line for line in lines if line).strip(),
        }

    def resolve_components(self) -> None:
        while self._pending:
            full_name, request = self._pending.pop()
            name = component_name(full_name) + (REQUEST_SUFFIX if request else "")
            if name in self.schemas:
                continue
            if full_name in self.contract.enums:
                self.schemas[name] = self.enum_schema(full_name)
            else:
                self.schemas[name] = {}  # placeholder against recursion
                self.schemas[name] = self.message_schema(full_name, request=request)

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
                "content": {
                    "application/json": {"schema": self.message_schema(request, without=frozenset(skip), request=True)}
                },
            }
        elif body:
            field = self._field(request, body)
            schema = self.field_schema(request, field, request=True)
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
        output = method.output_type.lstrip(".")
        self._pending.append((output, False))
        if method.server_streaming:
            operation["description"] += "\n\n" + SSE_DESCRIPTION
            ok: Schema = {
                "description": "Server-Sent Events: one per message, then possibly the error the stream ended with.",
                "content": {"text/event-stream": {"schema": _sse_event(output)}},
            }
        else:
            ok = {"description": "OK", "content": {"application/json": {"schema": _ref(output)}}}
        responses: Schema = {"200": ok}
        for status in ERROR_STATUSES:
            responses[status] = {"$ref": f"#/components/responses/Error{status}"}
        responses["default"] = {"$ref": "#/components/responses/Error"}
        operation["responses"] = responses
        return path, verb, operation

    def error_schemas(self) -> None:
        """google.rpc.Status with its `details` typed: each an Any of the error details adplane sends,
        an ErrorInfo always among them."""
        details = []
        for full_name in ERROR_DETAILS:
            detail = self.message_schema(full_name)
            detail["properties"] = {"@type": {"const": f"{TYPE_URL}{full_name}"}, **detail["properties"]}
            detail["required"] = ["@type", *detail.get("required", [])]
            self.schemas[component_name(full_name)] = detail
            details.append(_ref(full_name))
        status = self.message_schema("google.rpc.Status")
        status["properties"]["details"] = {
            "type": "array",
            "items": {"oneOf": details},
            "contains": _ref("google.rpc.ErrorInfo"),
            "description": status["properties"]["details"].get("description", ""),
        }
        status["required"] = ["code", "message", "details"]
        self.schemas["google.rpc.Status"] = status

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
                    if method.client_streaming:
                        raise ValueError(f"{method.name}: REST has no form for a client stream")
                    rule = self.contract.http_rule(method)
                    if rule is None:
                        continue
                    for binding in [rule, *rule.additional_bindings]:
                        path, verb, operation = self.operation(full_name, method, binding)
                        if verb in paths.setdefault(path, {}):
                            raise ValueError(f"two operations for {verb.upper()} {path}")
                        paths[path][verb] = operation
        self._pending.extend((detail, False) for detail in ERROR_DETAILS)  # and BadRequest.FieldViolation
        self.resolve_components()
        self.error_schemas()
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
                    **{
                        f"Error{status}": {
                            "description": description,
                            "content": {"application/json": {"schema": _status_with_codes(codes)}},
                        }
                        for status, (codes, description) in ERROR_STATUSES.items()
                    },
                    "Error": {
                        "description": "Any other status, e.g. 500 for a failure of the server's own.",
                        "content": {"application/json": {"schema": _ref("google.rpc.Status")}},
                    },
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


SSE_DESCRIPTION = (
    "**Server-Sent Events.** Each message of the stream is an event `data: <message as JSON>` (the "
    "snapshot parts, then changes and heartbeats, each with its `resume_token`). A stream that ends with an "
    "error sends a last event `event: error` whose data is the `google.rpc.Status` (ErrorInfo reason: "
    "RESUME_TOKEN_EXPIRED, WATCH_BUFFER_OVERFLOW, SERVER_SHUTTING_DOWN, ...) and closes; to continue, "
    "call again with the last `resume_token`. An error before the first event is an ordinary error "
    "response (JSON, with its HTTP status)."
)


def _sse_event(message: str) -> Schema:
    """One Server-Sent Event of a Watch stream, as schemathesis and other readers parse it."""

    def event(name: str, data: Schema) -> Schema:
        return {
            "type": "object",
            "properties": {
                "event": {"const": name},
                "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
            },
            "required": ["event", "data"],
        }

    return {"oneOf": [event("message", _ref(message)), event("error", _ref("google.rpc.Status"))]}


def _status_with_codes(codes: list[int]) -> Schema:
    return {"allOf": [_ref("google.rpc.Status")], "properties": {"code": {"enum": codes}}}


def _admits_default(field: descriptor_pb2.FieldDescriptorProto, schema: Schema) -> bool:
    """Whether the field's default value (what null stands for) meets its constraints: a string
    documented as "1 to 200 characters" refuses null as it refuses ""."""
    if field.type != Field.TYPE_STRING:
        return True
    if "anyOf" in schema:  # empty or a value (an optional id)
        return True
    pattern = schema.get("pattern")
    return schema.get("minLength", 0) == 0 and (pattern is None or re.search(pattern, "") is not None)


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
