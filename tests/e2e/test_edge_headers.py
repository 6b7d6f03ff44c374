"""What the edge says about itself on a real stack: CORS on the event stream and on refusals, and
an oversized header block sent straight to the server, answered like every other error."""

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from adplane.v1 import workspace_service_pb2 as pb
from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceStub
from server.config import Settings
from tests.callers import Caller
from tests.e2e.conftest import Stack

# Tests run with ENVIRONMENT=test: this machine's origins, on any port, may call cross-origin.
LOCAL_ORIGIN = "http://localhost:5173"


async def test_the_event_stream_and_a_refusal_carry_cors_for_allowed_origins_only(stack: Stack, admin: Caller) -> None:
    async with httpx.AsyncClient(base_url=stack.rest_url, timeout=10) as client:
        async with client.stream(
            "GET", "/api/requests:watch", headers={**admin.headers, "origin": LOCAL_ORIGIN}
        ) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert (stream.headers.get("access-control-allow-origin"), stream.headers.get("vary")) == (
                LOCAL_ORIGIN,
                "Origin",
            )
        refused = await client.get("/api/workspaces", headers={"origin": LOCAL_ORIGIN})
        foreign = await client.get("/api/workspaces", headers={"origin": "https://evil.example"})

    assert refused.status_code == foreign.status_code == 401
    assert refused.headers.get("access-control-allow-origin") == LOCAL_ORIGIN
    assert "access-control-allow-origin" not in foreign.headers
    assert refused.headers["vary"] == foreign.headers["vary"] == "Origin"


@pytest.mark.parametrize("kib", [30, 80])
async def test_an_oversized_header_block_straight_to_the_server_is_resource_exhausted_naming_no_header(
    stack: Stack, admin: Caller, settings: Settings, kib: int
) -> None:
    """Above MAX_REQUEST_HEADERS_KB plus the edge's allowance, below grpc core's own (4x) limit."""
    assert kib * 1024 > settings.server_max_metadata_bytes
    async with grpc.aio.insecure_channel(stack.server.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await WorkspaceServiceStub(channel).ListWorkspaces(
                pb.ListWorkspacesRequest(), metadata=(*admin.metadata, ("x-oversized", "a" * kib * 1024))
            )
        # The connection is still good for the next call.
        listed = await WorkspaceServiceStub(channel).ListWorkspaces(pb.ListWorkspacesRequest(), metadata=admin.metadata)

    error = refused.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "the request headers are larger than the limit"
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("REQUEST_HEADERS_TOO_LARGE", "adplane")
    for name in ("x-oversized", "authorization", ":path", ":authority"):
        assert name not in str(status)
    assert listed is not None
