"""The outbox's retention job deletes the messages published longer ago than the window, and nothing
else: not the younger ones, not unpublished ones however old, not a row a relay holds."""

import datetime as dt
import uuid

from sqlalchemy import select

from server.composition import Infrastructure
from server.db import new_id_at, utcnow
from server.outbox.models import OutboxMessage
from server.outbox.retention import delete_published

NOW = utcnow()
KEEP = dt.timedelta(hours=24)


def _message(*, created_ago: dt.timedelta, published_ago: dt.timedelta | None) -> OutboxMessage:
    created = NOW - created_ago
    # An id of the time it was made, as new_id() would have given it then.
    return OutboxMessage(
        id=new_id_at(created),
        topic="request.approved",
        payload={},
        created_at=created,
        published_at=None if published_ago is None else NOW - published_ago,
    )


async def _ids(infrastructure: Infrastructure) -> set[uuid.UUID]:
    async with infrastructure.unit_of_work() as uow:
        return set(await uow.session.scalars(select(OutboxMessage.id)))


async def test_deletes_what_was_published_before_the_window_and_nothing_else(infrastructure: Infrastructure) -> None:
    hour = dt.timedelta(hours=1)
    expired = [_message(created_ago=(30 + n) * hour, published_ago=(25 + n) * hour) for n in range(5)]
    kept = [
        _message(created_ago=23 * hour, published_ago=23 * hour),  # published within the window
        _message(created_ago=30 * hour, published_ago=23 * hour),  # old, but published late
        _message(created_ago=24 * 30 * hour, published_ago=None),  # never published: never deleted
        _message(created_ago=hour, published_ago=None),
    ]
    async with infrastructure.unit_of_work() as uow:
        uow.session.add_all(expired + kept)

    # Batches of two: three transactions for five rows.
    deleted = await delete_published(infrastructure.unit_of_work, keep=KEEP, batch_size=2, now=NOW)

    assert deleted == 5
    assert await _ids(infrastructure) == {message.id for message in kept}
    # Idempotent: a second run finds nothing more.
    assert await delete_published(infrastructure.unit_of_work, keep=KEEP, batch_size=2, now=NOW) == 0
    assert await _ids(infrastructure) == {message.id for message in kept}


async def test_a_row_a_relay_holds_is_skipped_not_waited_for(infrastructure: Infrastructure) -> None:
    held, free = (_message(created_ago=dt.timedelta(days=3), published_ago=dt.timedelta(days=2)) for _ in range(2))
    async with infrastructure.unit_of_work() as uow:
        uow.session.add_all([held, free])
    async with infrastructure.unit_of_work() as holder:
        await holder.session.execute(select(OutboxMessage).where(OutboxMessage.id == held.id).with_for_update())
        assert await delete_published(infrastructure.unit_of_work, keep=KEEP, batch_size=10, now=NOW) == 1
    assert await _ids(infrastructure) == {held.id}
    assert await delete_published(infrastructure.unit_of_work, keep=KEEP, batch_size=10, now=NOW) == 1
    assert await _ids(infrastructure) == set()
