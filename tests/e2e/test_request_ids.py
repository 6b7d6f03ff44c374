"""Hostile x-request-id values, straight to the server and through Envoy, without a token: never a
5xx, never a traceback, and the id the caller gets back is one the server accepts."""

import asyncio

import grpc
import httpx
import pytest

from adplane.v1 import workspace_service_pb2 as pb
from adplane.v1 import workspace_service_pb2_grpc
from server.interceptors.request_logging import REQUEST_ID_PATTERN
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.usefixtures("infrastructure")

# What a gRPC client lets through (printable ASCII, any length), a few hundred of them.
ODD_IDS = [
    " ",
    "a b",
    "x" * 129,
    "x" * 10_000,
    "../../etc",
    *(f"id{chr(c)}{n}" for c in range(0x20, 0x7F) if not (chr(c).isalnum() or chr(c) in "._:-") for n in range(8)),
]


async def test_odd_ids_over_grpc_are_replaced_without_errors(stack: Stack) -> None:
    start = len(stack.server.log.read_bytes())  # the session's server: only this test's lines count
    async with grpc.aio.insecure_channel(stack.server.target) as channel:
        stub = workspace_service_pb2_grpc.WorkspaceServiceStub(channel)

        async def call(value: str) -> tuple[grpc.StatusCode, str]:
            rpc = stub.ListWorkspaces(pb.ListWorkspacesRequest(), metadata=(("x-request-id", value),))
            try:
                await rpc
            except grpc.aio.AioRpcError as error:
                trailing = dict(error.trailing_metadata() or ())
                return error.code(), str(trailing.get("x-request-id", ""))
            raise AssertionError("an anonymous call succeeded")

        results = await asyncio.gather(*(call(value) for value in ODD_IDS))

    assert len(ODD_IDS) > 200
    for value, (code, returned) in zip(ODD_IDS, results, strict=True):
        assert code == grpc.StatusCode.UNAUTHENTICATED, (value, code)
        assert returned != value
        assert REQUEST_ID_PATTERN.fullmatch(returned), (value, returned)
    assert b"Traceback" not in stack.server.log.read_bytes()[start:]


async def test_odd_ids_through_envoy_never_5xx(stack: Stack) -> None:
    start = len(stack.server.log.read_bytes())
    async with httpx.AsyncClient(base_url=stack.rest_url, timeout=10) as client:
        # httpx refuses values with surrounding spaces; tests/edge sends raw bytes of every kind.
        values = [value for value in ODD_IDS if value == value.strip()][:40]
        responses = [await client.get("/api/workspaces", headers={"x-request-id": value}) for value in values]
        kept = await client.get("/api/workspaces", headers={"x-request-id": "client-42"})

    for value, response in zip(values, responses, strict=True):
        assert response.status_code == 401, (value, response.text)
        assert response.headers["x-request-id"] != value
        assert REQUEST_ID_PATTERN.fullmatch(response.headers["x-request-id"])
    assert kept.headers["x-request-id"] == "client-42"
    assert b"Traceback" not in stack.server.log.read_bytes()[start:]
