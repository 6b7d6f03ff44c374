"""The outbox relay against the real database, with a recording publisher in place of the broker."""

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import select

from server.composition import Infrastructure
from server.outbox.models import OutboxMessage
from server.outbox.relay import OutboxRelay, UnroutableMessage
from tests.waits import eventually


class Recorder:
    def __init__(self, *, fail: bool = False, delay: float = 0.0, unroutable: frozenset[str] = frozenset()) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.refused = 0
        self.fail = fail
        self.delay = delay
        self.unroutable = unroutable

    async def __call__(self, topic: str, payload: dict[str, Any], labels: Mapping[str, str]) -> None:
        await asyncio.sleep(self.delay)  # a broker that takes this long to answer
        if self.fail:
            self.refused += 1
            raise ConnectionError("broker unreachable")
        if topic in self.unroutable:
            raise UnroutableMessage(topic)
        self.published.append((topic, payload))


async def add_messages(infrastructure: Infrastructure, count: int, topic: str = "request.approved") -> None:
    async with infrastructure.unit_of_work() as uow:
        for n in range(count):
            await uow.outbox.add(topic, {"n": n})


async def pending(infrastructure: Infrastructure) -> list[OutboxMessage]:
    async with infrastructure.unit_of_work() as uow:
        return list(await uow.session.scalars(select(OutboxMessage).where(OutboxMessage.published_at.is_(None))))


def relay(infrastructure: Infrastructure, publish: Recorder, batch: int = 10) -> OutboxRelay:
    return OutboxRelay(infrastructure.unit_of_work, publish, batch_size=batch, poll_seconds=0.01)


async def test_publishes_oldest_first_in_batches_and_marks_them(infrastructure: Infrastructure) -> None:
    await add_messages(infrastructure, 15)
    recorder = Recorder()
    assert await relay(infrastructure, recorder).relay_once() == 10
    assert await relay(infrastructure, recorder).relay_once() == 5
    assert await relay(infrastructure, recorder).relay_once() == 0
    assert [payload["n"] for _, payload in recorder.published] == list(range(15))
    assert all("outbox_id" in payload for _, payload in recorder.published)
    assert await pending(infrastructure) == []


async def test_rows_stay_while_the_broker_is_unreachable(infrastructure: Infrastructure) -> None:
    await add_messages(infrastructure, 3)
    with pytest.raises(ConnectionError):
        await relay(infrastructure, Recorder(fail=True)).relay_once()
    assert len(await pending(infrastructure)) == 3
    recorder = Recorder()
    assert await relay(infrastructure, recorder).relay_once() == 3
    assert len(recorder.published) == 3


async def test_a_topic_without_a_task_does_not_block_the_others(infrastructure: Infrastructure) -> None:
    await add_messages(infrastructure, 1, topic="nobody.listens")
    await add_messages(infrastructure, 2)
    recorder = Recorder(unroutable=frozenset({"nobody.listens"}))
    assert await relay(infrastructure, recorder).relay_once() == 3
    assert [topic for topic, _ in recorder.published] == ["request.approved", "request.approved"]
    async with infrastructure.unit_of_work() as uow:
        skipped = await uow.session.scalar(select(OutboxMessage).where(OutboxMessage.topic == "nobody.listens"))
    assert skipped is not None
    assert skipped.published_at is not None
    assert "nobody.listens" in (skipped.last_error or "")


async def test_concurrent_relays_never_publish_a_row_twice(infrastructure: Infrastructure) -> None:
    await add_messages(infrastructure, 30)
    recorder = Recorder(delay=0.01)
    relays = [relay(infrastructure, recorder, batch=5) for _ in range(4)]
    while await pending(infrastructure):
        await asyncio.gather(*(r.relay_once() for r in relays))
    numbers = [payload["n"] for _, payload in recorder.published]
    assert sorted(numbers) == list(range(30))


async def test_run_stops_when_asked_and_keeps_going_after_failures(infrastructure: Infrastructure) -> None:
    await add_messages(infrastructure, 2)
    recorder = Recorder(fail=True)
    stop = asyncio.Event()
    running = asyncio.create_task(relay(infrastructure, recorder).run(stop))
    await eventually(lambda: recorder.refused >= 2, within=5, what="the relay trying again after a failure")
    recorder.fail = False  # the broker comes back
    await eventually(lambda: len(recorder.published) == 2, within=5, what="both rows published")
    stop.set()
    await asyncio.wait_for(running, timeout=5)
    assert len(recorder.published) == 2
