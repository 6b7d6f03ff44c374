import datetime as dt
import uuid
from typing import Protocol

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from server.auth.models import RefreshToken
from server.auth.schemas import ApiKeyStandingSchema, UserStandingSchema

# The caller's standing in one round trip: every RPC that needs a caller runs it, so it is
# written out in SQL and served by primary keys and indexes only.
_USER_STANDING = text(
    """
    SELECT u.is_active AS active,
           u.is_superuser AS superuser,
           ARRAY(SELECT DISTINCT p
                   FROM users_roles ur
                   JOIN roles r ON r.id = ur.role_id, unnest(r.permissions) AS p
                  WHERE ur.user_id = u.id) AS permissions,
           (SELECT wu.role::text FROM workspaces_users wu
             WHERE wu.user_id = u.id AND wu.workspace_id = CAST(:workspace_id AS uuid)) AS workspace_role,
           EXISTS (SELECT 1 FROM refresh_tokens rt
                    WHERE rt.family_id = :family_id AND rt.revoked_at IS NOT NULL) AS session_revoked
      FROM users u
     WHERE u.id = :user_id
    """
)

_API_KEY_STANDING = text(
    """
    SELECT k.id,
           k.secret_hash,
           k.revoked_at IS NOT NULL AS revoked,
           ARRAY(SELECT DISTINCT p
                   FROM api_keys_roles kr
                   JOIN roles r ON r.id = kr.role_id, unnest(r.permissions) AS p
                  WHERE kr.api_key_id = k.id) AS permissions
      FROM api_keys k
     WHERE k.prefix = :prefix
    """
)


class IAuthRepository(Protocol):
    async def user_standing(
        self, *, user_id: uuid.UUID, family_id: uuid.UUID, workspace_id: uuid.UUID | None
    ) -> UserStandingSchema | None: ...
    async def api_key_standing(self, *, prefix: str) -> ApiKeyStandingSchema | None: ...
    async def add_refresh_token(
        self, *, user_id: uuid.UUID, family_id: uuid.UUID, token_hash: str, expires_at: dt.datetime
    ) -> None: ...
    async def spend_refresh_token(self, *, token_hash: str, now: dt.datetime) -> RefreshToken | None: ...
    async def find_refresh_token(self, *, token_hash: str) -> RefreshToken | None: ...
    async def revoke_family(self, *, family_id: uuid.UUID, now: dt.datetime) -> None: ...
    async def revoke_user_tokens(self, *, user_id: uuid.UUID, now: dt.datetime) -> None: ...


class StandingRepository:
    """The caller's standing, on a session or on a bare connection (the server's hot path)."""

    def __init__(self, session: AsyncSession | AsyncConnection) -> None:
        self._session = session

    async def user_standing(
        self, *, user_id: uuid.UUID, family_id: uuid.UUID, workspace_id: uuid.UUID | None
    ) -> UserStandingSchema | None:
        row = (
            (
                await self._session.execute(
                    _USER_STANDING, {"user_id": user_id, "family_id": family_id, "workspace_id": workspace_id}
                )
            )
            .mappings()
            .one_or_none()
        )
        return None if row is None else UserStandingSchema.model_validate(dict(row))

    async def api_key_standing(self, *, prefix: str) -> ApiKeyStandingSchema | None:
        row = (await self._session.execute(_API_KEY_STANDING, {"prefix": prefix})).mappings().one_or_none()
        return None if row is None else ApiKeyStandingSchema.model_validate(dict(row))


class AuthRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def user_standing(
        self, *, user_id: uuid.UUID, family_id: uuid.UUID, workspace_id: uuid.UUID | None
    ) -> UserStandingSchema | None:
        return await StandingRepository(self._session).user_standing(
            user_id=user_id, family_id=family_id, workspace_id=workspace_id
        )

    async def api_key_standing(self, *, prefix: str) -> ApiKeyStandingSchema | None:
        return await StandingRepository(self._session).api_key_standing(prefix=prefix)

    async def add_refresh_token(
        self, *, user_id: uuid.UUID, family_id: uuid.UUID, token_hash: str, expires_at: dt.datetime
    ) -> None:
        self._session.add(
            RefreshToken(user_id=user_id, family_id=family_id, token_hash=token_hash, expires_at=expires_at)
        )
        await self._session.flush()

    async def spend_refresh_token(self, *, token_hash: str, now: dt.datetime) -> RefreshToken | None:
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

    async def find_refresh_token(self, *, token_hash: str) -> RefreshToken | None:
        return await self._session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))

    async def revoke_family(self, *, family_id: uuid.UUID, now: dt.datetime) -> None:
        await self._session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def revoke_user_tokens(self, *, user_id: uuid.UUID, now: dt.datetime) -> None:
        await self._session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
