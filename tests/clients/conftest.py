"""The Meta client against the Graph API simulator (tests/simulator.py), over real loopback HTTP."""

from collections.abc import AsyncIterator

import httpx
import pytest


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for tests that build a MetaGraphClient with options of their own."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client
