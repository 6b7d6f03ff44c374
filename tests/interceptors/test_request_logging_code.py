"""The outcome line names the status code the way grpc.aio reports it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import pytest
import structlog
from grpc_health.v1.health_pb2 import HealthCheckResponse as Response
from prometheus_client import REGISTRY

from server.interceptors.metrics import RpcMetrics
from server.interceptors.pipeline import Context, PipelineServer
from server.interceptors.request_logging import LOGGER_NAME, RequestLogging, code_name
from tests.waits import eventually


class _Reported:
    def __init__(self, code: Any) -> None:
        self._code = code

    def code(self) -> Any:
        return self._code

    def cancelled(self) -> bool:
        return False


@pytest.mark.parametrize(
    ("reported", "logged"),
    [
        (0, "OK"),  # grpc.aio's own "ok" before a handler sets anything
        (None, "OK"),
        (grpc.StatusCode.OK, "OK"),
        (grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        (13, "13"),  # an unexpected raw value is logged as it is, not guessed at
    ],
)
def testcode_name(reported: Any, logged: str) -> None:
    assert code_name(cast(Context, _Reported(reported))) == logged


async def _slow(request: Response, context: Context) -> AsyncIterator[Response]:
    await asyncio.sleep(30)
    yield request


@pytest.fixture
async def logged_channel(caplog: pytest.LogCaptureFixture) -> AsyncIterator[grpc.aio.Channel]:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)  # the outcome line is built only at INFO
    server = grpc.aio.server()
    pipeline = PipelineServer(server, [RequestLogging(), RpcMetrics()])
    handler = grpc.unary_unary_rpc_method_handler(
        _slow_unary, request_deserializer=Response.FromString, response_serializer=Response.SerializeToString
    )
    stream = grpc.unary_stream_rpc_method_handler(
        _slow, request_deserializer=Response.FromString, response_serializer=Response.SerializeToString
    )
    pipeline.add_registered_method_handlers("test.Slow", {"Unary": handler, "Stream": stream})
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(None)


async def _slow_unary(request: Response, context: Context) -> Response:
    await asyncio.sleep(30)
    return request


def _handled(method: str, code: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "grpc_server_handled_total",
            {"grpc_service": "test.Slow", "grpc_method": method, "grpc_code": code, "grpc_type": _TYPES[method]},
        )
        or 0.0
    )


_TYPES = {"Unary": "unary", "Stream": "server_stream"}


async def _call_past_its_deadline(channel: grpc.aio.Channel, method: str) -> None:
    if method == "Unary":
        await channel.unary_unary("/test.Slow/Unary", Response.SerializeToString, Response.FromString)(
            Response(), timeout=0.3
        )
        return
    stream = channel.unary_stream("/test.Slow/Stream", Response.SerializeToString, Response.FromString)
    async for _ in stream(Response(), timeout=0.3):
        pass


@pytest.mark.parametrize("method", ["Unary", "Stream"])
async def test_a_call_past_its_deadline_is_logged_and_counted_as_deadline_exceeded(
    logged_channel: grpc.aio.Channel, method: str
) -> None:
    before = _handled(method, "DEADLINE_EXCEEDED")
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await _call_past_its_deadline(logged_channel, method)
        assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        await eventually(lambda: any(entry.get("event") == "rpc" for entry in logs), within=10, what="the outcome line")
    [line] = [entry for entry in logs if entry.get("event") == "rpc"]
    assert line["code"] == "DEADLINE_EXCEEDED"
    assert _handled(method, "DEADLINE_EXCEEDED") == before + 1


async def test_a_stream_the_client_cancels_is_logged_as_cancelled(logged_channel: grpc.aio.Channel) -> None:
    with structlog.testing.capture_logs() as logs:
        call = logged_channel.unary_stream("/test.Slow/Stream", Response.SerializeToString, Response.FromString)(
            Response(), timeout=30
        )
        await eventually(lambda: _in_flight("Stream") >= 1, within=10, what="the call to reach the handler")
        call.cancel()
        await eventually(lambda: any(entry.get("event") == "rpc" for entry in logs), within=10, what="the outcome line")
    [line] = [entry for entry in logs if entry.get("event") == "rpc"]
    assert line["code"] == "CANCELLED"


def _in_flight(method: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "grpc_server_in_flight", {"grpc_service": "test.Slow", "grpc_method": method, "grpc_type": _TYPES[method]}
        )
        or 0.0
    )
