"""The committed OpenAPI document: valid OpenAPI 3.1, and a faithful picture of the contract.

(`make check-generated` proves it is what scripts/openapi.py makes of the current protos.)
"""

import json
from collections.abc import Iterable
from typing import Any

import pytest
from google.api import annotations_pb2, field_behavior_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

from adplane.v1 import access_pb2, business_manager_pb2, export_pb2, money_pb2, workspace_pb2
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
    """The methods the document describes: every one (the Watch streams as Server-Sent Events)."""
    return list(methods)


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
    assert update["requestBody"]["content"]["application/json"]["schema"]["$ref"] == (
        "#/components/schemas/WorkspaceRequestBody"
    )

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
    names, numbers = status["anyOf"]
    assert names["enum"] == list(workspace_pb2.WorkspaceStatus.keys())
    assert numbers["enum"] == list(workspace_pb2.WorkspaceStatus.values())  # the transcoder takes both

    # Every 64-bit integer field is a JSON string, as the transcoder prints it.
    for message in (money_pb2.Money, export_pb2.Export):
        int64 = [f for f in message.DESCRIPTOR.fields if f.type == FieldDescriptor.TYPE_INT64]
        assert int64
        for field in int64:
            assert schemas[message.DESCRIPTOR.name]["properties"][field.name]["type"] == "string"

    error = schemas["google.rpc.Status"]["properties"]
    assert set(error) == {"code", "message", "details"}
    assert document["components"]["responses"]["Error404"]["content"]["application/json"]["schema"] == {
        "allOf": [{"$ref": "#/components/schemas/google.rpc.Status"}],
        "properties": {"code": {"enum": [5]}},
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


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [operation for item in document["paths"].values() for operation in item.values()]


def test_error_details_are_typed_and_every_error_is_documented(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    details = schemas["google.rpc.Status"]["properties"]["details"]
    assert details["contains"] == {"$ref": "#/components/schemas/google.rpc.ErrorInfo"}  # always an ErrorInfo
    typed = {item["$ref"].rsplit("/", 1)[1] for item in details["items"]["oneOf"]}
    assert typed == {"google.rpc.ErrorInfo", "google.rpc.BadRequest", "google.rpc.RetryInfo"}
    for name in typed:
        assert schemas[name]["properties"]["@type"] == {"const": f"type.googleapis.com/{name}"}
        assert "@type" in schemas[name]["required"]
    assert schemas["google.rpc.ErrorInfo"]["properties"]["reason"]["type"] == "string"
    violation = schemas["google.rpc.BadRequest.FieldViolation"]["properties"]
    assert {"field", "description", "reason"} <= set(violation)
    for operation in _operations(document):
        assert operation["responses"]["default"] == {"$ref": "#/components/responses/Error"}
        assert {"400", "401", "403", "404", "409", "429", "503"} <= set(operation["responses"])


def test_watch_routes_are_server_sent_events(document: dict[str, Any]) -> None:
    for path, message in [
        ("/api/requests:watch", "WatchRequestsResponse"),
        ("/api/workspaces/{workspace_id}/requests:watch", "WatchWorkspaceRequestsResponse"),
    ]:
        operation = document["paths"][path]["get"]
        assert "event: error" in operation["description"]
        events = operation["responses"]["200"]["content"]["text/event-stream"]["schema"]["oneOf"]
        by_name = {event["properties"]["event"]["const"]: event["properties"]["data"] for event in events}
        assert by_name["message"]["contentSchema"] == {"$ref": f"#/components/schemas/{message}"}
        assert by_name["error"]["contentSchema"] == {"$ref": "#/components/schemas/google.rpc.Status"}
        assert all(data["contentMediaType"] == "application/json" for data in by_name.values())


def test_the_constraints_comments_document_are_in_the_schema(document: dict[str, Any]) -> None:
    get = document["paths"]["/api/workspaces/{workspace_id}"]["get"]
    (workspace_id,) = get["parameters"]
    assert workspace_id["schema"]["format"] == "uuid"
    listing = {p["name"]: p["schema"] for p in document["paths"]["/api/workspaces"]["get"]["parameters"]}
    assert listing["page_size"]["minimum"] == 0  # "negative is INVALID_ARGUMENT"
    update = {p["name"]: p for p in document["paths"]["/api/workspaces/{workspace_id}"]["patch"]["parameters"]}
    mask = update["update_mask"]["schema"]
    assert mask["pattern"] == "^(?:name|status)(?:,(?:name|status))*$"  # "`name` and/or `status`", non-empty
    # An optional filter id may be empty (not set); a REQUIRED string may not.
    filters = {p["name"]: p["schema"] for p in document["paths"]["/api/accounts"]["get"]["parameters"]}
    assert {"type": "string", "maxLength": 0} in filters["workspace_id"]["anyOf"]
    refresh = document["paths"]["/api/auth/refresh"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert refresh["properties"]["refresh_token"]["minLength"] == 1
    share = document["paths"]["/api/workspaces/{workspace_id}/pixels/{pixel_id}:requestShare"]["post"]
    ids = share["requestBody"]["content"]["application/json"]["schema"]
    assert (ids["minItems"], ids["maxItems"], ids["uniqueItems"]) == (1, 50, True)
    assert ids["items"]["format"] == "uuid"


def test_request_bodies_take_null_and_unknown_fields_and_responses_neither(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    body = schemas["WorkspaceRequestBody"]
    assert body["additionalProperties"] is True
    assert {"type": "null"} in body["properties"]["etag"]["anyOf"]
    assert "anyOf" not in body["properties"]["name"]  # REQUIRED: null would be "" and refused
    response = schemas["Workspace"]
    assert response["additionalProperties"] is False
    assert "anyOf" not in response["properties"]["etag"]


def test_a_write_only_field_is_never_returned(document: dict[str, Any]) -> None:
    """INPUT_ONLY fields have presence (proto3 `optional`): an unset one is left out of a response."""
    token = business_manager_pb2.BusinessManager.DESCRIPTOR.fields_by_name["system_user_token"]
    assert token.has_presence
    schema = document["components"]["schemas"]["BusinessManager"]
    assert schema["properties"]["system_user_token"]["writeOnly"] is True
    assert "system_user_token" not in schema.get("required", [])
    assert (
        json_format.MessageToDict(
            business_manager_pb2.BusinessManager(name="x"), always_print_fields_with_no_presence=True
        )
        .keys()
        .isdisjoint({"systemUserToken", "system_user_token"})
    )
