from collections.abc import Iterator

import httpx
import pytest

from devstack.meta_simulator import SimulatorControl, SimulatorServer
from devstack.meta_simulator.schemas import SeededBusiness


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


@pytest.fixture
def control(simulator: SimulatorServer) -> Iterator[SimulatorControl]:
    """The control API, on a simulator emptied for each test."""
    with SimulatorControl(simulator.base_url) as control:
        control.reset()
        yield control


@pytest.fixture
def business(control: SimulatorControl) -> SeededBusiness:
    return control.add_business("Agency")


@pytest.fixture
def graph(simulator: SimulatorServer, business: SeededBusiness) -> Iterator[httpx.Client]:
    """Plain HTTP to the Graph API as the agency business, so the simulator is checked without the client."""
    with httpx.Client(
        base_url=f"{simulator.base_url}/v26.0", headers={"Authorization": f"Bearer {business.token}"}, timeout=10
    ) as client:
        yield client
