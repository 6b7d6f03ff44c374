"""Every statement over `idempotency_keys`: claiming a (scope, caller, key) before the work,
recording what the first call created, and the retention job's deletes.
"""

import datetime as dt
import uuid
from typing import Any, Protocol, cast

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from server.idempotency.models import IdempotencyKey
from server.idempotency.schemas import IdempotencyRecordSchema


class IIdempotencyRepository(Protocol):
    async def claim(self, *, scope: str, key: str, fingerprint: str) -> bool: ...
    async def get(self, *, scope: str, key: str) -> IdempotencyRecordSchema | None: ...
    async def complete(self, *, scope: str, key: str, resource_id: uuid.UUID) -> None: ...


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def claim(self, *, scope: str, key: str, fingerprint: str) -> bool:
        """Insert the key; False if another call holds it.

        A concurrent transaction holding the same key makes this wait for its outcome, so after
        a False `get` sees the winner's committed record.
        """
        statement = (
            insert(IdempotencyKey)
            .values(scope=scope, key=key, fingerprint=fingerprint)
            .on_conflict_do_nothing()
            .returning(IdempotencyKey.key)
        )
        return (await self._session.execute(statement)).scalar_one_or_none() is not None

    async def get(self, *, scope: str, key: str) -> IdempotencyRecordSchema | None:
        row = await self._session.scalar(
            select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        )
        return None if row is None else IdempotencyRecordSchema.model_validate(row)

    async def complete(self, *, scope: str, key: str, resource_id: uuid.UUID) -> None:
        await self._session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
            .values(resource_id=resource_id)
        )

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
