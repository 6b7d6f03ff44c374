"""A server process with DATABASE_READ_URL: over gRPC, a caller who creates a workspace reads it at
once, while another caller's Get goes to the replica, whose replay is paused (tests.replica)."""

import asyncio
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from adplane.v1 import workspace_pb2, workspace_service_pb2
from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceStub
from server import migrations
from server.composition import Infrastructure
from server.config import Settings
from tests.callers import make_caller
from tests.conftest import _create_database
from tests.e2e.conftest import ServerProcess, start_server
from tests.replica import Replicated, paused_replay, replayed_up_to_primary, replicated_postgres
from tests.waits import eventually

pytestmark = pytest.mark.xdist_group("replica")


@pytest.fixture(scope="module")
def replicated() -> Iterator[Replicated]:
    with replicated_postgres() as running:
        yield running


@pytest.fixture(scope="module")
def replicated_settings(replicated: Replicated, settings: Settings) -> Settings:
    url = asyncio.run(_create_database(replicated.primary.url, "adplane_replicated_e2e"))
    migrations.upgrade(Settings(database_url=url))
    asyncio.run(eventually(lambda: replayed_up_to_primary(replicated), within=30, what="the replica migrated"))
    return settings.model_copy(update={"database_url": url})


@pytest.fixture(scope="module")
def server(
    replicated: Replicated, replicated_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    replica_url = replicated.replica_url(replicated_settings.database_url)
    running = start_server(
        replicated_settings,
        tmp_path_factory.mktemp("replica"),
        DATABASE_READ_URL=replica_url,
        DATABASE_READ_MAX_LAG_SECONDS="3600",
        DATABASE_READ_CHECK_INTERVAL_SECONDS="0.1",
    )
    yield running
    assert running.stop() == 0, running.log.read_text()[-4000:]


@pytest.fixture
async def replicated_infrastructure(replicated_settings: Settings) -> AsyncIterator[Infrastructure]:
    infrastructure = Infrastructure.build(replicated_settings)
    yield infrastructure
    await infrastructure.close()


async def test_a_caller_reads_its_own_write_while_others_read_the_paused_replica(
    server: ServerProcess, replicated: Replicated, replicated_infrastructure: Infrastructure
) -> None:
    writer = await make_caller(replicated_infrastructure, superuser=True)
    other = await make_caller(replicated_infrastructure, superuser=True)
    async with grpc.aio.insecure_channel(server.target) as channel:
        workspaces = WorkspaceServiceStub(channel)

        async def get(metadata: tuple[tuple[str, str], ...], workspace_id: str) -> grpc.StatusCode:
            try:
                await workspaces.GetWorkspace(
                    workspace_service_pb2.GetWorkspaceRequest(workspace_id=workspace_id), metadata=metadata
                )
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        await eventually(lambda: replayed_up_to_primary(replicated), within=30, what="the callers replicated")
        async with paused_replay(replicated.replica):
            created = await workspaces.CreateWorkspace(
                workspace_service_pb2.CreateWorkspaceRequest(workspace=workspace_pb2.Workspace(name="Replicated Co")),
                metadata=writer.metadata,
            )
            workspace_id = created.workspace.id
            assert await get(writer.metadata, workspace_id) == grpc.StatusCode.OK
            assert await get(other.metadata, workspace_id) == grpc.StatusCode.NOT_FOUND

        async def replayed() -> bool:
            return await get(other.metadata, workspace_id) == grpc.StatusCode.OK

        await eventually(replayed, within=30, what="the other caller reading the replayed workspace")
