"""Every statement over `idempotency_keys`: claiming a (scope, caller, key) before the work,
recording what the first call created, and the retention job's deletes.
"""

import datetime as dt
import uuid
from typing import Any, Protocol, cast

from sqlalchemy import bindparam, delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import CursorResult
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

    async def delete_created_before(self, *, before: dt.datetime, limit: int) -> int:
        """Delete up to `limit` keys made before `before`, oldest first (ix_idempotency_keys_created_at);
        how many. A key a call is claiming or completing right now is locked by it and skipped."""
        doomed = (
            select(IdempotencyKey.scope, IdempotencyKey.key)
            .where(IdempotencyKey.created_at < before)
            .order_by(IdempotencyKey.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        result = await self._session.execute(
            delete(IdempotencyKey).where(tuple_(IdempotencyKey.scope, IdempotencyKey.key).in_(doomed))
        )
        return cast(CursorResult[Any], result).rowcount
