"""Envoy serves the OpenAPI document and the reference page itself, without credentials."""

import httpx
import pytest

from server.edge.envoy import API_REFERENCE_PATH, OPENAPI_PATH

pytestmark = pytest.mark.usefixtures("infrastructure", "stack")


async def test_document_is_served(anonymous_http: httpx.AsyncClient) -> None:
    reply = await anonymous_http.get("/api/openapi.json")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.content == OPENAPI_PATH.read_bytes()
    assert reply.json()["openapi"] == "3.1.0"


async def test_reference_page_is_served(anonymous_http: httpx.AsyncClient) -> None:
    reply = await anonymous_http.get("/api/docs")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert reply.content == API_REFERENCE_PATH.read_bytes()
    assert 'url: "/api/openapi.json"' in reply.text
    assert "SwaggerUIBundle" in reply.text


async def test_only_get_is_served(anonymous_http: httpx.AsyncClient) -> None:
    # Other methods fall through to the transcoder, which knows no such route.
    reply = await anonymous_http.post("/api/openapi.json", json={})
    assert reply.status_code == 404


async def test_api_routes_still_transcoded(anonymous_http: httpx.AsyncClient) -> None:
    reply = await anonymous_http.get("/api/workspaces")
    assert reply.status_code == 401


async def test_header_names_grpc_refuses_are_refused_at_the_edge(anonymous_http: httpx.AsyncClient) -> None:
    """HTTP/1.1 allows header names gRPC metadata does not; forwarded, they made the server's gRPC core
    fail the stream with INTERNAL (found by schemathesis)."""
    reply = await anonymous_http.get("/api/auth/me", headers={"i~": "x"})
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["code"] == 3
    assert body["details"][0]["reason"] == "INVALID_HEADER_NAME"
    # Ordinary headers still pass (401: no credentials, from the server).
    assert (await anonymous_http.get("/api/auth/me", headers={"x-trace.id": "a-1"})).status_code == 401
