"""The request pipeline: composed once per method at start-up, and server-streaming methods pass
through the same steps (request id, error mapping, authentication, authorization) as unary ones."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # the public path of the asyncio servicer
from grpc_health.v1.health_pb2 import HealthCheckRequest as Request
from grpc_health.v1.health_pb2 import HealthCheckResponse as Response
from grpc_status import rpc_status

import server.app
from adplane.v1 import account_service_pb2
from server.app import REGISTRATIONS, build_server
from server.auth.policies import AccessPolicy, PolicyKind, PolicyTable
from server.auth.principal import current_principal
from server.auth.repository import StandingRepository
from server.auth.resolver import PrincipalResolver
from server.auth.roles import WorkspaceRole
from server.composition import Infrastructure
from server.config import Settings
from server.interceptors.authentication import Authentication
from server.interceptors.authorization import Authorization
from server.interceptors.errors import ErrorMapping
from server.interceptors.pipeline import (
    Context,
    Method,
    PipelineServer,
    Step,
    StreamBehavior,
    UnaryBehavior,
    UnsupportedMethodError,
    call_metadata,
)
from server.interceptors.request_logging import RequestLogging
from server.workspaces.exceptions import WorkspaceNotFoundException
from server.workspaces.schemas import WorkspaceCreateRequestSchema
from tests.callers import make_caller

SERVICE = "test.Streams"
HEALTH_METHODS = [f"/grpc.health.v1.Health/{m.name}" for m in health_pb2.DESCRIPTOR.services_by_name["Health"].methods]


class Counting(Step):
    """Counts how often it is composed and how often its wrappers run."""

    def __init__(self) -> None:
        self.composed: list[str] = []
        self.calls = 0

    def unary(self, method: Method, behavior: UnaryBehavior) -> UnaryBehavior:
        self.composed.append(method.name)

        async def counted(request: Any, context: Context) -> Any:
            self.calls += 1
            return await behavior(request, context)

        return counted

    def server_stream(self, method: Method, behavior: StreamBehavior) -> StreamBehavior:
        self.composed.append(method.name)

        async def counted(request: Any, context: Context) -> AsyncIterator[Any]:
            self.calls += 1
            async for response in behavior(request, context):
                yield response

        return counted


async def _statuses(request: Request, context: Context) -> AsyncIterator[Response]:
    """Streams SERVING three times; for service `missing` it fails with a domain error after the first."""
    for n in range(3):
        if n == 1 and request.service == "missing":
            raise WorkspaceNotFoundException(uuid.UUID(int=0))
        yield Response(status=Response.SERVING)


async def _who(request: Any, context: Context) -> AsyncIterator[Response]:
    context.set_trailing_metadata((("caller", str(current_principal().id)),))
    yield Response(status=Response.SERVING)


def _stream(behavior: Any, request_type: Any = Request) -> grpc.RpcMethodHandler[Any, Any]:
    return grpc.unary_stream_rpc_method_handler(
        behavior, request_deserializer=request_type.FromString, response_serializer=Response.SerializeToString
    )


@pytest.fixture
async def piped(infrastructure: Infrastructure) -> AsyncIterator[tuple[grpc.aio.Channel, Counting]]:
    counting = Counting()
    policies = PolicyTable(
        {
            f"/{SERVICE}/Public": AccessPolicy(PolicyKind.PUBLIC),
            f"/{SERVICE}/Who": AccessPolicy(PolicyKind.WORKSPACE_PERMISSION, "accounts.read"),
        }
    )
    steps = [
        RequestLogging(),
        ErrorMapping(),
        counting,
        Authentication(infrastructure.tokens),
        Authorization(policies, PrincipalResolver(StandingRepository(infrastructure.read_engine))),
    ]
    server = grpc.aio.server()
    pipeline = PipelineServer(server, steps)
    pipeline.add_registered_method_handlers(
        SERVICE,
        {
            "Public": _stream(_statuses),
            "Undeclared": _stream(_statuses),
            # Any request with a workspace_id field will do for the workspace policy.
            "Who": _stream(_who, account_service_pb2.ListAccountsRequest),
        },
    )
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, pipeline)
    await health.set("", Response.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, counting
    finally:
        await channel.close()
        await server.stop(None)


def _call(channel: grpc.aio.Channel, name: str, request_type: Any = Request) -> Any:
    return channel.unary_stream(
        f"/{SERVICE}/{name}",
        request_serializer=request_type.SerializeToString,
        response_deserializer=Response.FromString,
    )


async def test_steps_are_composed_once_per_method_not_per_call(
    piped: tuple[grpc.aio.Channel, Counting],
) -> None:
    channel, counting = piped
    composed = list(counting.composed)
    assert sorted(composed) == sorted(
        [f"/{SERVICE}/{name}" for name in ("Public", "Undeclared", "Who")] + HEALTH_METHODS
    )
    for _ in range(3):
        assert len([r async for r in _call(channel, "Public")(Request())]) == 3
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=Request.SerializeToString,
        response_deserializer=Response.FromString,
    )
    assert (await check(Request())).status == Response.SERVING
    assert counting.composed == composed
    assert counting.calls == 4


async def test_a_stream_gets_a_request_id_and_its_errors_mapped(piped: tuple[grpc.aio.Channel, Counting]) -> None:
    channel, _ = piped
    call = _call(channel, "Public")(Request(service="missing"), metadata=(("x-request-id", "stream-1"),))
    assert (await call.read()).status == Response.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call.read()
    assert dict(await call.trailing_metadata())["x-request-id"] == "stream-1"
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    status = rpc_status.from_call(raised.value)
    assert status is not None
    assert status.code == code_pb2.NOT_FOUND
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.domain == "adplane"


async def test_a_stream_without_credentials_or_policy_is_refused_before_its_first_message(
    piped: tuple[grpc.aio.Channel, Counting],
) -> None:
    channel, _ = piped
    for name, request in (("Undeclared", Request()), ("Who", account_service_pb2.ListAccountsRequest())):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            [r async for r in _call(channel, name, type(request))(request)]
        assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_a_stream_runs_as_the_authorized_caller_of_the_workspace_it_names(
    piped: tuple[grpc.aio.Channel, Counting], infrastructure: Infrastructure
) -> None:
    channel, _ = piped
    async with infrastructure.unit_of_work() as uow:
        workspace = await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name="Streams"))
    member = await make_caller(infrastructure, memberships={workspace.id: WorkspaceRole.VIEWER})
    outsider = await make_caller(infrastructure)
    who = _call(channel, "Who", account_service_pb2.ListAccountsRequest)
    request = account_service_pb2.ListAccountsRequest(workspace_id=str(workspace.id))
    call = who(request, metadata=member.metadata)
    assert [r.status async for r in call] == [Response.SERVING]
    assert dict(await call.trailing_metadata())["caller"] == str(member.user_id)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        [r async for r in who(request, metadata=outsider.metadata)]
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_a_stream_written_to_the_context_passes_the_pipeline(piped: tuple[grpc.aio.Channel, Counting]) -> None:
    """grpc's health Watch writes with context.write instead of yielding."""
    channel, counting = piped
    watch = health_pb2_grpc.HealthStub(channel).Watch(Request(service=""))
    assert (await watch.read()).status == Response.SERVING
    watch.cancel()
    assert counting.calls >= 1


async def test_client_streaming_methods_are_refused_at_start_up() -> None:
    pipeline = PipelineServer(grpc.aio.server(), [RequestLogging()])
    handler: grpc.RpcMethodHandler[Any, Any] = grpc.stream_unary_rpc_method_handler(lambda requests, context: None)
    with pytest.raises(UnsupportedMethodError):
        pipeline.add_registered_method_handlers(SERVICE, {"Upload": handler})


async def test_every_adplane_method_is_composed_when_the_server_is_built(
    settings: Settings, infrastructure: Infrastructure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """build_server composes each RPC of every registered service, health included."""
    composed: list[str] = []

    class Recording(Step):
        def unary(self, method: Method, behavior: UnaryBehavior) -> UnaryBehavior:
            composed.append(method.name)
            return behavior

        def server_stream(self, method: Method, behavior: StreamBehavior) -> StreamBehavior:
            composed.append(method.name)
            return behavior

    original = server.app.pipeline_steps
    monkeypatch.setattr(server.app, "pipeline_steps", lambda infra: [Recording(), *original(infra)])
    build_server(settings, infrastructure)
    expected = {f"/{r.name}/{m.name}" for r in REGISTRATIONS for m in r.descriptor.methods}
    assert expected | set(HEALTH_METHODS) == set(composed)
    assert len(composed) == len(set(composed))


class _Metadata:
    """A context that counts how often its metadata is read."""

    def __init__(self, *pairs: tuple[str, str]) -> None:
        self.pairs = pairs
        self.reads = 0

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        self.reads += 1
        return self.pairs


async def test_a_call_reads_its_metadata_from_grpc_once() -> None:
    first, second = _Metadata(("a", "1")), _Metadata(("b", "2"))

    async def steps(context: Any) -> list[Any]:
        return [call_metadata(context) for _ in range(3)]

    # Each RPC runs in a task of its own.
    seen = await asyncio.gather(asyncio.create_task(steps(first)), asyncio.create_task(steps(second)))
    assert list(seen) == [[(("a", "1"),)] * 3, [(("b", "2"),)] * 3]
    assert (first.reads, second.reads) == (1, 1)
    # Another call's context is never answered from what this task read before.
    third = _Metadata(("c", "3"))
    assert call_metadata(cast(Context, first)) == (("a", "1"),)
    assert call_metadata(cast(Context, third)) == (("c", "3"),)
