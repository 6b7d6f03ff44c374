"""The composition root: the one place that builds services and wires their dependencies.

`Infrastructure` is built once per process at start-up (engine, codecs). Each RPC opens a
`UnitOfWork`: one session, one transaction, and the services built on it.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.config import Settings
from server.db import create_engine, create_sessionmaker
from server.idempotency.repository import IdempotencyRepository
from server.idempotency.service import IdempotencyService
from server.pagination import PageTokenCodec
from server.workspaces.repository import WorkspaceRepository
from server.workspaces.service import IWorkspaceService, WorkspaceService


@dataclass(frozen=True)
class Infrastructure:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    page_tokens: PageTokenCodec

    @classmethod
    def build(cls, settings: Settings) -> "Infrastructure":
        engine = create_engine(settings)
        return cls(
            settings=settings,
            engine=engine,
            sessions=create_sessionmaker(engine),
            page_tokens=PageTokenCodec(settings.secret_key.get_secret_value()),
        )

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator["UnitOfWork"]:
        """One transaction: committed when the block ends normally, rolled back on an exception."""
        async with self.sessions() as session, session.begin():
            yield UnitOfWork(self, session)

    async def close(self) -> None:
        await self.engine.dispose()


class UnitOfWork:
    """The services of one transaction, built lazily on its session."""

    def __init__(self, infrastructure: Infrastructure, session: AsyncSession) -> None:
        self._infrastructure = infrastructure
        self.session = session

    @cached_property
    def idempotency(self) -> IdempotencyService:
        return IdempotencyService(IdempotencyRepository(self.session))

    @cached_property
    def workspaces(self) -> IWorkspaceService:
        return WorkspaceService(
            repository=WorkspaceRepository(self.session),
            idempotency=self.idempotency,
            page_tokens=self._infrastructure.page_tokens,
        )
