"""The refresh tokens' retention job deletes the tokens that expired or were revoked longer ago than
the grace, and nothing else: not live ones, not spent ones of a live sign-in, and never a revocation
younger than the access tokens' lifetime (it keeps their sign-in revoked)."""

import datetime as dt
import uuid

from sqlalchemy import select

from server.composition import Infrastructure
from server.db import utcnow
from server.signin.models import RefreshToken
from server.signin.retention import delete_spent_tokens
from tests.meta_work import new_user

NOW = utcnow()
DAY = dt.timedelta(days=1)
GRACE = 7 * DAY
ACCESS_TTL = dt.timedelta(minutes=15)


def _token(
    user_id: uuid.UUID,
    name: str,
    *,
    expires_in: dt.timedelta,
    used_ago: dt.timedelta | None = None,
    revoked_ago: dt.timedelta | None = None,
) -> RefreshToken:
    return RefreshToken(
        user_id=user_id,
        family_id=uuid.uuid4(),
        token_hash=name.ljust(64, "0"),
        expires_at=NOW + expires_in,
        used_at=None if used_ago is None else NOW - used_ago,
        revoked_at=None if revoked_ago is None else NOW - revoked_ago,
    )


async def _names(infrastructure: Infrastructure) -> set[str]:
    async with infrastructure.unit_of_work() as uow:
        return {token_hash.rstrip("0") for token_hash in await uow.session.scalars(select(RefreshToken.token_hash))}


async def test_deletes_tokens_ended_before_the_grace_and_nothing_else(infrastructure: Infrastructure) -> None:
    user = await new_user(infrastructure)
    tokens = [
        _token(user, "expiredlong", expires_in=-(GRACE + DAY)),
        _token(user, "expiredlongspent", expires_in=-(GRACE + DAY), used_ago=40 * DAY),
        _token(user, "revokedlong", expires_in=20 * DAY, revoked_ago=GRACE + DAY),
        _token(user, "expiredrecently", expires_in=-(GRACE - DAY)),
        _token(user, "revokedrecently", expires_in=20 * DAY, revoked_ago=GRACE - DAY),
        _token(user, "live", expires_in=20 * DAY),
        _token(user, "spentlive", expires_in=20 * DAY, used_ago=DAY),  # reuse of it must still be caught
    ]
    async with infrastructure.unit_of_work() as uow:
        uow.session.add_all(tokens)

    deleted = await delete_spent_tokens(
        infrastructure.unit_of_work, grace=GRACE, access_token_ttl=ACCESS_TTL, batch_size=1, now=NOW
    )

    assert deleted == 3
    assert await _names(infrastructure) == {"expiredrecently", "revokedrecently", "live", "spentlive"}
    again = await delete_spent_tokens(
        infrastructure.unit_of_work, grace=GRACE, access_token_ttl=ACCESS_TTL, batch_size=1, now=NOW
    )
    assert again == 0


async def test_a_revocation_outlives_the_access_tokens_of_its_sign_in(infrastructure: Infrastructure) -> None:
    """A grace shorter than the access tokens' lifetime is stretched to it."""
    user = await new_user(infrastructure)
    async with infrastructure.unit_of_work() as uow:
        uow.session.add_all(
            [
                _token(user, "revoked5minago", expires_in=20 * DAY, revoked_ago=dt.timedelta(minutes=5)),
                _token(user, "revoked20minago", expires_in=20 * DAY, revoked_ago=dt.timedelta(minutes=20)),
            ]
        )
    deleted = await delete_spent_tokens(
        infrastructure.unit_of_work,
        grace=dt.timedelta(minutes=1),
        access_token_ttl=ACCESS_TTL,
        batch_size=10,
        now=NOW,
    )
    assert deleted == 1
    assert await _names(infrastructure) == {"revoked5minago"}
