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
