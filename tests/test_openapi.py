"""The committed OpenAPI document: valid OpenAPI 3.1, and a faithful picture of the contract.

(`make check-generated` proves it is what scripts/openapi.py makes of the current protos.)
"""

import json
from collections.abc import Iterable
from typing import Any

import pytest
from google.api import annotations_pb2, field_behavior_pb2
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

from adplane.v1 import access_pb2, export_pb2, money_pb2, workspace_pb2
from server.app import REGISTRATIONS
from server.edge.envoy import OPENAPI_PATH

VERBS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(OPENAPI_PATH.read_text())
    return loaded


def test_is_valid_openapi_3_1() -> None:
    spec, _ = read_from_filename(str(OPENAPI_PATH))
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema
    assert spec["openapi"] == "3.1.0"


def described(methods: Iterable[MethodDescriptor]) -> list[MethodDescriptor]:
    """The methods the document describes: all but the Watch streams, whose Server-Sent Events
    never end by themselves (see scripts/openapi.py)."""
    return [method for method in methods if not method.server_streaming]


def test_every_route_of_every_rpc_is_an_operation(document: dict[str, Any]) -> None:
    operations = {
        operation["x-grpc-method"]: (path, verb)
        for path, item in document["paths"].items()
        for verb, operation in item.items()
    }
    expected = {}
    for registration in REGISTRATIONS:
        for method in described(registration.descriptor.methods):
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            verb = rule.WhichOneof("pattern")
            assert verb in VERBS
            expected[f"/{method.containing_service.full_name}/{method.name}"] = (getattr(rule, verb), verb)
    assert operations == expected


def test_each_operation_carries_its_access_policy(document: dict[str, Any]) -> None:
    for registration in REGISTRATIONS:
        for method in described(registration.descriptor.methods):
            policy = method.GetOptions().Extensions[access_pb2.access]
            kind = policy.WhichOneof("rule")
            assert kind is not None
            operation = next(
                op
                for item in document["paths"].values()
                for op in item.values()
                if op["x-grpc-method"] == f"/{registration.name}/{method.name}"
            )
            assert operation["x-adplane-access"]["kind"] == kind
            if kind == "public":
                assert operation["security"] == []
            else:
                assert "security" not in operation  # the document's default: bearer or API key
                if kind.endswith("permission"):
                    permission = getattr(policy, kind)
                    assert operation["x-adplane-access"]["permission"] == permission
                    assert f"`{permission}`" in operation["description"]
    assert document["security"] == [{"bearer": []}, {"apiKey": []}]


def test_path_query_and_body_parameters_follow_the_http_rule(document: dict[str, Any]) -> None:
    update = document["paths"]["/api/workspaces/{workspace_id}"]["patch"]
    parameters = {(p["in"], p["name"]): p for p in update["parameters"]}
    assert set(parameters) == {("path", "workspace_id"), ("query", "update_mask")}
    assert parameters["query", "update_mask"]["required"] is True
    assert update["requestBody"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Workspace"

    listing = document["paths"]["/api/workspaces"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"page_size", "page_token", "status"}
    assert "requestBody" not in listing


def test_schemas_are_the_proto3_json_forms(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    workspace = schemas["Workspace"]["properties"]
    assert workspace["create_time"]["format"] == "date-time"
    assert workspace["create_time"]["readOnly"] is True  # OUTPUT_ONLY
    assert schemas["Workspace"]["required"] == ["name"]  # REQUIRED
    assert workspace["name"]["description"]  # the field's comment
    status = schemas["WorkspaceStatus"]
    assert status["enum"] == list(workspace_pb2.WorkspaceStatus.keys())

    # Every 64-bit integer field is a JSON string, as the transcoder prints it.
    for message in (money_pb2.Money, export_pb2.Export):
        int64 = [f for f in message.DESCRIPTOR.fields if f.type == FieldDescriptor.TYPE_INT64]
        assert int64
        for field in int64:
            assert schemas[message.DESCRIPTOR.name]["properties"][field.name]["type"] == "string"

    error = schemas["google.rpc.Status"]["properties"]
    assert set(error) == {"code", "message", "details"}
    assert document["components"]["responses"]["Error404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/google.rpc.Status"
    }
    # Envoy's own refusals are documented on every operation too: an oversize body (413) and an
    # oversize header block (431) are answered before any route is chosen.
    for item in document["paths"].values():
        for operation in item.values():
            assert {"413", "431"} <= set(operation["responses"]), operation["operationId"]


def test_every_required_field_of_a_request_is_required_somewhere(document: dict[str, Any]) -> None:
    """A REQUIRED request field is a required path/query parameter, body, or body property."""
    for registration in REGISTRATIONS:
        for method in described(registration.descriptor.methods):
            operation = next(
                op
                for item in document["paths"].values()
                for op in item.values()
                if op["x-grpc-method"] == f"/{registration.name}/{method.name}"
            )
            required = {
                field.name
                for field in method.input_type.fields
                if field_behavior_pb2.REQUIRED in field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
            }
            parameters = {p["name"] for p in operation.get("parameters", []) if p.get("required")}
            body = operation.get("requestBody", {})
            body_schema = body.get("content", {}).get("application/json", {}).get("schema", {})
            in_body = set(body_schema.get("required", []))
            body_field = method.GetOptions().Extensions[annotations_pb2.http].body
            if body_field and body_field != "*":
                assert body["required"] or body_field not in required
                in_body = {body_field}
            assert required <= parameters | in_body, f"{method.full_name}: {required - parameters - in_body}"
