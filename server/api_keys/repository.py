"""Every statement over `api_keys` and `api_keys_roles` (the roles a key holds, by role id)."""

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Protocol

import sqlalchemy.exc
from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.api_keys.models import ApiKey, ApiKeyRole
from server.db import violated_constraint

_PREFIX_CONSTRAINT = "uq_api_keys_prefix"


class IApiKeyRepository(Protocol):
    async def add(
        self,
        *,
        name: str,
        prefix: str,
        secret_hash: str,
        role_ids: Sequence[uuid.UUID],
        created_by_user_id: uuid.UUID | None,
    ) -> ApiKey | None: ...
    async def get(self, api_key_id: uuid.UUID) -> ApiKey | None: ...
    async def list(self, *, include_revoked: bool, after: uuid.UUID | None, limit: int) -> list[ApiKey]: ...
    async def revoke(self, api_key_id: uuid.UUID, *, now: dt.datetime) -> ApiKey | None: ...


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(
        self,
        *,
        name: str,
        prefix: str,
        secret_hash: str,
        role_ids: Sequence[uuid.UUID],
        created_by_user_id: uuid.UUID | None,
    ) -> ApiKey | None:
        """The new key, or None when another key already has `prefix` (the caller draws again).

        The insert runs in a savepoint so that a prefix collision leaves the transaction usable.
        """
        api_key = ApiKey(
            name=name,
            prefix=prefix,
            secret_hash=secret_hash,
            role_links=[ApiKeyRole(role_id=role_id) for role_id in role_ids],
            created_by_user_id=created_by_user_id,
            revoked_at=None,
        )
        try:
            async with self._session.begin_nested():
                self._session.add(api_key)
                await self._session.flush()
        except sqlalchemy.exc.IntegrityError as error:
            if violated_constraint(error) == _PREFIX_CONSTRAINT:
                return None
            raise
        return api_key

    async def get(self, api_key_id: uuid.UUID) -> ApiKey | None:
        return await self._session.get(ApiKey, api_key_id)

    async def list(self, *, include_revoked: bool, after: uuid.UUID | None, limit: int) -> list[ApiKey]:
        """`limit` keys after `after` in id (= creation) order; ids are UUIDv7."""
        statement: Select[ApiKey] = select(ApiKey).order_by(ApiKey.id).limit(limit)
        if not include_revoked:
            statement = statement.where(ApiKey.revoked_at.is_(None))
        if after is not None:
            statement = statement.where(ApiKey.id > after)
        return list(await self._session.scalars(statement))

    async def revoke(self, api_key_id: uuid.UUID, *, now: dt.datetime) -> ApiKey | None:
        """Revoke a working key; None when no working key has this id (missing or already revoked)."""
        statement = (
            update(ApiKey)
            .where(ApiKey.id == api_key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now, updated_at=now)
            .returning(ApiKey)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        api_key = (await self._session.scalars(statement)).one_or_none()
        if api_key is not None:
            # UPDATE ... RETURNING does not run the relationship loaders, and an AsyncSession cannot
            # load them lazily.
            await self._session.refresh(api_key, ["role_links"])
        return api_key
