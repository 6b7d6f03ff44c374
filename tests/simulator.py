"""The Graph API simulator on loopback, for every test that talks to Meta (a pytest plugin, see
tests/conftest.py): one simulator per test process, emptied before each test that asks for it."""

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from devstack.meta_simulator import SimulatorControl, SimulatorServer
from devstack.meta_simulator.schemas import SeededBusiness
from server.clients.meta import IMetaClient, MetaGraphClient


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


@pytest.fixture
def control(simulator: SimulatorServer) -> Iterator[SimulatorControl]:
    """The simulator's control API, on a simulator emptied for this test (objects, faults, latency)."""
    with SimulatorControl(simulator.base_url) as control:
        control.reset()
        yield control


@pytest.fixture
def business(control: SimulatorControl) -> SeededBusiness:
    """A business on Meta, with the token of its system user."""
    return control.add_business("Agency")


@pytest.fixture
async def meta(simulator: SimulatorServer) -> AsyncIterator[IMetaClient]:
    """Our Meta client on the simulator."""
    async with httpx.AsyncClient(timeout=10.0) as http:
        # Typed as the protocol, so mypy checks that MetaGraphClient implements it.
        client: IMetaClient = MetaGraphClient(http, base_url=simulator.base_url)
        yield client
