"""The auth module's reads: callers' standing, from the views it owns (`server.auth.models`).

A caller's standing is read in one round trip on every RPC whose caller is not cached, served by
primary keys and indexes only (the views are inlined by PostgreSQL). They run on an
autocommit connection of their own (no ORM session): the server's hot path.
"""

import uuid
from typing import Protocol

from sqlalchemy import Uuid, bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.models import standing_api_keys, standing_memberships, standing_sessions, standing_users
from server.auth.schemas import ApiKeyStandingSchema, UserStandingSchema

_users, _memberships, _sessions, _keys = (
    standing_users.c,
    standing_memberships.c,
    standing_sessions.c,
    standing_api_keys.c,
)

_USER_STANDING = select(
    _users.active,
    _users.superuser,
    _users.permissions,
    select(_memberships.role)
    .where(_memberships.user_id == _users.user_id, _memberships.workspace_id == bindparam("workspace_id", type_=Uuid))
    .scalar_subquery()
    .label("workspace_role"),
    exists()
    .where(_sessions.family_id == bindparam("family_id"), _sessions.revoked_at.is_not(None))
    .label("session_revoked"),
).where(_users.user_id == bindparam("user_id"))

_API_KEY_STANDING = select(_keys.id, _keys.secret_hash, _keys.revoked, _keys.permissions).where(
    _keys.prefix == bindparam("prefix")
)


class IStandingRepository(Protocol):
    async def user_standing(
        self, *, user_id: uuid.UUID, family_id: uuid.UUID, workspace_id: uuid.UUID | None
    ) -> UserStandingSchema | None: ...
    async def api_key_standing(self, *, prefix: str) -> ApiKeyStandingSchema | None: ...


class StandingRepository:
    """Standings read on `engine` (the server's autocommit engine: one pooled connection per read)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def user_standing(
        self, *, user_id: uuid.UUID, family_id: uuid.UUID, workspace_id: uuid.UUID | None
    ) -> UserStandingSchema | None:
        parameters = {"user_id": user_id, "family_id": family_id, "workspace_id": workspace_id}
        async with self._engine.connect() as connection:
            row = (await connection.execute(_USER_STANDING, parameters)).mappings().one_or_none()
        return None if row is None else UserStandingSchema.model_validate(dict(row))

    async def api_key_standing(self, *, prefix: str) -> ApiKeyStandingSchema | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(_API_KEY_STANDING, {"prefix": prefix})).mappings().one_or_none()
        return None if row is None else ApiKeyStandingSchema.model_validate(dict(row))
