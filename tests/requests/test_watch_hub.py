"""The watch hub of one server process, against a real Redis: a reconnect storm reads its snapshots a
few at a time, and the memory of a burst of closed watches is handed back once the burst is over."""

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from server.requests import watch
from server.requests.schemas import RequestListRequestSchema, RequestResponseSchema
from server.requests.watch import RequestEventHub, SnapshotPart, matching
from tests.waits import eventually


@pytest.fixture
async def hub(redis_url: str) -> AsyncIterator[RequestEventHub]:
    redis = Redis.from_url(redis_url)
    hub = RequestEventHub(redis, buffer_size=100, retention=dt.timedelta(minutes=5), outage=dt.timedelta(seconds=30))
    try:
        yield hub
    finally:
        await hub.close()
        await redis.aclose()


async def test_a_reconnect_storm_reads_its_snapshots_a_few_at_a_time(hub: RequestEventHub) -> None:
    reading = 0
    most = 0
    release = asyncio.Event()

    async def snapshot() -> tuple[list[RequestResponseSchema], bool]:
        nonlocal reading, most
        reading += 1
        most = max(most, reading)
        await release.wait()
        reading -= 1
        return [], False

    async def first_message() -> SnapshotPart:
        stream = watch.watch(
            hub,
            matches=matching(RequestListRequestSchema()),
            snapshot=snapshot,
            resume_token=None,
            heartbeat_seconds=60,
        )
        async with contextlib.aclosing(stream):
            item = await anext(stream)
        assert isinstance(item, SnapshotPart)
        return item

    watches = [asyncio.create_task(first_message()) for _ in range(3 * watch.SNAPSHOT_CONCURRENCY)]
    await eventually(lambda: hub.watching == len(watches), within=10, what="every watch joined the hub")
    await eventually(lambda: reading == watch.SNAPSHOT_CONCURRENCY, within=10, what="the first snapshots read")
    assert most == watch.SNAPSHOT_CONCURRENCY  # the others joined the hub and wait their turn
    release.set()
    parts = await asyncio.gather(*watches)
    assert all(part.complete for part in parts)
    assert most == watch.SNAPSHOT_CONCURRENCY


async def test_memory_is_handed_back_once_a_burst_of_watches_has_closed(
    hub: RequestEventHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    released: list[int] = []
    monkeypatch.setattr(watch, "RELEASE_AFTER_SECONDS", 0.2)

    def release() -> bool:
        released.append(hub.watching)
        return True

    monkeypatch.setattr(watch, "release_freed_memory", release)

    subscriptions = [await hub.subscribe(lambda _event: True) for _ in range(watch.RELEASE_AFTER_CLOSED + 50)]
    for subscription in subscriptions:
        hub.unsubscribe(subscription)
    await eventually(lambda: released != [], within=5, what="the release after the burst")
    # Once, after the burst (every close within the pause pushed it back), with every watch gone.
    assert released == [0]
