"""A quiet system keeps its watches: nothing changes for a minute, every stream stays open with its
heartbeats, and then one change reaches every watcher, over gRPC and over Server-Sent Events.

The usual case for an approval queue is that nothing happens for long stretches; a watch must not
depend on traffic to stay up (it once ended every stream within 15 s of quiet: the event reader's
blocking read outlasted the Redis client's socket timeout)."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
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
from tests.e2e.sse import events
from tests.e2e.test_watch import new_workspace, submit

HEARTBEAT_SECONDS = 5
QUIET_SECONDS = 60
GRPC_WATCHERS = 20
SSE_WATCHERS = 5


@dataclass
class Watcher:
    """What one stream received, in order, and how it ended (None while it is open)."""

    name: str
    received: list[tuple[str, float]] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    ended: str | None = None

    def count(self, kind: str) -> int:
        return sum(1 for received, _ in self.received if received == kind)


@pytest.fixture(scope="module")
def quiet_stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("quiet")
    server = start_server(settings, tmp, WATCH_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS))
    envoy = start_envoy(settings, tmp, upstream_port=server.port)
    yield Stack(server=server, envoy=envoy)
    envoy.stop()
    assert server.stop() == 0, server.log.read_text()[-4000:]


async def follow_grpc(watcher: Watcher, call: grpc.aio.UnaryStreamCall[Any, Any]) -> None:
    try:
        while (message := await call.read()) is not grpc.aio.EOF:
            assert isinstance(message, (pb.WatchRequestsResponse, pb.WatchWorkspaceRequestsResponse))
            kind = message.WhichOneof("event") or "?"
            watcher.received.append((kind, time.monotonic()))
            if kind == "change":
                watcher.changes.append(message.change.request.id)
        watcher.ended = "end of stream"
    except grpc.aio.AioRpcError as error:
        if error.code() is not grpc.StatusCode.CANCELLED:
            watcher.ended = f"{error.code().name}: {error.details()}"


async def follow_sse(watcher: Watcher, url: str, caller: Caller) -> None:
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", url, headers=caller.headers) as response,
    ):
        if response.status_code != 200:
            watcher.ended = f"HTTP {response.status_code}"
            return
        async for event in events(response):
            if event.name != "message":
                watcher.ended = f"event {event.name}: {event.data}"
                return
            kind = next(k for k in ("snapshot", "change", "heartbeat") if k in event.data)
            watcher.received.append((kind, time.monotonic()))
            if kind == "change":
                watcher.changes.append(event.data["change"]["request"]["id"])
    watcher.ended = "end of stream"


async def wait_for(check: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f}s: {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def watching(
    quiet_stack: Stack, infrastructure: Infrastructure, admin: Caller
) -> AsyncIterator[tuple[uuid.UUID, list[Watcher], Callable[[], Awaitable[None]]]]:
    """Watchers of every kind on one server process: staff queue watches and workspace watches over
    gRPC, workspace watches as Server-Sent Events through Envoy."""
    workspace = await new_workspace(infrastructure, "Quiet")
    member = await make_caller(infrastructure, memberships={workspace: WorkspaceRole.VIEWER})
    watchers: list[Watcher] = []
    tasks: list[asyncio.Task[None]] = []
    async with grpc.aio.insecure_channel(quiet_stack.server.target) as channel:
        stub = RequestServiceStub(channel)
        for n in range(GRPC_WATCHERS):
            watcher = Watcher(f"grpc-{n}")
            call = (
                stub.WatchRequests(pb.WatchRequestsRequest(), metadata=admin.metadata)
                if n % 2
                else stub.WatchWorkspaceRequests(
                    pb.WatchWorkspaceRequestsRequest(workspace_id=str(workspace)), metadata=member.metadata
                )
            )
            watchers.append(watcher)
            tasks.append(asyncio.create_task(follow_grpc(watcher, call)))
        url = f"{quiet_stack.rest_url}/api/workspaces/{workspace}/requests:watch"
        for n in range(SSE_WATCHERS):
            watcher = Watcher(f"sse-{n}")
            watchers.append(watcher)
            tasks.append(asyncio.create_task(follow_sse(watcher, url, member)))

        async def stop() -> None:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            await wait_for(
                lambda: all(w.count("snapshot") for w in watchers), within=30, what="every watcher's snapshot"
            )
            yield workspace, watchers, stop
        finally:
            await stop()


async def test_a_minute_without_changes_keeps_every_stream_then_one_change_reaches_all(
    watching: tuple[uuid.UUID, list[Watcher], Callable[[], Awaitable[None]]], infrastructure: Infrastructure
) -> None:
    workspace, watchers, _ = watching
    quiet_from = time.monotonic()
    # Really quiet: no change anywhere for a minute (a wait on a condition would cut it short).
    await asyncio.sleep(QUIET_SECONDS)

    ended = {w.name: w.ended for w in watchers if w.ended}
    assert not ended, f"streams ended while nothing changed: {ended}"
    # A heartbeat after each HEARTBEAT_SECONDS without a message; allow for one late at each end.
    expected = QUIET_SECONDS // HEARTBEAT_SECONDS - 2
    beats = {w.name: sum(1 for kind, at in w.received if kind == "heartbeat" and at >= quiet_from) for w in watchers}
    assert all(count >= expected for count in beats.values()), f"heartbeats per watcher (>= {expected}): {beats}"
    assert not any(w.changes for w in watchers)

    change = await submit(infrastructure, workspace, "after the quiet")
    await wait_for(
        lambda: all(str(change.id) in w.changes or w.ended for w in watchers),
        within=10,
        what="the change at every watcher",
    )
    missed = {w.name: w.ended for w in watchers if str(change.id) not in w.changes}
    assert not missed, f"watchers without the change: {missed}"
