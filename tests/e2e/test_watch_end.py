"""Why a watch ended, for every kind of client: Server-Sent Events end with `event: error` carrying
the google.rpc.Status; gRPC and gRPC-Web callers get the call's status and no extra message."""

import asyncio
import signal
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from adplane.v1 import request_service_pb2 as pb
from adplane.v1.request_service_pb2_grpc import RequestServiceStub
from server.auth.roles import WorkspaceRole
from server.composition import Infrastructure
from server.config import Settings
from tests.callers import Caller, make_caller
from tests.e2e.conftest import Stack, start_envoy, start_server
from tests.e2e.sse import Event, events
from tests.e2e.test_watch import new_workspace, reason

TUNED = {"WATCH_HEARTBEAT_SECONDS": "1", "STREAM_REAUTHORIZE_SECONDS": "0.5"}
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


@pytest.fixture(scope="module")
def tuned_stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("watch-end")
    server = start_server(settings, tmp, **TUNED)
    envoy = start_envoy(settings, tmp, upstream_port=server.port)
    yield Stack(server=server, envoy=envoy)
    envoy.stop()
    assert server.stop() == 0, server.log.read_text()[-4000:]


async def sse_until_end(stack: Stack, path: str, caller: Caller, *, after_first: Any) -> list[Event]:
    """Every event of an SSE watch until its body ends; `after_first()` runs once the first arrived."""
    received: list[Event] = []
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as client,
        client.stream("GET", f"{stack.rest_url}{path}", headers=caller.headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        async with asyncio.timeout(30):
            async for event in events(response):
                received.append(event)
                if len(received) == 1:
                    await after_first()
    return received


def error_event(received: list[Event]) -> tuple[int, str, dict[str, str]]:
    """The final event: it is `error`, the only one; its Status's code, reason and metadata."""
    *messages, last = received
    assert last.name == "error", received
    assert all(event.name == "message" and "stream_end" not in event.data for event in messages)
    status = last.data
    assert set(status) == {"code", "message", "details"}
    assert status["message"]
    info = next(detail for detail in status["details"] if detail["@type"] == ERROR_INFO)
    assert info["domain"] == "adplane"
    return status["code"], info["reason"], info["metadata"]


async def test_a_signed_out_callers_event_stream_ends_with_an_unauthenticated_error_event(
    tuned_stack: Stack, infrastructure: Infrastructure
) -> None:
    workspace = await new_workspace(infrastructure, "Signed Out")
    member = await make_caller(infrastructure, memberships={workspace: WorkspaceRole.VIEWER})

    async def sign_out() -> None:
        async with httpx.AsyncClient(base_url=tuned_stack.rest_url) as client:
            reply = await client.post("/api/auth/logout", json={"refresh_token": member.refresh_token})
            assert reply.status_code == 200, reply.text

    received = await sse_until_end(
        tuned_stack, f"/api/workspaces/{workspace}/requests:watch", member, after_first=sign_out
    )
    assert "snapshot" in received[0].data
    code, error_reason, _ = error_event(received)
    assert (code, error_reason) == (grpc.StatusCode.UNAUTHENTICATED.value[0], "CREDENTIALS_REVOKED")


async def test_a_caller_who_loses_the_role_gets_a_permission_denied_error_event(
    tuned_stack: Stack, infrastructure: Infrastructure
) -> None:
    staff = await make_caller(infrastructure, roles=["staff"])

    async def take_the_role() -> None:
        async with infrastructure.unit_of_work() as uow:
            await uow.users.set_user_roles(staff.user_id, [])

    received = await sse_until_end(tuned_stack, "/api/requests:watch", staff, after_first=take_the_role)
    code, error_reason, metadata = error_event(received)
    assert (code, error_reason) == (grpc.StatusCode.PERMISSION_DENIED.value[0], "MISSING_PERMISSION")
    assert metadata == {"permission": "requests.read"}


async def test_shutdown_ends_event_streams_with_an_unavailable_error_event_and_a_resume_token(
    settings: Settings, infrastructure: Infrastructure, admin: Caller, tmp_path: Path
) -> None:
    server = start_server(settings, tmp_path, WATCH_HEARTBEAT_SECONDS="0.5")
    envoy = start_envoy(settings, tmp_path, upstream_port=server.port)
    try:
        stack = Stack(server=server, envoy=envoy)

        async def shut_down() -> None:
            server.process.send_signal(signal.SIGTERM)

        received = await sse_until_end(stack, "/api/requests:watch", admin, after_first=shut_down)
        code, error_reason, metadata = error_event(received)
        assert (code, error_reason) == (grpc.StatusCode.UNAVAILABLE.value[0], "SERVER_SHUTTING_DOWN")
        last_token = [event.data["resume_token"] for event in received[:-1]][-1]
        assert metadata["resume_token"] == last_token
        assert await asyncio.to_thread(server.process.wait, 30) == 0
    finally:
        envoy.stop()
        server.stop()


def grpc_web_frame(message: bytes, *, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(message)) + message


async def grpc_web_frames(response: httpx.Response) -> AsyncIterator[tuple[int, bytes]]:
    """(flags, payload) of each gRPC-Web frame of a response body; flag 0x80 is the trailers."""
    buffer = b""
    async for data in response.aiter_bytes():
        buffer += data
        while len(buffer) >= 5:
            flags, length = struct.unpack(">BI", buffer[:5])
            if len(buffer) < 5 + length:
                break
            yield flags, buffer[5 : 5 + length]
            buffer = buffer[5 + length :]


async def test_grpc_and_grpc_web_callers_get_the_status_and_no_stream_end_message(
    tuned_stack: Stack, infrastructure: Infrastructure
) -> None:
    staff = [await make_caller(infrastructure, roles=["staff"]) for _ in range(2)]

    async def take_the_role(caller: Caller) -> None:
        async with infrastructure.unit_of_work() as uow:
            await uow.users.set_user_roles(caller.user_id, [])

    async def over_grpc() -> tuple[list[Any], grpc.aio.AioRpcError]:
        messages: list[Any] = []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{tuned_stack.envoy.port}") as channel:
            call = RequestServiceStub(channel).WatchRequests(pb.WatchRequestsRequest(), metadata=staff[0].metadata)
            try:
                async with asyncio.timeout(30):
                    while (message := await call.read()) is not grpc.aio.EOF:
                        messages.append(message)
                        if len(messages) == 1:
                            await take_the_role(staff[0])
            except grpc.aio.AioRpcError as error:
                return messages, error
        raise AssertionError("the gRPC stream ended without a status")

    messages, error = await over_grpc()
    assert (error.code(), reason(error)) == (grpc.StatusCode.PERMISSION_DENIED, "MISSING_PERMISSION")
    assert [m.WhichOneof("event") for m in messages if m.WhichOneof("event") == "stream_end"] == []

    headers = {**staff[1].headers, "content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
    body = grpc_web_frame(pb.WatchRequestsRequest().SerializeToString())
    kinds: list[str] = []
    trailers = ""
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as client,
        client.stream(
            "POST", f"{tuned_stack.rest_url}/adplane.v1.RequestService/WatchRequests", headers=headers, content=body
        ) as response,
    ):
        assert response.status_code == 200
        async for flags, payload in grpc_web_frames(response):
            if flags & 0x80:
                trailers = payload.decode()
                break
            kinds.append(pb.WatchRequestsResponse.FromString(payload).WhichOneof("event") or "")
            if len(kinds) == 1:
                await take_the_role(staff[1])
    assert kinds[0] == "snapshot"
    assert "stream_end" not in kinds
    assert f"grpc-status:{grpc.StatusCode.PERMISSION_DENIED.value[0]}" in trailers.replace(" ", "")
