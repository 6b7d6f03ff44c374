"""Watch streams over real server processes: fan-out across processes, resume, tenancy, access
checks while streaming, slow clients, SSE through Envoy, shutdown, and many watchers at once."""

import asyncio
import datetime as dt
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from adplane.v1 import request_pb2, user_service_pb2, workspace_service_pb2
from adplane.v1 import request_service_pb2 as pb
from adplane.v1.request_service_pb2_grpc import RequestServiceStub
from adplane.v1.user_service_pb2_grpc import UserServiceStub
from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceStub
from server.auth.principal import Principal, PrincipalKind, set_current_principal
from server.auth.roles import WorkspaceRole
from server.auth.tokens import TokenIssuer
from server.composition import Infrastructure
from server.config import Settings
from server.db import utcnow
from server.requests.events import RequestChanged, RequestChangeKind
from server.requests.schemas import PixelCreationPayload, RequestResponseSchema
from server.workspaces.schemas import WorkspaceCreateRequestSchema
from tests.callers import Caller, make_caller
from tests.e2e.conftest import ServerProcess, Stack, start_server

# Fast heartbeats and access re-checks, so the tests wait for them in fractions of a second.
TUNED = {"WATCH_HEARTBEAT_SECONDS": "1", "STREAM_REAUTHORIZE_SECONDS": "0.5", "WATCH_BUFFER_SIZE": "16"}
CHANGED = "change"
CHANGES = 100

type Watch = grpc.aio.UnaryStreamCall[Any, Any]


@pytest.fixture(scope="module")
def tuned(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two more server processes next to the stack's, with fast heartbeats and re-checks."""
    tmp = tmp_path_factory.mktemp("watch")
    first = start_server(settings, tmp, **TUNED)
    second = start_server(settings, tmp, **TUNED)
    yield first, second
    for server in (first, second):
        assert server.stop() == 0, server.log.read_text()[-4000:]


@pytest.fixture
async def channels(
    stack: Stack, tuned: tuple[ServerProcess, ServerProcess]
) -> AsyncIterator[tuple[grpc.aio.Channel, grpc.aio.Channel, grpc.aio.Channel]]:
    """Channels to the two tuned processes and to the stack's server, in that order."""
    async with (
        grpc.aio.insecure_channel(tuned[0].target) as first,
        grpc.aio.insecure_channel(tuned[1].target) as second,
        grpc.aio.insecure_channel(stack.server.target) as third,
    ):
        yield first, second, third


async def new_workspace(infrastructure: Infrastructure, name: str = "Watched") -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        return (await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name=name))).id


async def submit(infrastructure: Infrastructure, workspace_id: uuid.UUID, name: str = "p") -> RequestResponseSchema:
    """A request made in this process (which publishes its change like any server process)."""
    actor = Principal(kind=PrincipalKind.USER, id=uuid.uuid4())
    set_current_principal(actor)
    try:
        async with infrastructure.unit_of_work() as uow:
            payload = PixelCreationPayload(name=name, business_manager_id=uuid.uuid4())
            return await uow.requests.submit(workspace_id, payload, actor=actor, idempotency_key=None)
    finally:
        set_current_principal(None)


async def read(call: Watch, *, within: float = 5.0) -> Any:
    message = await asyncio.wait_for(call.read(), within)
    assert message is not grpc.aio.EOF, "the stream ended"
    return message


async def snapshot(call: Watch) -> tuple[list[str], str]:
    """The ids in the initial snapshot, and the resume token after it."""
    ids: list[str] = []
    while True:
        message = await read(call)
        assert message.WhichOneof("event") == "snapshot"
        ids += [r.id for r in message.snapshot.requests]
        if message.snapshot.complete:
            return ids, message.resume_token


async def next_change(call: Watch, *, within: float = 5.0) -> Any:
    """The next change, skipping heartbeats."""
    deadline = time.monotonic() + within
    while True:
        message = await read(call, within=max(0.01, deadline - time.monotonic()))
        if message.WhichOneof("event") == CHANGED:
            return message


async def ending(call: Watch, *, within: float) -> grpc.aio.AioRpcError:
    """The error the stream ends with (messages before it are skipped)."""

    async def drain() -> None:
        async with asyncio.timeout(within):
            while await call.read() is not grpc.aio.EOF:
                pass

    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await drain()
    return ended.value


def reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return str(info.reason)


async def test_watchers_on_two_processes_see_an_approval_made_on_a_third(
    channels: tuple[grpc.aio.Channel, ...], infrastructure: Infrastructure, admin: Caller
) -> None:
    first, second, third = channels
    workspace = await new_workspace(infrastructure)
    member = await make_caller(infrastructure, memberships={workspace: WorkspaceRole.MEMBER})
    waiting = await submit(infrastructure, workspace, "before")

    staff_watch = RequestServiceStub(first).WatchRequests(
        pb.WatchRequestsRequest(status=request_pb2.REQUEST_STATUS_WAITING_FOR_APPROVAL), metadata=admin.metadata
    )
    member_watch = RequestServiceStub(second).WatchWorkspaceRequests(
        pb.WatchWorkspaceRequestsRequest(workspace_id=str(workspace)), metadata=member.metadata
    )
    try:
        assert (await snapshot(staff_watch))[0] == [str(waiting.id)]
        assert (await snapshot(member_watch))[0] == [str(waiting.id)]

        created = await submit(infrastructure, workspace, "during")
        for watch in (staff_watch, member_watch):
            change = (await next_change(watch)).change
            assert (change.kind, change.request.id) == (pb.REQUEST_CHANGE_KIND_CREATED, str(created.id))

        # How soon a change arrives is measured by bench.soak (p50/p99 from the commit), not here.
        await RequestServiceStub(third).ApproveRequest(
            pb.ApproveRequestRequest(id=str(created.id)), metadata=admin.metadata
        )
        for watch in (staff_watch, member_watch):
            change = (await next_change(watch)).change
            assert (change.kind, change.request.id) == (pb.REQUEST_CHANGE_KIND_APPROVED, str(created.id))
            assert change.request.status == request_pb2.REQUEST_STATUS_APPROVED
            # The queue watcher filters on WAITING: it sees the request leave the queue.
            assert change.previous_status == request_pb2.REQUEST_STATUS_WAITING_FOR_APPROVAL
        heartbeat = await read(member_watch, within=3)
        assert heartbeat.WhichOneof("event") == "heartbeat"
        assert heartbeat.resume_token
    finally:
        staff_watch.cancel()
        member_watch.cancel()


async def test_resume_on_another_process_loses_and_repeats_nothing(
    channels: tuple[grpc.aio.Channel, ...], infrastructure: Infrastructure, admin: Caller
) -> None:
    first, second, _ = channels
    workspace = await new_workspace(infrastructure)
    watch = RequestServiceStub(first).WatchRequests(pb.WatchRequestsRequest(), metadata=admin.metadata)
    await snapshot(watch)
    one = await submit(infrastructure, workspace, "one")
    received = await next_change(watch)
    assert received.change.request.id == str(one.id)
    watch.cancel()  # the client goes away...

    # ...changes happen meanwhile...
    two = await submit(infrastructure, workspace, "two")
    three = await submit(infrastructure, workspace, "three")
    async with infrastructure.unit_of_work() as uow:
        await uow.requests.cancel_request(two.id, workspace_id=workspace)

    # ...and it comes back, to another process, with the last token it got.
    resumed = RequestServiceStub(second).WatchRequests(
        pb.WatchRequestsRequest(resume_token=received.resume_token), metadata=admin.metadata
    )
    try:
        seen = [(m.change.kind, m.change.request.id) for m in [await next_change(resumed) for _ in range(3)]]
        assert seen == [
            (pb.REQUEST_CHANGE_KIND_CREATED, str(two.id)),
            (pb.REQUEST_CHANGE_KIND_CREATED, str(three.id)),
            (pb.REQUEST_CHANGE_KIND_CANCELLED, str(two.id)),
        ]
        four = await submit(infrastructure, workspace, "four")
        assert (await next_change(resumed)).change.request.id == str(four.id)
        quiet = await read(resumed, within=3)
        assert quiet.WhichOneof("event") == "heartbeat"
    finally:
        resumed.cancel()

    expired = RequestServiceStub(second).WatchRequests(
        pb.WatchRequestsRequest(resume_token="1-0"), metadata=admin.metadata
    )
    error = await ending(expired, within=5)
    assert (error.code(), reason(error)) == (grpc.StatusCode.FAILED_PRECONDITION, "RESUME_TOKEN_EXPIRED")
    garbage = RequestServiceStub(second).WatchRequests(
        pb.WatchRequestsRequest(resume_token="yesterday"), metadata=admin.metadata
    )
    assert (await ending(garbage, within=5)).code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_member_sees_only_their_workspace(
    channels: tuple[grpc.aio.Channel, ...], infrastructure: Infrastructure
) -> None:
    first, *_ = channels
    mine, theirs = await new_workspace(infrastructure, "Mine"), await new_workspace(infrastructure, "Theirs")
    await submit(infrastructure, theirs, "their old one")
    member = await make_caller(infrastructure, memberships={mine: WorkspaceRole.VIEWER})
    stub = RequestServiceStub(first)

    watch = stub.WatchWorkspaceRequests(
        pb.WatchWorkspaceRequestsRequest(workspace_id=str(mine)), metadata=member.metadata
    )
    try:
        assert (await snapshot(watch))[0] == []
        await submit(infrastructure, theirs, "theirs")
        own = await submit(infrastructure, mine, "mine")
        change = (await next_change(watch)).change
        assert (change.request.id, change.request.workspace_id) == (str(own.id), str(mine))
    finally:
        watch.cancel()

    other = stub.WatchWorkspaceRequests(
        pb.WatchWorkspaceRequestsRequest(workspace_id=str(theirs)), metadata=member.metadata
    )
    assert (await ending(other, within=5)).code() == grpc.StatusCode.PERMISSION_DENIED
    everything = stub.WatchRequests(pb.WatchRequestsRequest(), metadata=member.metadata)
    assert (await ending(everything, within=5)).code() == grpc.StatusCode.PERMISSION_DENIED


EXPIRING_TOKEN_SECONDS = 3


async def test_open_streams_end_when_the_caller_is_deactivated_removed_or_expired(
    channels: tuple[grpc.aio.Channel, ...], infrastructure: Infrastructure, admin: Caller, settings: Settings
) -> None:
    first, _, third = channels
    workspace = await new_workspace(infrastructure)
    staff = await make_caller(infrastructure, roles=["staff"])
    member = await make_caller(infrastructure, memberships={workspace: WorkspaceRole.MEMBER})
    stub = RequestServiceStub(first)

    # An access token that expires in a few seconds, for a valid sign-in; its stream opens first, so
    # that it is open (its snapshot read) before the token expires, however busy the machine is.
    family = infrastructure.tokens.decode_access(member.access_token).family_id
    short = TokenIssuer(
        secret_key=settings.secret_key.get_secret_value(),
        access_ttl=dt.timedelta(seconds=EXPIRING_TOKEN_SECONDS),
        refresh_ttl=dt.timedelta(days=1),
    ).issue_access(user_id=member.user_id, family_id=family, now=utcnow())
    expiring_watch = stub.WatchWorkspaceRequests(
        pb.WatchWorkspaceRequestsRequest(workspace_id=str(workspace)),
        metadata=(("authorization", f"Bearer {short.token}"),),
    )
    await snapshot(expiring_watch)

    staff_watch = stub.WatchRequests(pb.WatchRequestsRequest(), metadata=staff.metadata)
    member_watch = stub.WatchWorkspaceRequests(
        pb.WatchWorkspaceRequestsRequest(workspace_id=str(workspace)), metadata=member.metadata
    )
    for watch in (staff_watch, member_watch):
        await snapshot(watch)

    error = await ending(expiring_watch, within=EXPIRING_TOKEN_SECONDS + 10)
    assert (error.code(), reason(error)) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED")

    # The other tokens live for minutes: streams that end now were ended by the changes, not by expiry.
    await UserServiceStub(third).DeactivateUser(
        user_service_pb2.DeactivateUserRequest(user_id=str(staff.user_id)), metadata=admin.metadata
    )
    await WorkspaceServiceStub(third).RemoveWorkspaceMember(
        workspace_service_pb2.RemoveWorkspaceMemberRequest(workspace_id=str(workspace), user_id=str(member.user_id)),
        metadata=admin.metadata,
    )
    assert (await ending(staff_watch, within=10)).code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await ending(member_watch, within=10)).code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_client_that_does_not_read_is_cut_off_with_resource_exhausted(
    channels: tuple[grpc.aio.Channel, ...], infrastructure: Infrastructure, admin: Caller
) -> None:
    first, *_ = channels
    workspace = await new_workspace(infrastructure)
    request = await submit(infrastructure, workspace, "x" * 100)
    watch = RequestServiceStub(first).WatchRequests(pb.WatchRequestsRequest(), metadata=admin.metadata)
    await snapshot(watch)
    # Far more than the HTTP/2 windows and the 16-change buffer hold, while the client reads nothing.
    await publish_many(infrastructure, request, 2000)
    error = await ending(watch, within=10)
    assert (error.code(), reason(error)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "WATCH_BUFFER_OVERFLOW")


async def publish_many(infrastructure: Infrastructure, request: RequestResponseSchema, count: int) -> None:
    """Append `count` changes of `request` straight to the event stream, as servers do."""
    publisher = infrastructure.request_event_publisher
    assert publisher is not None
    event = RequestChanged(
        event_id=uuid.uuid4(), kind=RequestChangeKind.CREATED, previous_status=None, request=request
    ).model_dump(mode="json")
    batch = 100
    for start in range(0, count, batch):
        await asyncio.gather(
            *(
                publisher.publish({"event": {**event, "event_id": str(uuid.uuid4())}})
                for _ in range(start, min(count, start + batch))
            )
        )


async def test_server_sent_events_through_envoy(stack: Stack, infrastructure: Infrastructure, admin: Caller) -> None:
    workspace = await new_workspace(infrastructure)
    old = await submit(infrastructure, workspace, "old")
    url = f"{stack.rest_url}/api/workspaces/{workspace}/requests:watch"
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", url, headers=admin.headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()

        async def event() -> dict[str, Any]:
            async with asyncio.timeout(5):
                async for line in lines:
                    if line.startswith("data: "):
                        parsed: dict[str, Any] = json.loads(line.removeprefix("data: "))
                        return parsed
            raise AssertionError("the event stream ended")

        first = await event()
        assert [r["id"] for r in first["snapshot"]["requests"]] == [str(old.id)]
        assert first["snapshot"]["complete"] is True
        new = await submit(infrastructure, workspace, "new")
        change = await event()
        assert change["change"]["kind"] == "REQUEST_CHANGE_KIND_CREATED"
        assert change["change"]["request"]["id"] == str(new.id)
        assert change["resume_token"]


async def test_shutdown_ends_open_streams_with_unavailable_at_once(
    settings: Settings, infrastructure: Infrastructure, admin: Caller, tmp_path: Path
) -> None:
    server = start_server(settings, tmp_path, GRPC_SHUTDOWN_GRACE="30")
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            watch = RequestServiceStub(channel).WatchRequests(pb.WatchRequestsRequest(), metadata=admin.metadata)
            await snapshot(watch)
            server.process.send_signal(signal.SIGTERM)
            error = await ending(watch, within=5)
            assert (error.code(), reason(error)) == (grpc.StatusCode.UNAVAILABLE, "SERVER_SHUTTING_DOWN")
        # The drain does not wait out the 30 s grace period for the stream: the process exits well before.
        assert await asyncio.to_thread(server.process.wait, 10) == 0
    finally:
        server.stop()


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_two_hundred_watchers_on_one_process_in_bounded_memory(
    channels: tuple[grpc.aio.Channel, ...], stack: Stack, infrastructure: Infrastructure, admin: Caller
) -> None:
    """On the stack's server (default buffer of 256 changes per watch: none overflows here)."""
    *_, third = channels
    workspace = await new_workspace(infrastructure)
    request = await submit(infrastructure, workspace, "load")
    stub = RequestServiceStub(third)
    pid = stack.server.process.pid
    before = resident_kib(pid)
    watches = [stub.WatchRequests(pb.WatchRequestsRequest(), metadata=admin.metadata) for _ in range(200)]
    try:
        await asyncio.gather(*(snapshot(w) for w in watches))
        opened = resident_kib(pid)
        # 100 changes to every watcher (20,000 messages) at once, read as they come.
        publishing = asyncio.create_task(publish_many(infrastructure, request, CHANGES))

        async def drain(watch: Watch) -> int:
            received = 0
            while received < CHANGES:
                received += (await next_change(watch, within=30)).WhichOneof("event") == CHANGED
            return received

        assert await asyncio.gather(*(drain(w) for w in watches)) == [CHANGES] * 200
        await publishing
        after = resident_kib(pid)
    finally:
        for watch in watches:
            watch.cancel()
    sent = CHANGES * len(watches)
    print(f"\nserver RSS: {before} KiB idle, {opened} KiB with 200 watchers, {after} KiB after {sent} messages")
    # Each watch holds at most WATCH_BUFFER_SIZE changes; memory is the watches, not the traffic.
    assert opened - before < 32 * 1024
    assert after - opened < 16 * 1024
