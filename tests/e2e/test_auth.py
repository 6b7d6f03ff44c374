"""Signing in and being refused, end to end: REST through Envoy and gRPC."""

import math
from pathlib import Path

import httpx
import pytest

from server.auth.roles import WorkspaceRole
from server.composition import Infrastructure
from server.config import Settings
from server.workspaces.schemas import WorkspaceCreateRequestSchema
from tests.callers import PASSWORD, Caller, make_caller
from tests.e2e.conftest import start_envoy, start_server
from tests.e2e.test_workspaces_rest import error_reason


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def test_login_over_rest_then_call_with_the_token(
    anonymous_http: httpx.AsyncClient, infrastructure: Infrastructure
) -> None:
    caller = await make_caller(infrastructure, roles=["staff"])
    response = await login(anonymous_http, caller.email.upper())
    assert response.status_code == 200, response.text
    tokens = response.json()["tokens"]
    assert tokens["token_type"] == "Bearer"
    me = await anonymous_http.get("/api/auth/me", headers={"authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200
    assert me.json()["user"]["email"] == caller.email
    assert "workspaces.read" in me.json()["system_permissions"]


async def test_wrong_password_is_401_without_saying_whether_the_email_exists(
    anonymous_http: httpx.AsyncClient, infrastructure: Infrastructure
) -> None:
    caller = await make_caller(infrastructure)
    wrong_password = await login(anonymous_http, caller.email, "not the password")
    unknown_email = await login(anonymous_http, "nobody@example.com", "not the password")
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json()["message"] == unknown_email.json()["message"]
    assert error_reason(wrong_password) == error_reason(unknown_email) == "INVALID_CREDENTIALS"


async def test_an_address_failing_at_an_account_is_refused_there_with_429_and_retry_info(
    settings: Settings, infrastructure: Infrastructure, tmp_path: Path
) -> None:
    # A first delay longer than the test, so the refusal cannot have expired before it is seen.
    server = start_server(settings, tmp_path, LOGIN_FIRST_DELAY_SECONDS="60", LOGIN_MAX_DELAY_SECONDS="120")
    envoy = start_envoy(settings, tmp_path, upstream_port=server.port)
    try:
        caller, colleague = await make_caller(infrastructure), await make_caller(infrastructure)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{envoy.port}") as client:
            for _ in range(settings.login_delay_after):
                assert (await login(client, caller.email, "guess")).status_code == 401
            refused = await login(client, caller.email)  # even the right password, from this address
            other_account = await login(client, colleague.email)
        assert refused.status_code == 429
        assert error_reason(refused) == "TOO_MANY_LOGIN_ATTEMPTS"
        retry = next(d for d in refused.json()["details"] if d["@type"].endswith("google.rpc.RetryInfo"))
        delay = float(retry["retry_delay"].removesuffix("s"))
        assert 0 < delay <= 60
        # HTTP's Retry-After: the same delay in whole seconds, rounded up.
        assert refused.headers["retry-after"] == str(max(1, math.ceil(delay)))
        # The address is not locked out: another account signs in from it.
        assert other_account.status_code == 200
    finally:
        envoy.stop()
        assert server.stop() == 0


async def test_no_credentials_is_401_and_missing_permission_is_403(
    anonymous_http: httpx.AsyncClient, infrastructure: Infrastructure
) -> None:
    assert (await anonymous_http.get("/api/workspaces")).status_code == 401
    outsider = await make_caller(infrastructure)
    forbidden = await anonymous_http.get("/api/workspaces", headers=outsider.headers)
    assert forbidden.status_code == 403
    assert error_reason(forbidden) == "MISSING_PERMISSION"
    garbage = await anonymous_http.get("/api/workspaces", headers={"authorization": "Bearer not-a-token"})
    assert garbage.status_code == 401
    assert error_reason(garbage) == "INVALID_TOKEN"


async def test_another_workspace_is_out_of_reach(
    anonymous_http: httpx.AsyncClient, infrastructure: Infrastructure
) -> None:
    async with infrastructure.unit_of_work() as uow:
        mine = await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name="Mine"))
        theirs = await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name="Theirs"))
    member = await make_caller(infrastructure, memberships={mine.id: WorkspaceRole.MEMBER})
    assert (await anonymous_http.get(f"/api/workspaces/{mine.id}", headers=member.headers)).status_code == 200
    assert (await anonymous_http.get(f"/api/workspaces/{theirs.id}", headers=member.headers)).status_code == 403
    my_workspaces = await anonymous_http.get("/api/me/workspaces", headers=member.headers)
    assert [m["workspace"]["id"] for m in my_workspaces.json()["workspaces"]] == [str(mine.id)]
    assert my_workspaces.json()["workspaces"][0]["role"] == "WORKSPACE_ROLE_MEMBER"


async def test_deactivating_a_user_stops_their_token_at_once(
    http: httpx.AsyncClient, anonymous_http: httpx.AsyncClient, infrastructure: Infrastructure
) -> None:
    staff = await make_caller(infrastructure, roles=["staff"])
    assert (await anonymous_http.get("/api/workspaces", headers=staff.headers)).status_code == 200
    deactivated = await http.post(f"/api/users/{staff.user_id}:deactivate")
    assert deactivated.status_code == 200, deactivated.text
    assert deactivated.json()["user"]["active"] is False
    refused = await anonymous_http.get("/api/workspaces", headers=staff.headers)
    assert refused.status_code == 401
    assert error_reason(refused) == "CREDENTIALS_REVOKED"
    assert (await login(anonymous_http, staff.email)).status_code == 401


async def test_refresh_rotates_and_a_replayed_token_ends_the_sign_in(
    anonymous_http: httpx.AsyncClient, infrastructure: Infrastructure
) -> None:
    caller: Caller = await make_caller(infrastructure)
    first = await anonymous_http.post("/api/auth/refresh", json={"refresh_token": caller.refresh_token})
    assert first.status_code == 200
    rotated = first.json()["tokens"]
    assert rotated["refresh_token"] != caller.refresh_token

    replay = await anonymous_http.post("/api/auth/refresh", json={"refresh_token": caller.refresh_token})
    assert replay.status_code == 401
    assert error_reason(replay) == "REFRESH_TOKEN_REUSED"
    # The whole family is gone: the rotated refresh token and its access token too.
    again = await anonymous_http.post("/api/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert again.status_code == 401
    me = await anonymous_http.get("/api/auth/me", headers={"authorization": f"Bearer {rotated['access_token']}"})
    assert me.status_code == 401


async def test_logout_revokes_the_access_token(
    anonymous_http: httpx.AsyncClient, infrastructure: Infrastructure
) -> None:
    caller = await make_caller(infrastructure)
    assert (await anonymous_http.get("/api/auth/me", headers=caller.headers)).status_code == 200
    out = await anonymous_http.post("/api/auth/logout", json={"refresh_token": caller.refresh_token})
    assert out.status_code == 200
    assert (await anonymous_http.get("/api/auth/me", headers=caller.headers)).status_code == 401


@pytest.mark.parametrize("header", ["x-api-key", "authorization"])
async def test_api_key_works_until_revoked(
    http: httpx.AsyncClient, anonymous_http: httpx.AsyncClient, header: str
) -> None:
    created = await http.post("/api/api-keys", json={"name": "billing sync", "role_names": ["staff"]})
    assert created.status_code == 200, created.text
    secret = created.json()["secret"]
    key_id = created.json()["api_key"]["id"]
    headers = {header: secret if header == "x-api-key" else f"Bearer {secret}"}
    assert (await anonymous_http.get("/api/workspaces", headers=headers)).status_code == 200
    assert (await anonymous_http.post("/api/workspaces", json={"name": "x"}, headers=headers)).status_code == 403
    assert (await http.post(f"/api/api-keys/{key_id}:revoke")).status_code == 200
    refused = await anonymous_http.get("/api/workspaces", headers=headers)
    assert refused.status_code == 401
    assert error_reason(refused) == "CREDENTIALS_REVOKED"


async def test_creator_of_a_workspace_becomes_its_owner(http: httpx.AsyncClient, admin: Caller) -> None:
    created = await http.post("/api/workspaces", json={"name": "Owned"})
    workspace_id = created.json()["workspace"]["id"]
    members = await http.get(f"/api/workspaces/{workspace_id}/members")
    assert members.status_code == 200
    assert [(m["user_id"], m["role"]) for m in members.json()["members"]] == [
        (str(admin.user_id), "WORKSPACE_ROLE_OWNER")
    ]
    last_owner = await http.delete(f"/api/workspaces/{workspace_id}/members/{admin.user_id}")
    assert last_owner.status_code == 400  # FAILED_PRECONDITION maps to 400
    assert error_reason(last_owner) == "LAST_OWNER"


async def test_set_user_roles_takes_a_json_array(http: httpx.AsyncClient, infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure)
    response = await http.put(f"/api/users/{caller.user_id}/roles", json=["staff"])
    assert response.status_code == 200, response.text
    assert response.json()["user"]["role_names"] == ["staff"]
    unknown = await http.put(f"/api/users/{caller.user_id}/roles", json=["emperor"])
    assert unknown.status_code == 400
