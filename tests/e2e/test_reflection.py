"""Server reflection, v1 and v1alpha, without credentials: services listed, files served with comments."""

from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from adplane.v1 import workspace_service_pb2

# Session fixtures first: the per-test database cleaner needs them and runs inside the event loop.
pytestmark = pytest.mark.usefixtures("infrastructure", "stack")

REFLECTION_PACKAGES = ["grpc.reflection.v1", "grpc.reflection.v1alpha"]


async def ask(
    channel: grpc.aio.Channel, package: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    """One request over the bidirectional stream (v1 and v1alpha messages are the same on the wire)."""
    call = channel.stream_stream(
        f"/{package}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )

    async def one() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield request

    replies = [reply async for reply in call(one(), timeout=10)]
    assert len(replies) == 1
    return replies[0]


@pytest.mark.parametrize("package", REFLECTION_PACKAGES)
async def test_lists_every_service(anonymous_channel: grpc.aio.Channel, package: str) -> None:
    reply = await ask(anonymous_channel, package, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {service.name for service in reply.list_services_response.service}
    assert {
        "adplane.v1.WorkspaceService",
        "adplane.v1.AuthService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names


@pytest.mark.parametrize("package", REFLECTION_PACKAGES)
async def test_files_carry_the_proto_comments(anonymous_channel: grpc.aio.Channel, package: str) -> None:
    reply = await ask(
        anonymous_channel,
        package,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="adplane.v1.WorkspaceService"),
    )
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in reply.file_descriptor_response.file_descriptor_proto
    ]
    assert files[0].name == workspace_service_pb2.DESCRIPTOR.name
    # Every import comes along, so a client can build the whole service from this one answer.
    served = {file.name for file in files}
    assert set(files[0].dependency) <= served
    assert "google/api/annotations.proto" in served
    comments = [location.leading_comments for location in files[0].source_code_info.location]
    assert any("workspace" in comment.lower() for comment in comments)


@pytest.mark.parametrize(
    "symbol", ["adplane.v1.WorkspaceService.ListWorkspaces", "adplane.v1.ListWorkspacesRequest.page_size"]
)
async def test_methods_and_fields_are_symbols_too(anonymous_channel: grpc.aio.Channel, symbol: str) -> None:
    reply = await ask(
        anonymous_channel, "grpc.reflection.v1", reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    )
    file = descriptor_pb2.FileDescriptorProto.FromString(reply.file_descriptor_response.file_descriptor_proto[0])
    assert file.name == workspace_service_pb2.DESCRIPTOR.name


@pytest.mark.parametrize("package", REFLECTION_PACKAGES)
async def test_reflection_describes_itself(anonymous_channel: grpc.aio.Channel, package: str) -> None:
    reply = await ask(
        anonymous_channel,
        package,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=f"{package}.ServerReflection"),
    )
    file = descriptor_pb2.FileDescriptorProto.FromString(reply.file_descriptor_response.file_descriptor_proto[0])
    assert file.package == package
    assert file.service[0].method[0].input_type == f".{package}.ServerReflectionRequest"


async def test_unknown_symbol_is_not_found(anonymous_channel: grpc.aio.Channel) -> None:
    reply = await ask(
        anonymous_channel,
        "grpc.reflection.v1",
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="adplane.v1.NoSuchService"),
    )
    assert reply.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
