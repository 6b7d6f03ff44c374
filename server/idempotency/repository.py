"""Every statement over `idempotency_keys`: claiming a (scope, caller, key) before the work, and
recording what the first call created.
"""

import uuid
from typing import Protocol

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import utcnow
from server.idempotency.models import IdempotencyKey
from server.idempotency.schemas import IdempotencyRecordSchema
from server.read_pool import DirectTransaction, PreparedRead

_CLAIM = (
    insert(IdempotencyKey)
    .values(
        scope=bindparam("scope"),
        key=bindparam("key"),
        fingerprint=bindparam("fingerprint"),
        resource_id=bindparam("resource_id"),
        created_at=bindparam("created_at"),
    )
    .on_conflict_do_nothing()
    .returning(IdempotencyKey.key)
)
_CLAIM_PREPARED = PreparedRead(_CLAIM)
_GET = select(IdempotencyKey.fingerprint, IdempotencyKey.resource_id).where(
    IdempotencyKey.scope == bindparam("scope"), IdempotencyKey.key == bindparam("key")
)
_GET_PREPARED = PreparedRead(_GET)
_COMPLETE = (
    update(IdempotencyKey)
    .where(IdempotencyKey.scope == bindparam("of_scope"), IdempotencyKey.key == bindparam("of_key"))
    .values(resource_id=bindparam("set_resource_id"))
)
_COMPLETE_PREPARED = PreparedRead(_COMPLETE)


class IIdempotencyRepository(Protocol):
    async def claim(self, *, scope: str, key: str, fingerprint: str, resource_id: uuid.UUID | None = None) -> bool: ...
    async def get(self, *, scope: str, key: str) -> IdempotencyRecordSchema | None: ...
    async def complete(self, *, scope: str, key: str, resource_id: uuid.UUID) -> None: ...


class IdempotencyRepository:
    def __init__(self, session: AsyncSession, *, direct: DirectTransaction | None = None) -> None:
        self._session = session
        # A unit of work on asyncpg directly: the statements that have a direct form run there.
        self._direct = direct

    async def claim(self, *, scope: str, key: str, fingerprint: str, resource_id: uuid.UUID | None = None) -> bool:
        """Insert the key (with what it will create, when that is known before); False if another
        call holds it.

        A concurrent transaction holding the same key makes this wait for its outcome, so after
        a False `get` sees the winner's committed record.
        """
        parameters = {
            "scope": scope,
            "key": key,
            "fingerprint": fingerprint,
            "resource_id": resource_id,
            "created_at": utcnow(),
        }
        if self._direct is not None:
            return await self._direct.one(_CLAIM_PREPARED, parameters) is not None
        return (await self._session.execute(_CLAIM, parameters)).scalar_one_or_none() is not None

    async def get(self, *, scope: str, key: str) -> IdempotencyRecordSchema | None:
        parameters = {"scope": scope, "key": key}
        if self._direct is not None:
            row = await self._direct.one(_GET_PREPARED, parameters)
        else:
            row = (await self._session.execute(_GET, parameters)).one_or_none()
        return (
            None
            if row is None
            else IdempotencyRecordSchema(scope=scope, key=key, fingerprint=row[0], resource_id=row[1])
        )

    async def complete(self, *, scope: str, key: str, resource_id: uuid.UUID) -> None:
        parameters = {"of_scope": scope, "of_key": key, "set_resource_id": resource_id}
        if self._direct is not None:
            await self._direct.execute(_COMPLETE_PREPARED, parameters)
            return
        await self._session.execute(_COMPLETE, parameters)
