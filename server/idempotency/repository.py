"""Every statement over `idempotency_keys`: claiming a (scope, caller, key) before the work, and
recording what the first call created.
"""

import uuid
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
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
