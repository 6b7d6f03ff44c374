"""The idempotency keys' retention job deletes the keys first used before the retry window, and
nothing else; a retry within the window still replays, one after it does the work again."""

import datetime as dt

from sqlalchemy import select

from server.composition import Infrastructure
from server.db import utcnow
from server.idempotency.models import IdempotencyKey
from server.idempotency.retention import delete_expired_keys

NOW = utcnow()
KEEP = dt.timedelta(hours=72)


async def _keys(infrastructure: Infrastructure) -> set[str]:
    async with infrastructure.unit_of_work() as uow:
        return set(await uow.session.scalars(select(IdempotencyKey.key)))


async def test_deletes_the_keys_older_than_the_window_and_nothing_else(infrastructure: Infrastructure) -> None:
    ages = {
        "old-1": KEEP + dt.timedelta(seconds=1),
        "old-2": KEEP + dt.timedelta(days=3),
        "old-3": KEEP * 10,
        "young-1": KEEP - dt.timedelta(seconds=5),
        "young-2": dt.timedelta(0),
    }
    async with infrastructure.unit_of_work() as uow:
        uow.session.add_all(
            IdempotencyKey(scope="workspaces.create:caller", key=key, fingerprint="f" * 64, created_at=NOW - age)
            for key, age in ages.items()
        )

    assert await delete_expired_keys(infrastructure.unit_of_work, keep=KEEP, batch_size=2, now=NOW) == 3
    assert await _keys(infrastructure) == {"young-1", "young-2"}
    assert await delete_expired_keys(infrastructure.unit_of_work, keep=KEEP, batch_size=2, now=NOW) == 0
