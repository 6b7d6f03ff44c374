"""Ids are accepted in their canonical spelling only (lowercase, hyphenated), over REST and gRPC."""

from typing import TYPE_CHECKING

import grpc
import httpx
import pytest

from adplane.v1 import workspace_service_pb2 as pb
from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceStub
from tests.e2e.test_workspaces_grpc import error_details
from tests.e2e.test_workspaces_rest import create, field_violations

if TYPE_CHECKING:
    from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceAsyncStub


def spellings(canonical: str) -> list[str]:
    return [
        canonical.upper(),
        "{" + canonical + "}",
        "urn:uuid:" + canonical,
        canonical.replace("-", ""),
        " " + canonical,
    ]


async def test_other_spellings_are_400_over_rest(http: httpx.AsyncClient) -> None:
    workspace = await create(http, "Spelling Co")
    assert (await http.get(f"/api/workspaces/{workspace['id']}")).status_code == 200

    for spelling in spellings(workspace["id"]):
        response = await http.get(f"/api/workspaces/{spelling}")
        assert response.status_code == 400, (spelling, response.text)
        assert field_violations(response) == ["workspace_id"]
    # An id in a query filter too.
    listed = await http.get("/api/audit-logs", params={"workspace_id": workspace["id"].upper()})
    assert listed.status_code == 400, listed.text
    assert field_violations(listed) == ["workspace_id"]


async def test_other_spellings_are_invalid_argument_over_grpc(
    http: httpx.AsyncClient, channel: grpc.aio.Channel
) -> None:
    workspace = await create(http, "Spelling Grpc Co")
    stub: WorkspaceServiceAsyncStub = WorkspaceServiceStub(channel)

    for spelling in spellings(workspace["id"]):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetWorkspace(pb.GetWorkspaceRequest(workspace_id=spelling))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, spelling
        assert error_details(error.value)[1] == ["workspace_id"]


async def test_a_path_bound_field_set_again_in_the_query_is_400(http: httpx.AsyncClient) -> None:
    first = await create(http, "Bound A")
    second = await create(http, "Bound B")

    for name in ("workspace_id", "workspaceId"):
        response = await http.get(f"/api/workspaces/{first['id']}", params={name: second["id"]})
        assert response.status_code == 400, response.text
        assert field_violations(response) == ["workspace_id"]
    # Other query parameters still work on routes with path variables.
    listed = await http.get(f"/api/workspaces/{first['id']}/members", params={"page_size": 5})
    assert listed.status_code == 200, listed.text
