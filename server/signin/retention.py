"""The refresh tokens' retention job: a token is deleted once REFRESH_TOKEN_RETENTION_GRACE_HOURS have
passed since it expired or was revoked.

Until then a revoked token keeps its sign-in revoked for the access tokens of its family (the auth
module reads revocations through `standing_sessions`), and a spent token that comes back is still
recognised as reuse and revokes its family. So the grace is never shorter than the access tokens'
lifetime, and a spent token of a live sign-in stays until it expires.
"""

import datetime as dt
from typing import Protocol

import structlog

from server.db import utcnow
from server.retention import delete_in_batches
from server.signin.repository import RefreshTokenRepository
from server.units import UnitOfWorkFactory

logger = structlog.get_logger("adplane.signin.retention")


class RefreshTokenRetentionUnit(Protocol):
    @property
    def refresh_token_repository(self) -> RefreshTokenRepository: ...


async def delete_spent_tokens(
    units: UnitOfWorkFactory[RefreshTokenRetentionUnit],
    *,
    grace: dt.timedelta,
    access_token_ttl: dt.timedelta,
    batch_size: int,
    now: dt.datetime | None = None,
) -> int:
    """Delete the tokens that expired, or were revoked, more than `grace` (at least `access_token_ttl`)
    before `now`; how many."""
    before = (now or utcnow()) - max(grace, access_token_ttl)

    async def expired(uow: RefreshTokenRetentionUnit, limit: int) -> int:
        return await uow.refresh_token_repository.delete_expired(before=before, limit=limit)

    async def revoked(uow: RefreshTokenRetentionUnit, limit: int) -> int:
        return await uow.refresh_token_repository.delete_revoked(before=before, limit=limit)

    deleted = await delete_in_batches(units, expired, batch_size=batch_size)
    deleted += await delete_in_batches(units, revoked, batch_size=batch_size)
    if deleted:
        logger.info("deleted refresh tokens", count=deleted, ended_before=before.isoformat())
    return deleted
