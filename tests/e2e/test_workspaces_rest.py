"""Every WorkspaceService RPC over REST/JSON through Envoy's transcoder."""

import uuid
from typing import Any

import httpx


def error_reason(response: httpx.Response) -> str:
    """The ErrorInfo reason in Envoy's JSON rendering of google.rpc.Status."""
    body = response.json()
    infos = [d for d in body.get("details", []) if d.get("@type", "").endswith("google.rpc.ErrorInfo")]
    assert infos, body
    assert infos[0]["domain"] == "adplane"
    return str(infos[0]["reason"])


def field_violations(response: httpx.Response) -> list[str]:
    body = response.json()
    return [
        violation["field"]
        for detail in body.get("details", [])
        if detail.get("@type", "").endswith("google.rpc.BadRequest")
        for violation in detail["field_violations"]
    ]


async def create(http: httpx.AsyncClient, name: str, **extra: Any) -> dict[str, Any]:
    response = await http.post("/api/workspaces", json={"name": name}, params=extra)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()["workspace"]
    return body


async def test_create_read_list_update_delete(http: httpx.AsyncClient) -> None:
    created = await create(http, "Rest Co")
    assert created["status"] == "WORKSPACE_STATUS_ACTIVE"
    assert set(created) >= {"id", "name", "status", "create_time", "update_time", "etag"}  # snake_case

    fetched = await http.get(f"/api/workspaces/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["workspace"] == created

    listed = await http.get("/api/workspaces", params={"page_size": 10, "status": "WORKSPACE_STATUS_ACTIVE"})
    assert listed.status_code == 200
    assert [w["id"] for w in listed.json()["workspaces"]] == [created["id"]]
    assert listed.json()["next_page_token"] == ""  # default values are printed

    updated = await http.patch(
        f"/api/workspaces/{created['id']}",
        params={"update_mask": "name"},
        json={"name": "Rest Co Renamed", "etag": created["etag"]},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["workspace"]["name"] == "Rest Co Renamed"

    deleted = await http.delete(f"/api/workspaces/{created['id']}")
    assert deleted.status_code == 200
    assert deleted.json()["workspace"]["status"] == "WORKSPACE_STATUS_ARCHIVED"


async def test_trailing_slash_is_accepted(http: httpx.AsyncClient) -> None:
    created = await create(http, "Slash Co")
    assert (await http.get(f"/api/workspaces/{created['id']}/")).status_code == 200
    assert (await http.get("/api/workspaces/")).status_code == 200


async def test_request_id_in_query_makes_create_idempotent(http: httpx.AsyncClient) -> None:
    first = await create(http, "Idem Co", request_id="rest-1")
    again = await create(http, "Idem Co", request_id="rest-1")
    assert first["id"] == again["id"]


async def test_unknown_id_is_404_with_error_info(http: httpx.AsyncClient) -> None:
    response = await http.get(f"/api/workspaces/{uuid.uuid4()}")
    assert response.status_code == 404
    assert error_reason(response) == "WORKSPACE_NOT_FOUND"


async def test_negative_page_size_is_400_naming_the_field(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/workspaces", params={"page_size": -1})
    assert response.status_code == 400
    assert field_violations(response) == ["page_size"]


async def test_invalid_name_is_400_naming_the_field(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/workspaces", json={"name": ""})
    assert response.status_code == 400
    assert field_violations(response) == ["workspace.name"]


async def test_malformed_json_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/workspaces", content=b'{"name": "unterminated', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


async def test_unknown_query_parameter_is_400(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/workspaces", params={"colour": "blue"})
    assert response.status_code == 400


async def test_unknown_route_is_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/nothing-here")
    assert response.status_code == 404


async def test_stale_etag_is_409(http: httpx.AsyncClient) -> None:
    created = await create(http, "Stale Co")
    change = {"name": "Stale Co 2", "etag": created["etag"]}
    first = await http.patch(f"/api/workspaces/{created['id']}", params={"update_mask": "name"}, json=change)
    assert first.status_code == 200
    second = await http.patch(f"/api/workspaces/{created['id']}", params={"update_mask": "name"}, json=change)
    assert second.status_code == 409
    assert error_reason(second) == "ETAG_MISMATCH"


async def test_duplicate_name_is_409_already_exists(http: httpx.AsyncClient) -> None:
    await create(http, "Twin Co")
    response = await http.post("/api/workspaces", json={"name": "twin co"})
    assert response.status_code == 409
    assert error_reason(response) == "WORKSPACE_NAME_TAKEN"


async def test_request_id_header_is_returned(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/workspaces", headers={"x-request-id": "trace-me-123"})
    assert response.status_code == 200
    assert response.headers.get("x-request-id") == "trace-me-123"
