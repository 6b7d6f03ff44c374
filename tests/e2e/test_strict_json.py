"""Strict JSON at the edge: a body of the wrong shape is INVALID_ARGUMENT with a field violation,
never coerced, on every class of write route; nothing it would have changed changes.

The classes: a body that replaces a set (a list bound to the body), a body that is a list of things
to add, a body bound to a message field, the whole request as the body (`body: "*"`), and a route
that takes no body (the transcoder still reads one into the request)."""

import uuid

import httpx
import pytest

from server.composition import Infrastructure
from server.users.schemas import UserResponseSchema
from tests.callers import make_caller
from tests.e2e.test_watch import new_workspace, submit

pytestmark = pytest.mark.usefixtures("stack")

BAD_REQUEST = 400


def field_violation(response: httpx.Response) -> tuple[str, str]:
    """The one field violation of an INVALID_ARGUMENT reply: (field, reason)."""
    assert response.status_code == BAD_REQUEST, response.text
    body = response.json()
    assert body["code"] == 3
    details = {detail["@type"].rsplit(".", 1)[-1]: detail for detail in body["details"]}
    assert details["ErrorInfo"]["reason"] == "INVALID_ARGUMENT"
    (violation,) = details["BadRequest"]["field_violations"]
    assert violation["description"]
    assert body["message"].startswith("invalid request")
    return violation["field"], violation["reason"]


async def send(http: httpx.AsyncClient, method: str, path: str, body: str) -> httpx.Response:
    return await http.request(method, path, content=body.encode(), headers={"content-type": "application/json"})


async def roles_of(infrastructure: Infrastructure, user_id: uuid.UUID) -> list[str]:
    async with infrastructure.unit_of_work(read_only=True) as uow:
        user: UserResponseSchema = await uow.users.get_user(user_id)
    return sorted(user.role_names)


# The shapes a set-replacing list body must refuse, with the field each is reported on.
NOT_A_LIST = [
    ("[null]", "role_names[0]"),
    ("[null, null]", "role_names[0]"),
    ('["staff", null]', "role_names[1]"),
    ("[[null, null]]", "role_names[0]"),
    ('[["staff"]]', "role_names[0]"),
    ('[{"name": "staff"}]', "role_names[0]"),
    ("null", "role_names"),
    ('"staff"', "role_names"),
    ('{"role_names": ["staff"]}', "role_names"),
    ("7", "role_names"),
    ("", "role_names"),
    ("  ", "role_names"),
]


@pytest.mark.parametrize(("body", "field"), NOT_A_LIST)
async def test_a_set_replacing_write_takes_only_an_explicit_list(
    http: httpx.AsyncClient, infrastructure: Infrastructure, body: str, field: str
) -> None:
    staff = await make_caller(infrastructure, roles=["staff"])
    refused = await send(http, "PUT", f"/api/users/{staff.user_id}/roles", body)
    assert field_violation(refused) == (field, "INVALID_JSON_SHAPE")
    assert await roles_of(infrastructure, staff.user_id) == ["staff"]


async def test_an_empty_list_clears_the_set_and_a_list_sets_it(
    http: httpx.AsyncClient, infrastructure: Infrastructure
) -> None:
    staff = await make_caller(infrastructure, roles=["staff"])
    path = f"/api/users/{staff.user_id}/roles"
    assert (await send(http, "PUT", path, "[]")).status_code == 200
    assert await roles_of(infrastructure, staff.user_id) == []
    assert (await send(http, "PUT", path, '["staff", "approver"]')).status_code == 200
    assert await roles_of(infrastructure, staff.user_id) == ["approver", "staff"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("[null]", "account_ids[0]"),
        ('[["01a1e5b0-0000-7000-8000-000000000000"]]', "account_ids[0]"),
        ("null", "account_ids"),
        ('"01a1e5b0-0000-7000-8000-000000000000"', "account_ids"),
        ('{"id": "01a1e5b0-0000-7000-8000-000000000000"}', "account_ids"),
    ],
)
async def test_a_list_of_things_to_add_refuses_the_same_shapes(
    http: httpx.AsyncClient, infrastructure: Infrastructure, body: str, field: str
) -> None:
    workspace = await new_workspace(infrastructure, f"Shapes {uuid.uuid4()}")
    path = f"/api/workspaces/{workspace}/pixels/{uuid.uuid4()}:requestShare"
    assert field_violation(await send(http, "POST", path, body)) == (field, "INVALID_JSON_SHAPE")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"name": {"text": "Acme"}}', "workspace.name"),
        ('{"name": ["Acme"]}', "workspace.name"),
        ('{"name": [null]}', "workspace.name"),
        ('{"name": 5}', "workspace.name"),
        ('{"name": true}', "workspace.name"),
        ('{"name": "Acme", "etag": {"a": 1}}', "workspace.etag"),
        ('{"name": "Acme", "status": ["WORKSPACE_STATUS_ACTIVE"]}', "workspace.status"),
        ('["Acme"]', "workspace"),
        ('"Acme"', "workspace"),
    ],
)
async def test_a_body_bound_to_a_message_refuses_objects_and_lists_where_a_value_belongs(
    http: httpx.AsyncClient, infrastructure: Infrastructure, body: str, field: str
) -> None:
    before = (await http.get("/api/workspaces", params={"page_size": 500})).json()["workspaces"]
    assert field_violation(await send(http, "POST", "/api/workspaces", body)) == (field, "INVALID_JSON_SHAPE")
    after = (await http.get("/api/workspaces", params={"page_size": 500})).json()["workspaces"]
    assert after == before


async def test_an_update_refuses_the_same_shapes_and_changes_nothing(
    http: httpx.AsyncClient, infrastructure: Infrastructure
) -> None:
    workspace = await new_workspace(infrastructure, f"Kept {uuid.uuid4()}")
    before = (await http.get(f"/api/workspaces/{workspace}")).json()
    # The JSON name (lowerCamel) of a field is read as the transcoder reads it; the violation names
    # the proto field.
    refused = await send(
        http, "PATCH", f"/api/workspaces/{workspace}?update_mask=name", '{"name": ["Renamed"], "etag": "W/\\"1\\""}'
    )
    assert field_violation(refused) == ("workspace.name", "INVALID_JSON_SHAPE")
    assert (await http.get(f"/api/workspaces/{workspace}")).json() == before


async def test_a_nested_list_of_a_set_replacing_write_is_checked_too(
    http: httpx.AsyncClient, infrastructure: Infrastructure
) -> None:
    """PUT of an account user's tasks: the list sits inside the body's message."""
    workspace = await new_workspace(infrastructure, f"Tasks {uuid.uuid4()}")
    path = f"/api/workspaces/{workspace}/accounts/{uuid.uuid4()}/users/{uuid.uuid4()}"
    for body, field in [
        ('{"tasks": [null]}', "assignment.tasks[0]"),
        ('{"tasks": null}', "assignment.tasks"),
        ('{"tasks": "ACCOUNT_USER_TASK_MANAGE"}', "assignment.tasks"),
        ('{"tasks": [["ACCOUNT_USER_TASK_MANAGE"]]}', "assignment.tasks[0]"),
    ]:
        assert field_violation(await send(http, "PUT", path, body)) == (field, "INVALID_JSON_SHAPE"), body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"email": {"address": "a@example.com"}, "password": "x"}', "email"),
        ('{"email": ["a@example.com"], "password": "x"}', "email"),
        ('{"email": "a@example.com", "password": [null]}', "password"),
        ("[]", ""),
    ],
)
async def test_the_whole_request_as_body_refuses_the_same_shapes(
    anonymous_http: httpx.AsyncClient, body: str, field: str
) -> None:
    # Refused before any credential is checked: 400, not 401.
    assert field_violation(await send(anonymous_http, "POST", "/api/auth/login", body)) == (
        field,
        "INVALID_JSON_SHAPE",
    )


async def test_a_route_without_a_body_refuses_a_body_of_the_wrong_shape(
    http: httpx.AsyncClient, infrastructure: Infrastructure
) -> None:
    workspace = await new_workspace(infrastructure, f"Approve {uuid.uuid4()}")
    waiting = await submit(infrastructure, workspace, "waits")
    path = f"/api/requests/{waiting.id}:approve"
    for body, field in [("[[1]]", ""), ('{"request_id": ["k"]}', "request_id"), ('{"id": {"a": 1}}', "id")]:
        assert field_violation(await send(http, "POST", path, body)) == (field, "INVALID_JSON_SHAPE"), body
    listed = (await http.get(f"/api/workspaces/{workspace}/requests/{waiting.id}")).json()
    assert listed["request"]["status"] == "REQUEST_STATUS_WAITING_FOR_APPROVAL"
    # An empty object, or unknown fields, as before.
    assert (await send(http, "POST", path, '{"unknown": [null, [1]]}')).status_code == 200
