"""The newcomer's path through REST: a member requests an ad account, sees it waiting, staff approve
it, and both steps are in the audit log."""

import uuid

import httpx

from server.auth.roles import WorkspaceRole
from server.composition import Infrastructure
from tests.callers import Caller, make_caller
from tests.e2e.test_workspaces_rest import error_reason


async def test_request_wait_approve_and_audit(
    http: httpx.AsyncClient, anonymous_http: httpx.AsyncClient, infrastructure: Infrastructure, admin: Caller
) -> None:
    workspace = (await http.post("/api/workspaces", json={"name": "Flow Co"})).json()["workspace"]
    business_manager = await http.post(
        "/api/business-managers",
        json={"meta_business_id": "123456789", "name": "Agency EU", "system_user_token": "x" * 40},
    )
    assert business_manager.status_code == 200, business_manager.text
    assert "x" * 40 not in business_manager.text  # write-only
    assert business_manager.json()["business_manager"]["has_system_user_token"] is True
    bm_id = business_manager.json()["business_manager"]["id"]

    member = await make_caller(infrastructure, memberships={uuid.UUID(workspace["id"]): WorkspaceRole.MEMBER})
    approver = await make_caller(infrastructure, roles=["approver"])
    base = f"/api/workspaces/{workspace['id']}"

    asked = await anonymous_http.post(
        f"{base}/accounts:request",
        json={"name": "Spring Sale", "currency": "eur", "timezone": "Europe/Berlin", "business_manager_id": bm_id},
        headers=member.headers,
    )
    assert asked.status_code == 200, asked.text
    request = asked.json()["request"]
    assert request["status"] == "REQUEST_STATUS_WAITING_FOR_APPROVAL"
    assert request["account_creation"]["currency"] == "EUR"

    mine = await anonymous_http.get(f"{base}/requests", headers=member.headers)
    assert [r["id"] for r in mine.json()["requests"]] == [request["id"]]
    # A member cannot approve their own request; staff with the approval permission can.
    denied = await anonymous_http.post(f"/api/requests/{request['id']}:approve", headers=member.headers)
    assert denied.status_code == 403
    queue = await anonymous_http.get(
        "/api/requests", params={"status": "REQUEST_STATUS_WAITING_FOR_APPROVAL"}, headers=approver.headers
    )
    assert request["id"] in [r["id"] for r in queue.json()["requests"]]
    approved = await anonymous_http.post(f"/api/requests/{request['id']}:approve", headers=approver.headers)
    assert approved.status_code == 200, approved.text
    assert approved.json()["request"]["status"] == "REQUEST_STATUS_APPROVED"
    assert approved.json()["request"]["reviewer_id"] == str(approver.user_id)
    again = await anonymous_http.post(f"/api/requests/{request['id']}:approve", headers=approver.headers)
    assert again.status_code == 400
    assert error_reason(again) == "REQUEST_NOT_WAITING"

    audit = await http.get(
        "/api/audit-logs", params={"filter.entity_type": "request", "filter.entity_id": request["id"]}
    )
    assert audit.status_code == 200, audit.text
    steps = [(entry["action"], entry["actor_id"]) for entry in reversed(audit.json()["audit_logs"])]
    assert steps == [("request", str(member.user_id)), ("approve", str(approver.user_id))]
    assert audit.json()["audit_logs"][0]["before"]["status"] == "waiting_for_approval"
    assert audit.json()["audit_logs"][0]["after"]["status"] == "approved"


async def test_reject_needs_a_reason_and_the_workspace_sees_it(
    http: httpx.AsyncClient, anonymous_http: httpx.AsyncClient, infrastructure: Infrastructure
) -> None:
    workspace = (await http.post("/api/workspaces", json={"name": "Reject Co"})).json()["workspace"]
    # Connecting the workspace's own business is for its admins.
    member = await make_caller(infrastructure, memberships={uuid.UUID(workspace["id"]): WorkspaceRole.ADMIN})
    asked = await anonymous_http.post(
        f"/api/workspaces/{workspace['id']}/business-managers:requestConnection",
        json={"meta_business_id": "987654321", "name": "Reject Co Business"},
        headers=member.headers,
    )
    assert asked.status_code == 200, asked.text
    request_id = asked.json()["request"]["id"]
    no_reason = await http.post(f"/api/requests/{request_id}:reject", json={"reason": "  "})
    assert no_reason.status_code == 400
    rejected = await http.post(f"/api/requests/{request_id}:reject", json={"reason": "Not a business we serve."})
    assert rejected.status_code == 200
    seen = await anonymous_http.get(f"/api/workspaces/{workspace['id']}/requests/{request_id}", headers=member.headers)
    assert seen.json()["request"]["status"] == "REQUEST_STATUS_REJECTED"
    assert seen.json()["request"]["rejection_reason"] == "Not a business we serve."
    cancel = await anonymous_http.post(
        f"/api/workspaces/{workspace['id']}/requests/{request_id}:cancel", headers=member.headers
    )
    assert cancel.status_code == 400
    assert error_reason(cancel) == "REQUEST_NOT_WAITING"
