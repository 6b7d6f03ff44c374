"""The sign-in module's data: refresh tokens, one family of them per sign-in (session).

A Login starts a family; each refresh spends one token and adds the next. Access tokens name their
family, so revoking a family (Logout, reuse of a spent token, deactivation) ends the sign-in and its
access tokens at once: the auth module's standing lookup reads revocations through its view
`standing_sessions`.
"""

import datetime as dt
import uuid
from typing import Any, Protocol, cast

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from server.signin.models import RefreshToken


class IRefreshTokenRepository(Protocol):
    async def add(
        self, *, user_id: uuid.UUID, family_id: uuid.UUID, token_hash: str, expires_at: dt.datetime
    ) -> None: ...
    async def spend(self, *, token_hash: str, now: dt.datetime) -> RefreshToken | None: ...
    async def find(self, *, token_hash: str) -> RefreshToken | None: ...
    async def revoke_family(self, *, family_id: uuid.UUID, now: dt.datetime) -> None: ...
    async def revoke_user_families(self, *, user_id: uuid.UUID, now: dt.datetime) -> None: ...


class RefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, *, user_id: uuid.UUID, family_id: uuid.UUID, token_hash: str, expires_at: dt.datetime) -> None:
        self._session.add(
            RefreshToken(user_id=user_id, family_id=family_id, token_hash=token_hash, expires_at=expires_at)
        )
        await self._session.flush()

    async def spend(self, *, token_hash: str, now: dt.datetime) -> RefreshToken | None:
        """Mark a live token used; None when it is unknown, spent, revoked or expired.

        The conditional UPDATE makes two concurrent refreshes with one token see one winner.
        """
        statement = (
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == token_hash,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > now,
            )
            .values(used_at=now)
            .returning(RefreshToken)
        )
        return (await self._session.scalars(statement)).one_or_none()

    async def find(self, *, token_hash: str) -> RefreshToken | None:
        return await self._session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))

    async def revoke_family(self, *, family_id: uuid.UUID, now: dt.datetime) -> None:
        await self._session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def revoke_user_families(self, *, user_id: uuid.UUID, now: dt.datetime) -> None:
        """Revoke every live token of the user: all their sign-ins end."""
        await self._session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def delete_expired(self, *, before: dt.datetime, limit: int) -> int:
        """Delete up to `limit` tokens that expired before `before` (ix_refresh_tokens_expires_at); how many."""
        return await self._delete(RefreshToken.expires_at < before, RefreshToken.expires_at, limit=limit)

    async def delete_revoked(self, *, before: dt.datetime, limit: int) -> int:
        """Delete up to `limit` tokens revoked before `before` (ix_refresh_tokens_revoked_at); how many."""
        return await self._delete(RefreshToken.revoked_at < before, RefreshToken.revoked_at, limit=limit)

    async def _delete(self, condition: ColumnElement[bool], order: Any, *, limit: int) -> int:
        # A token being spent or revoked right now is locked by that call and skipped.
        doomed = select(RefreshToken.id).where(condition).order_by(order).limit(limit).with_for_update(skip_locked=True)
        result = await self._session.execute(delete(RefreshToken).where(RefreshToken.id.in_(doomed)))
        return cast(CursorResult[Any], result).rowcount
