"""Every statement over `outbox_messages`: rows added in the writing transaction, the relay's claim
(FOR UPDATE SKIP LOCKED), publication marks and backlog count, and the retention job's deletes.
"""

import datetime as dt
import uuid
from typing import Any, Protocol, cast

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import first_id_at, new_id, utcnow
from server.outbox.models import OutboxMessage
from server.read_pool import DirectTransaction, PreparedRead
from server.tracing import outbox_context

_ADD = insert(OutboxMessage).values(
    id=bindparam("id"),
    topic=bindparam("topic"),
    payload=bindparam("payload"),
    trace_context=bindparam("trace_context"),
    created_at=bindparam("created_at"),
    attempts=0,
)
_ADD_PREPARED = PreparedRead(_ADD)


class IOutbox(Protocol):
    async def add(self, topic: str, payload: dict[str, Any]) -> None: ...


class OutboxRepository:
    def __init__(self, session: AsyncSession, *, direct: DirectTransaction | None = None) -> None:
        self._session = session
        # A unit of work on asyncpg directly: the statements that have a direct form run there.
        self._direct = direct

    async def add(self, topic: str, payload: dict[str, Any]) -> None:
        """Record background work; it is published only if the caller's transaction commits."""
        if self._direct is not None:
            parameters = {
                "id": new_id(),
                "topic": topic,
                "payload": payload,
                "trace_context": outbox_context() or None,
                "created_at": utcnow(),
            }
            # Written just before the commit, with the transaction's other messages (one round trip).
            self._direct.defer(_ADD_PREPARED, parameters)
            return
        self._session.add(OutboxMessage(topic=topic, payload=payload, trace_context=outbox_context() or None))
        await self._session.flush()

    async def claim_pending(self, *, limit: int) -> list[OutboxMessage]:
        """The oldest unpublished messages, locked for this transaction; others skip them."""
        statement = (
            select(OutboxMessage)
            .where(OutboxMessage.published_at.is_(None))
            .order_by(OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(await self._session.scalars(statement))

    async def mark_published(self, message_ids: list[uuid.UUID]) -> None:
        if message_ids:
            await self._session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(message_ids))
                .values(published_at=utcnow(), attempts=OutboxMessage.attempts + 1)
            )

    async def note_error(self, message_id: uuid.UUID, error: str) -> None:
        await self._session.execute(
            update(OutboxMessage).where(OutboxMessage.id == message_id).values(last_error=error[:1000])
        )

    async def count_pending(self) -> int:
        statement = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None))
        return int(await self._session.scalar(statement) or 0)

    async def delete_published(self, *, before: dt.datetime, limit: int) -> int:
        """Delete up to `limit` messages published before `before`, oldest first; how many.

        The rows are a range of the primary key (ids are UUIDv7: a message published before
        `before` was made before it), so a batch reads no row younger than the window; rows a
        relay holds are skipped (SKIP LOCKED), never waited for.
        """
        doomed = (
            select(OutboxMessage.id)
            .where(OutboxMessage.id < first_id_at(before), OutboxMessage.published_at < before)
            .order_by(OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        result = await self._session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(doomed)))
        return cast(CursorResult[Any], result).rowcount
