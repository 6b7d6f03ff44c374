from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from server.outbox.models import OutboxMessage


class IOutbox(Protocol):
    async def add(self, topic: str, payload: dict[str, Any]) -> None: ...


class OutboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, topic: str, payload: dict[str, Any]) -> None:
        """Record background work; it is published only if the caller's transaction commits."""
        self._session.add(OutboxMessage(topic=topic, payload=payload))
        await self._session.flush()
