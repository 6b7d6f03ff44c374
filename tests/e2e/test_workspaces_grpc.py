"""Every WorkspaceService RPC over a real gRPC channel, successes and failures."""

import uuid
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from adplane.v1 import workspace_pb2
from adplane.v1 import workspace_service_pb2 as pb
from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceStub
from server.composition import Infrastructure
from tests.callers import make_caller

if TYPE_CHECKING:  # the async stub type exists only in the .pyi
    from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceAsyncStub

ACTIVE = workspace_pb2.WORKSPACE_STATUS_ACTIVE
SUSPENDED = workspace_pb2.WORKSPACE_STATUS_SUSPENDED
ARCHIVED = workspace_pb2.WORKSPACE_STATUS_ARCHIVED


def error_details(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, list[str]]:
    """The ErrorInfo and the BadRequest field paths of a failed call."""
    status = rpc_status.from_call(error)
    assert status is not None, "error carries no google.rpc.Status"
    info = error_details_pb2.ErrorInfo()
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    assert info.domain == "adplane"
    return info, fields


async def create(stub: "WorkspaceServiceAsyncStub", name: str, **kwargs: object) -> workspace_pb2.Workspace:
    reply = await stub.CreateWorkspace(
        pb.CreateWorkspaceRequest(workspace=workspace_pb2.Workspace(name=name), **kwargs)  # type: ignore[arg-type]
    )
    return reply.workspace


async def test_create_get_list_update_delete(channel: grpc.aio.Channel) -> None:
    stub = WorkspaceServiceStub(channel)
    created = await create(stub, "Acme")
    assert created.status == ACTIVE
    assert uuid.UUID(created.id)
    assert created.create_time.seconds > 0

    fetched = (await stub.GetWorkspace(pb.GetWorkspaceRequest(workspace_id=created.id))).workspace
    assert fetched == created

    listed = await stub.ListWorkspaces(pb.ListWorkspacesRequest())
    assert [w.id for w in listed.workspaces] == [created.id]
    assert listed.next_page_token == ""

    updated = (
        await stub.UpdateWorkspace(
            pb.UpdateWorkspaceRequest(
                workspace_id=created.id,
                workspace=workspace_pb2.Workspace(name="Acme Corp", status=SUSPENDED, etag=created.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["name", "status"]),
            )
        )
    ).workspace
    assert (updated.name, updated.status) == ("Acme Corp", SUSPENDED)
    assert updated.etag != created.etag

    deleted = (await stub.DeleteWorkspace(pb.DeleteWorkspaceRequest(workspace_id=created.id))).workspace
    assert deleted.status == ARCHIVED


async def test_request_id_makes_create_idempotent(channel: grpc.aio.Channel) -> None:
    stub = WorkspaceServiceStub(channel)
    first = await create(stub, "Retry Co", request_id="e2e-1")
    second = await create(stub, "Retry Co", request_id="e2e-1")
    assert first.id == second.id
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create(stub, "Other Co", request_id="e2e-1")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, fields = error_details(raised.value)
    assert info.reason == "REQUEST_ID_REUSED"
    assert fields == ["request_id"]


async def test_unknown_workspace_is_not_found_with_error_info(channel: grpc.aio.Channel) -> None:
    stub = WorkspaceServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetWorkspace(pb.GetWorkspaceRequest(workspace_id=str(uuid.uuid4())))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(raised.value)[0].reason == "WORKSPACE_NOT_FOUND"


@pytest.mark.parametrize(
    ("request_message", "field"),
    [
        (pb.CreateWorkspaceRequest(workspace=workspace_pb2.Workspace(name="   ")), "workspace.name"),
        (pb.CreateWorkspaceRequest(workspace=workspace_pb2.Workspace(name="x" * 101)), "workspace.name"),
        (pb.CreateWorkspaceRequest(workspace=workspace_pb2.Workspace(name="ok", status=ARCHIVED)), "workspace.status"),
        (pb.CreateWorkspaceRequest(workspace=workspace_pb2.Workspace(name="ok"), request_id="r" * 129), "request_id"),
        (pb.GetWorkspaceRequest(workspace_id="not-a-uuid"), "workspace_id"),
        (pb.ListWorkspacesRequest(page_size=-1), "page_size"),
        (pb.ListWorkspacesRequest(page_token="garbage"), "page_token"),
        (pb.ListWorkspacesRequest(status=99), "status"),  # type: ignore[arg-type]
        (pb.UpdateWorkspaceRequest(workspace_id=str(uuid.uuid4())), "update_mask.paths"),
        (
            pb.UpdateWorkspaceRequest(
                workspace_id=str(uuid.uuid4()), update_mask=field_mask_pb2.FieldMask(paths=["id"])
            ),
            "update_mask.paths[0]",
        ),
        (
            pb.UpdateWorkspaceRequest(
                workspace_id=str(uuid.uuid4()), update_mask=field_mask_pb2.FieldMask(paths=["status"])
            ),
            "workspace.status",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)
async def test_invalid_requests_name_the_field(channel: grpc.aio.Channel, request_message: object, field: str) -> None:
    stub = WorkspaceServiceStub(channel)
    method = {
        "CreateWorkspaceRequest": stub.CreateWorkspace,
        "GetWorkspaceRequest": stub.GetWorkspace,
        "ListWorkspacesRequest": stub.ListWorkspaces,
        "UpdateWorkspaceRequest": stub.UpdateWorkspace,
    }[type(request_message).__name__]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await method(request_message)  # type: ignore[operator]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, fields = error_details(raised.value)
    assert info.reason, "every error names its reason"
    assert field in fields, (fields, raised.value.details())


async def test_pages_cover_every_workspace_once(channel: grpc.aio.Channel) -> None:
    stub = WorkspaceServiceStub(channel)
    ids = [(await create(stub, f"Paged {i}")).id for i in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListWorkspaces(pb.ListWorkspacesRequest(page_size=2, page_token=token))
        seen.extend(w.id for w in page.workspaces)
        token = page.next_page_token
        if not token:
            break
    assert seen == ids


async def test_stale_etag_is_aborted(channel: grpc.aio.Channel) -> None:
    stub = WorkspaceServiceStub(channel)
    workspace = await create(stub, "Etag Co")
    rename = pb.UpdateWorkspaceRequest(
        workspace_id=workspace.id,
        workspace=workspace_pb2.Workspace(name="Etag Co 2", etag=workspace.etag),
        update_mask=field_mask_pb2.FieldMask(paths=["name"]),
    )
    await stub.UpdateWorkspace(rename)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UpdateWorkspace(rename)
    assert raised.value.code() == grpc.StatusCode.ABORTED
    assert error_details(raised.value)[0].reason == "ETAG_MISMATCH"


async def test_native_grpc_passes_through_envoy(envoy_channel: grpc.aio.Channel) -> None:
    stub = WorkspaceServiceStub(envoy_channel)
    created = await create(stub, "Through Envoy")
    fetched = await stub.GetWorkspace(pb.GetWorkspaceRequest(workspace_id=created.id))
    assert fetched.workspace.name == "Through Envoy"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetWorkspace(pb.GetWorkspaceRequest(workspace_id=str(uuid.uuid4())))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(raised.value)[0].reason == "WORKSPACE_NOT_FOUND"


async def test_bytes_that_are_not_a_message_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/adplane.v1.WorkspaceService/GetWorkspace"
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(b"\xff\xff\xff\xff not protobuf")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(raised.value)[0].reason == "MALFORMED_REQUEST"


async def test_control_characters_in_a_request_id_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    stub = WorkspaceServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create(stub, "Nul Co", request_id="a\x00b")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(raised.value)[1] == ["request_id"]


async def test_a_malformed_workspace_id_is_invalid_argument_for_a_member(
    anonymous_channel: grpc.aio.Channel, infrastructure: Infrastructure
) -> None:
    member = await make_caller(infrastructure)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await WorkspaceServiceStub(anonymous_channel).GetWorkspace(
            pb.GetWorkspaceRequest(workspace_id="not-a-uuid"), metadata=member.metadata
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(raised.value)[1] == ["workspace_id"]
