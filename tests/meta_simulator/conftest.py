"""The simulator itself (tests/simulator.py), checked over plain HTTP without our client."""

from collections.abc import Iterator

import httpx
import pytest

from devstack.meta_simulator import SimulatorServer
from devstack.meta_simulator.schemas import SeededBusiness


@pytest.fixture
def graph(simulator: SimulatorServer, business: SeededBusiness) -> Iterator[httpx.Client]:
    """Plain HTTP to the Graph API as the agency business, so the simulator is checked without the client."""
    with httpx.Client(
        base_url=f"{simulator.base_url}/v26.0", headers={"Authorization": f"Bearer {business.token}"}, timeout=10
    ) as client:
        yield client
