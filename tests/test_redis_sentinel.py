"""Every Redis client through Sentinel (server/redis_client.py): the same client objects follow a
failover to the promoted replica, without a restart."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio.sentinel import SentinelManagedSSLConnection
from redis.exceptions import RedisError
from taskiq import AsyncBroker

from server.background.lease import SchedulerLease
from server.background.registry import register_tasks
from server.composition import Infrastructure
from server.config import Settings
from server.redis_client import connect_redis, connection_pool
from server.taskqueue.broker import QUEUE, create_broker
from tests.sentinel import SentinelGroup, sentinel_settings
from tests.waits import eventually


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    with SentinelGroup(tmp_path / "sentinel") as group:
        yield group


async def test_the_clients_follow_a_failover(settings: Settings, group: SentinelGroup) -> None:
    through_sentinel = sentinel_settings(settings, group)
    redis = connect_redis(through_sentinel)
    broker = create_broker(through_sentinel)
    register_tasks(broker, through_sentinel)
    await broker.startup()
    try:
        await redis.set("before", "1")
        assert await redis.wait(1, 5000) == 1, "the replica has the write"
        first = group.primary()
        group.kill_primary()
        group.wait_for_new_primary()
        assert group.primary() is not first

        async def writes() -> bool:
            try:
                return bool(await redis.set("after", "1"))
            except RedisError:
                return False

        await eventually(writes, within=30, what="a write through the same client after the failover")
        assert await redis.get("before") == b"1"
        # The broker's pool follows too: a task sent now is in the new primary's stream.
        await eventually(lambda: _sends(broker), within=30, what="the broker sending after the failover")
        assert await redis.xlen(QUEUE) >= 1
    finally:
        await broker.shutdown()
        await redis.aclose()


async def test_the_infrastructure_and_the_lease_connect_through_the_sentinels(
    settings: Settings, group: SentinelGroup
) -> None:
    infrastructure = Infrastructure.build(sentinel_settings(settings, group))
    try:
        assert infrastructure.redis is not None
        assert await infrastructure.redis.ping()
        assert await SchedulerLease(infrastructure.redis, lease_seconds=5).try_hold()
        role = await infrastructure.redis.role()
        assert role[0] == b"master"
    finally:
        await infrastructure.close()


async def _sends(broker: AsyncBroker) -> bool:
    task = broker.find_task("requests.expire_stale")
    assert task is not None
    try:
        await task.kiq()
    except RedisError:
        return False
    return True


def test_redis_url_gives_the_primarys_database_credentials_and_tls(settings: Settings) -> None:
    through_sentinel = settings.model_copy(
        update={
            "redis_url": "rediss://user:secret@ignored.example:6380/3?ssl_cert_reqs=none",
            "redis_sentinels": "127.0.0.1:26379, [::1]:26380",
        }
    )
    assert through_sentinel.redis_sentinel_addresses == [("127.0.0.1", 26379), ("::1", 26380)]
    pool = connection_pool(through_sentinel)
    assert issubclass(pool.connection_class, SentinelManagedSSLConnection)
    options = pool.connection_kwargs
    assert (options["db"], options["username"], options["password"]) == (3, "user", "secret")
    assert options["ssl_cert_reqs"] == "none"
    assert "host" not in options, "the sentinels say where the primary is"


def test_redis_sentinels_must_be_host_port_pairs(settings: Settings) -> None:
    with pytest.raises(ValueError, match="host:port"):
        Settings(redis_sentinels="127.0.0.1:26379,sentinel-b")
