"""Watches through a Redis outage: a short one passes unnoticed by their clients, a long one ends
them with UNAVAILABLE and a resume token that continues where they were once Redis is back."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from adplane.v1 import request_service_pb2 as pb
from adplane.v1.request_service_pb2_grpc import RequestServiceStub
from devstack.embedded import EmbeddedRedis, start_redis
from server.composition import Infrastructure
from server.config import Settings
from tests.callers import make_caller
from tests.e2e.conftest import ServerProcess, start_server
from tests.e2e.test_watch import new_workspace, next_change, snapshot, submit

OUTAGE_SECONDS = 3


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of these tests' own, with its data on disk, so they can stop and start it."""
    server = start_redis(tmp_path / "redis", ephemeral=False)
    yield server
    server.stop()


@pytest.fixture
async def local(settings: Settings, redis: EmbeddedRedis) -> AsyncIterator[Infrastructure]:
    """This process's side of the stack (requests, sign-ins), on that Redis."""
    infrastructure = Infrastructure.build(settings.model_copy(update={"redis_url": redis.url}))
    yield infrastructure
    await infrastructure.close()


@pytest.fixture
def server(settings: Settings, redis: EmbeddedRedis, tmp_path: Path) -> Iterator[ServerProcess]:
    process = start_server(
        settings,
        tmp_path,
        REDIS_URL=redis.url,
        WATCH_OUTAGE_SECONDS=str(OUTAGE_SECONDS),
        WATCH_HEARTBEAT_SECONDS="0.5",
    )
    yield process
    assert process.stop() == 0, process.log.read_text()[-4000:]


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


async def last_token_and_end(call: grpc.aio.UnaryStreamCall[Any, Any], *, within: float) -> tuple[str, Any]:
    """Reads until the stream ends: the last resume token received, and the error it ended with."""
    token = ""
    async with asyncio.timeout(within):
        try:
            while (message := await call.read()) is not grpc.aio.EOF:
                assert isinstance(message, pb.WatchRequestsResponse)
                token = message.resume_token or token
        except grpc.aio.AioRpcError as error:
            return token, error
    raise AssertionError("the stream ended without an error")


async def test_a_redis_restart_shorter_than_the_limit_ends_no_watch_and_loses_no_change(
    server: ServerProcess, redis: EmbeddedRedis, local: Infrastructure
) -> None:
    admin = await make_caller(local, superuser=True)
    workspace = await new_workspace(local, f"Outage {uuid.uuid4()}")
    async with grpc.aio.insecure_channel(server.target) as channel:
        watch = RequestServiceStub(channel).WatchRequests(pb.WatchRequestsRequest(), metadata=admin.metadata)
        await snapshot(watch)
        redis.stop()
        # Down for a third of the limit; the stream keeps its heartbeats meanwhile.
        await asyncio.sleep(OUTAGE_SECONDS / 3)
        redis.start()
        change = await submit(local, workspace, "after the restart")
        # The same stream, never ended, carries the change made after Redis came back.
        received = await next_change(watch, within=OUTAGE_SECONDS * 5)
        assert received.change.request.id == str(change.id)
        watch.cancel()


async def test_a_longer_outage_ends_watches_with_unavailable_and_a_token_that_resumes(
    server: ServerProcess, redis: EmbeddedRedis, local: Infrastructure
) -> None:
    admin = await make_caller(local, superuser=True)
    workspace = await new_workspace(local, f"Outage {uuid.uuid4()}")
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = RequestServiceStub(channel)
        watch = stub.WatchRequests(pb.WatchRequestsRequest(), metadata=admin.metadata)
        await snapshot(watch)
        before = await submit(local, workspace, "before the outage")
        assert (await next_change(watch)).change.request.id == str(before.id)

        redis.stop()
        token, error = await last_token_and_end(watch, within=OUTAGE_SECONDS * 5)
        info = error_info(error)
        assert (error.code(), info.reason) == (grpc.StatusCode.UNAVAILABLE, "EVENTS_UNAVAILABLE")
        assert info.metadata["resume_token"] == token

        # Meanwhile a new watch is refused at once rather than left without changes.
        refused = stub.WatchRequests(pb.WatchRequestsRequest(), metadata=admin.metadata)
        _, refusal = await last_token_and_end(refused, within=OUTAGE_SECONDS * 5)
        assert refusal.code() == grpc.StatusCode.UNAVAILABLE

        redis.start()
        after = await submit(local, workspace, "after the outage")
        resumed = stub.WatchRequests(pb.WatchRequestsRequest(resume_token=token), metadata=admin.metadata)
        change = (await next_change(resumed, within=OUTAGE_SECONDS * 5)).change
        assert (change.kind, change.request.id) == (pb.REQUEST_CHANGE_KIND_CREATED, str(after.id))
        resumed.cancel()
