"""The Meta client against the Graph API simulator, over real loopback HTTP."""

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from devstack.meta_simulator import SimulatorControl, SimulatorServer
from devstack.meta_simulator.schemas import SeededBusiness
from server.clients.meta import IMetaClient, MetaGraphClient


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


@pytest.fixture
def control(simulator: SimulatorServer) -> Iterator[SimulatorControl]:
    """The simulator's control API, on a simulator emptied for each test."""
    with SimulatorControl(simulator.base_url) as control:
        control.reset()
        yield control


@pytest.fixture
def business(control: SimulatorControl) -> SeededBusiness:
    return control.add_business("Agency")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


@pytest.fixture
def meta(http: httpx.AsyncClient, simulator: SimulatorServer) -> IMetaClient:
    # Typed as the protocol, so mypy checks that MetaGraphClient implements it.
    client: IMetaClient = MetaGraphClient(http, base_url=simulator.base_url)
    return client
