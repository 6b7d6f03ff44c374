"""Reads on a streaming replica (DATABASE_READ_URL): an embedded primary and a replica made with
`pg_basebackup -R` (tests.replica), replay paused to make lag. Other callers read the replica; a
caller reads its own writes, in this process and (through Redis) in another; a replica lagging past
DATABASE_READ_MAX_LAG_SECONDS, or stopped, is skipped."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import literal, select

from server import migrations
from server.auth.principal import Principal, PrincipalKind, set_current_principal
from server.composition import Infrastructure
from server.config import Settings
from server.outages import is_outage
from server.read_pool import PreparedRead
from server.read_replica import ReplicaLag
from server.workspaces.exceptions import WorkspaceNotFoundException
from server.workspaces.schemas import WorkspaceCreateRequestSchema
from tests.conftest import _create_database
from tests.replica import Replicated, paused_replay, replayed_up_to_primary, replicated_postgres
from tests.waits import eventually

pytestmark = pytest.mark.xdist_group("replica")

CHECK_SECONDS = 0.1


@pytest.fixture(scope="module")
def replicated() -> Iterator[Replicated]:
    with replicated_postgres() as running:
        yield running


@pytest.fixture(scope="module")
def replicated_settings(replicated: Replicated, settings: Settings) -> Settings:
    url = asyncio.run(_create_database(replicated.primary.url, "adplane_replicated"))
    migrations.upgrade(Settings(database_url=url))
    asyncio.run(eventually(lambda: replayed_up_to_primary(replicated), within=30, what="the replica migrated"))
    return settings.model_copy(
        update={
            "database_url": url,
            "database_read_url": replicated.replica_url(url),
            "database_read_max_lag_seconds": 3600.0,
            "database_read_check_interval_seconds": CHECK_SECONDS,
        }
    )


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Infrastructure]:
    """A process's infrastructure with its replica router started."""
    infrastructure = Infrastructure.build(settings)
    assert infrastructure.replica is not None
    await infrastructure.replica.router.start()
    try:
        yield infrastructure
    finally:
        await infrastructure.close()


@pytest.fixture
async def replicating(replicated_settings: Settings) -> AsyncIterator[Infrastructure]:
    """A process's infrastructure reading the replica (lag bound: an hour)."""
    async with running(replicated_settings) as infrastructure:
        yield infrastructure


def caller() -> Principal:
    return Principal(kind=PrincipalKind.USER, id=uuid.uuid4(), superuser=True)


async def create_workspace(infrastructure: Infrastructure, by: Principal) -> uuid.UUID:
    set_current_principal(by)
    try:
        async with infrastructure.unit_of_work() as uow:
            created = await uow.workspaces.create_workspace(
                WorkspaceCreateRequestSchema(name=f"W {uuid.uuid4().hex[:6]}")
            )
        return created.id
    finally:
        set_current_principal(None)


async def sees(infrastructure: Infrastructure, by: Principal, workspace_id: uuid.UUID) -> bool:
    """Whether `by`'s Get (a read-only unit) finds the workspace."""
    set_current_principal(by)
    try:
        async with infrastructure.unit_of_work(read_only=True) as uow:
            await uow.workspaces.get_workspace(workspace_id)
        return True
    except WorkspaceNotFoundException:
        return False
    finally:
        set_current_principal(None)


async def usable(infrastructure: Infrastructure) -> None:
    assert infrastructure.replica is not None
    router = infrastructure.replica.router
    await eventually(lambda: router.usable, within=20, what="the replica in use")


async def test_other_callers_read_the_replica_and_a_caller_its_own_writes(
    replicating: Infrastructure, replicated: Replicated, replicated_settings: Settings
) -> None:
    writer, other = caller(), caller()
    # Another process learns of the write through Redis.
    async with running(replicated_settings) as elsewhere:
        await usable(replicating)
        await usable(elsewhere)
        async with paused_replay(replicated.replica):
            workspace_id = await create_workspace(replicating, writer)
            assert await sees(replicating, writer, workspace_id)  # its own write: the primary
            assert not await sees(replicating, other, workspace_id)  # the replica, which has not replayed it
            assert await sees(elsewhere, writer, workspace_id)
            assert not await sees(elsewhere, other, workspace_id)
    await eventually(lambda: sees(replicating, other, workspace_id), within=20, what="the replica replaying the write")
    # Once a probe has seen the replica replay the write, the writer reads the replica again.
    assert replicating.replica is not None
    router = replicating.replica.router
    await eventually(lambda: replayed_up_to_primary(replicated), within=20, what="the replica caught up")
    await eventually(lambda: router.replica_for(f"user:{writer.id}"), within=20, what="the writer back on the replica")


async def test_a_lagging_replica_is_skipped(replicated: Replicated, replicated_settings: Settings) -> None:
    strict = replicated_settings.model_copy(update={"database_read_max_lag_seconds": 0.5})
    async with running(strict) as infrastructure:
        await usable(infrastructure)
        assert infrastructure.replica is not None
        router = infrastructure.replica.router
        writer, other = caller(), caller()
        async with paused_replay(replicated.replica):
            workspace_id = await create_workspace(infrastructure, writer)
            await eventually(lambda: not router.usable, within=20, what="the lagging replica skipped")
            assert router.lag_seconds > 0.5
            assert await sees(infrastructure, other, workspace_id)  # from the primary
        await usable(infrastructure)
        assert await sees(infrastructure, other, workspace_id)


async def test_a_stopped_replica_is_skipped(replicating: Infrastructure, replicated: Replicated) -> None:
    await usable(replicating)
    assert replicating.replica is not None
    router = replicating.replica.router
    workspace_id = await create_workspace(replicating, caller())
    await eventually(lambda: sees(replicating, caller(), workspace_id), within=20, what="the replica has the workspace")
    hot_read = PreparedRead(select(literal(1)))
    replicated.replica.stop_server(mode="immediate")
    try:
        # A Get (the autocommit session) on the stopped replica: an outage, UNAVAILABLE to its caller,
        # and the replica is skipped from then on; the probes keep it so.
        with pytest.raises(Exception) as failed:  # noqa: PT011 - any outage, as the server maps them
            await sees(replicating, caller(), workspace_id)
        assert is_outage(failed.value), repr(failed.value)
        assert not router.usable
        assert await sees(replicating, caller(), workspace_id)
        await asyncio.sleep(CHECK_SECONDS * 3)
        assert not router.usable
        assert await sees(replicating, caller(), workspace_id)
    finally:
        replicated.replica.start()
    await usable(replicating)
    # A hot read (the read pool) on a stopped replica is answered by the primary.
    assert await replicating.replica.read_pool.one(hot_read, {}) is not None  # opens the replica's pool
    replicated.replica.stop_server(mode="immediate")
    try:
        assert await replicating.replica.read_pool.one(hot_read, {}) is not None
        assert not router.usable
    finally:
        replicated.replica.start()
    await usable(replicating)


def test_the_lag_is_the_age_of_the_newest_primary_position_the_replica_has() -> None:
    lag = ReplicaLag(keep_seconds=10)
    assert lag.measure(100.0, primary=1000, replayed=1000) == 0.0
    assert lag.measure(101.0, primary=2000, replayed=1500) == 1.0  # has what the primary had at 100
    assert lag.measure(103.0, primary=3000, replayed=2000) == 2.0  # has what it had at 101
    assert lag.measure(104.0, primary=3000, replayed=None) == 0.0  # not a standby (promoted)
    fresh = ReplicaLag(keep_seconds=10)
    assert fresh.measure(100.0, primary=1000, replayed=10) == float("inf")  # behind anything known
    assert lag.measure(200.0, primary=4000, replayed=3500) == float("inf")  # older samples forgotten


async def test_the_lag_and_the_skipping_are_metrics(replicating: Infrastructure, replicated: Replicated) -> None:
    await usable(replicating)
    skipped = REGISTRY.get_sample_value("adplane_db_replica_skipped") or 0.0
    async with paused_replay(replicated.replica):
        await create_workspace(replicating, caller())
        await eventually(
            lambda: (REGISTRY.get_sample_value("adplane_db_replica_lag_seconds") or 0.0) > CHECK_SECONDS * 2,
            within=20,
            what="the lag growing",
        )
    assert replicating.replica is not None
    replicating.replica.router.skip()
    assert REGISTRY.get_sample_value("adplane_db_replica_skipped") == skipped + 1
    await usable(replicating)
    assert REGISTRY.get_sample_value("adplane_db_replica_skipped") == skipped
