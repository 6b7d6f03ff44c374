"""adplane_client's watch helpers (sdk/python) while the server process under the stream is killed
(SIGKILL: the connection drops without a status): straight to a server that is then started again,
and through Envoy to two processes, one of which dies. The watch goes on with every change, once."""

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from queue import Empty, Queue
from typing import Any

import grpc
import pytest

from adplane.v1 import request_service_pb2 as pb
from adplane.v1.request_service_pb2_grpc import RequestServiceStub
from adplane_client import AdplaneError, Reload, awatch, connect, connect_async, watch
from server.composition import Infrastructure
from tests.callers import Caller
from tests.e2e.sdk.conftest import ServerPair
from tests.e2e.test_watch import new_workspace, submit

# Reconnect soon: the tests wait for it.
FAST: dict[str, Any] = {"initial_delay": 0.05, "max_delay": 0.5}


class Bearer:
    def __init__(self, caller: Caller) -> None:
        self._caller = caller

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self._caller.metadata


async def _next_change(events: AsyncIterator[Any], *, within: float = 20) -> tuple[int, str]:
    """(kind, request id) of the next change; heartbeats are skipped, a Reload fails the test."""
    async with asyncio.timeout(within):
        async for event in events:
            assert not isinstance(event, Reload), event
            if event.WhichOneof("event") == "change":
                return event.change.kind, event.change.request.id
    raise AssertionError("the watch ended")


async def _past_snapshot(events: AsyncIterator[Any]) -> None:
    async with asyncio.timeout(10):
        async for event in events:
            if event.WhichOneof("event") == "snapshot" and event.snapshot.complete:
                return


async def _follow_across_a_kill(
    events: AsyncIterator[Any], infrastructure: Infrastructure, workspace: uuid.UUID, *, kill: Any, restart: Any
) -> None:
    created = pb.REQUEST_CHANGE_KIND_CREATED
    await _past_snapshot(events)
    one = await submit(infrastructure, workspace, "one")
    assert await _next_change(events) == (created, str(one.id))
    await asyncio.to_thread(kill)
    two = await submit(infrastructure, workspace, "two")
    three = await submit(infrastructure, workspace, "three")
    await asyncio.to_thread(restart)
    resumed = [await _next_change(events), await _next_change(events)]
    assert resumed == [(created, str(two.id)), (created, str(three.id))]
    four = await submit(infrastructure, workspace, "four")
    assert await _next_change(events) == (created, str(four.id))  # nothing repeated before it


async def test_awatch_resumes_on_the_server_started_again(
    pair: ServerPair, infrastructure: Infrastructure, admin: Caller
) -> None:
    port = pair.ports[0]
    workspace = await new_workspace(infrastructure)
    retries: list[grpc.StatusCode] = []
    async with connect_async(f"127.0.0.1:{port}", Bearer(admin)) as channel:
        events = awatch(
            RequestServiceStub(channel).WatchWorkspaceRequests,
            pb.WatchWorkspaceRequestsRequest(workspace_id=str(workspace)),
            on_retry=lambda error, attempt, delay: retries.append(error.status),
            **FAST,
        )
        try:
            await _follow_across_a_kill(
                events, infrastructure, workspace, kill=lambda: pair.kill(port), restart=lambda: pair.start(port)
            )
        finally:
            await events.aclose()  # type: ignore[attr-defined]
    assert retries, "the watch was never cut off"
    assert set(retries) == {grpc.StatusCode.UNAVAILABLE}


async def test_awatch_through_envoy_moves_to_the_other_process(
    pair: ServerPair, infrastructure: Infrastructure, admin: Caller
) -> None:
    workspace = await new_workspace(infrastructure)
    retries: list[grpc.StatusCode] = []
    killed: list[int] = []  # the process Envoy had sent the watch to

    def kill_the_holder() -> None:
        killed.append(pair.holder())
        pair.kill(killed[0])

    async with connect_async(pair.envoy_target, Bearer(admin)) as channel:
        events = awatch(
            RequestServiceStub(channel).WatchWorkspaceRequests,
            pb.WatchWorkspaceRequestsRequest(workspace_id=str(workspace)),
            on_retry=lambda error, attempt, delay: retries.append(error.status),
            **FAST,
        )
        try:
            # Started again only after the changes are read: the other process carries the watch.
            await _follow_across_a_kill(events, infrastructure, workspace, kill=kill_the_holder, restart=lambda: None)
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            for port in killed:
                await asyncio.to_thread(pair.start, port)
    assert retries, "the watch was never cut off"


def _reader(events: Iterator[Any]) -> tuple["Queue[Any]", threading.Thread]:
    """The sync helper's events, read on a thread of their own into a queue."""
    queue: Queue[Any] = Queue()

    def read() -> None:
        try:
            for event in events:
                queue.put(event)
        except AdplaneError as error:
            queue.put(error)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return queue, thread


async def test_sync_watch_resumes_on_the_server_started_again(
    pair: ServerPair, infrastructure: Infrastructure, admin: Caller
) -> None:
    port = pair.ports[1]
    workspace = await new_workspace(infrastructure)
    with connect(f"127.0.0.1:{port}", Bearer(admin)) as channel:
        call_events = watch(
            RequestServiceStub(channel).WatchWorkspaceRequests,
            pb.WatchWorkspaceRequestsRequest(workspace_id=str(workspace)),
            **FAST,
        )
        queue, thread = _reader(call_events)

        async def events() -> AsyncIterator[Any]:
            while True:
                try:
                    event = await asyncio.to_thread(queue.get, timeout=20)
                except Empty:
                    return
                if isinstance(event, AdplaneError):
                    raise event
                yield event

        await _follow_across_a_kill(
            events(), infrastructure, workspace, kill=lambda: pair.kill(port), restart=lambda: pair.start(port)
        )
    # Closing the channel ends the stream; the helper raises (CANCELLED is not resumable) and stops.
    thread.join(timeout=10)
    assert not thread.is_alive()


@pytest.mark.parametrize("asynchronous", [True, False], ids=["awatch", "watch"])
async def test_an_expired_token_is_a_reload_then_a_new_snapshot(
    pair: ServerPair, infrastructure: Infrastructure, admin: Caller, asynchronous: bool
) -> None:
    workspace = await new_workspace(infrastructure)
    old = await submit(infrastructure, workspace, "old")
    request = pb.WatchWorkspaceRequestsRequest(workspace_id=str(workspace), resume_token="1-0")
    target = f"127.0.0.1:{pair.ports[0]}"
    if asynchronous:
        async with connect_async(target, Bearer(admin)) as channel:
            events = awatch(RequestServiceStub(channel).WatchWorkspaceRequests, request)
            first, second = await anext(events), await anext(events)
            await events.aclose()  # type: ignore[attr-defined]
    else:
        with connect(target, Bearer(admin)) as channel:
            sync_events = watch(RequestServiceStub(channel).WatchWorkspaceRequests, request)
            first, second = await asyncio.to_thread(lambda: (next(sync_events), next(sync_events)))
            sync_events.close()  # type: ignore[attr-defined]
    assert isinstance(first, Reload)
    assert not isinstance(second, Reload)
    assert (first.cause.status, first.cause.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RESUME_TOKEN_EXPIRED")
    assert [r.id for r in second.snapshot.requests] == [str(old.id)]


async def test_a_stream_failing_while_read_is_an_adplane_error(
    pair: ServerPair, infrastructure: Infrastructure, admin: Caller
) -> None:
    """The stream interceptors decode errors that arrive after the call opened."""
    request = pb.WatchWorkspaceRequestsRequest(workspace_id=str(uuid.uuid4()), resume_token="yesterday")
    async with connect_async(f"127.0.0.1:{pair.ports[0]}", Bearer(admin)) as channel:
        with pytest.raises(AdplaneError) as raised:
            async for _ in RequestServiceStub(channel).WatchWorkspaceRequests(request):
                pass
    assert raised.value.status is grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.field_violations
    with (
        connect(f"127.0.0.1:{pair.ports[0]}", Bearer(admin)) as channel,
        pytest.raises(AdplaneError) as raised_sync,
    ):
        list(RequestServiceStub(channel).WatchWorkspaceRequests(request))
    assert raised_sync.value.status is grpc.StatusCode.INVALID_ARGUMENT
