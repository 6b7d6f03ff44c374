"""`make run` prints its banner when a health check through Envoy reaches a serving server."""

import asyncio

import pytest

from devstack.probes import routes_to_serving_server
from tests.e2e.conftest import Stack


@pytest.mark.usefixtures("infrastructure")  # the stack's tests start from an empty database
async def test_envoy_routes_a_health_check_to_the_serving_server(stack: Stack) -> None:
    assert await asyncio.to_thread(routes_to_serving_server, stack.envoy.port)
