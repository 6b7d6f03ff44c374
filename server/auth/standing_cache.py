"""A per-process cache of callers' standing, emptied the moment the database says it may be stale.

One connection per process, straight to PostgreSQL (DATABASE_DIRECT_URL: a LISTEN through
PgBouncer in transaction mode would hear nothing once its server connection went to another
client), LISTENs on `adplane_standing`; triggers on the tables a standing is read from (users,
refresh_tokens, workspaces_users, users_roles, roles, api_keys, api_keys_roles) NOTIFY it at commit,
whichever path wrote. Any notification empties the whole cache: such changes are rare next to reads,
and a coarse rule cannot miss a case.

How "at once" holds:
- in the process that made the change, the session that wrote one of those tables empties the
  cache right after its COMMIT returns (`watch_commits`), before the RPC that made the change answers;
- in other processes, the listening connection gets the notification within milliseconds;
- the cache answers only while its connection listens; when it closes (a restart, a network
  failure: notifications may be missed) the cache is emptied, and so it is when the connection
  listens again; entries also live at most `max_age` seconds;
- a standing read while a change commits is not kept: reads remember the cache's generation and
  only store their result if no notification came in between.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import asyncpg
import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.auth.schemas import ApiKeyStandingSchema, UserStandingSchema
from server.db import sync_session_class

CHANNEL = "adplane_standing"
# How long the listener waits before connecting again after losing its connection.
RECONNECT_SECONDS = 1.0

# Writes that can change a standing (the triggers' tables; inserts only where a row grants something).
_STANDING_WRITE = re.compile(
    r"""^\s*(?:(?:UPDATE|DELETE\s+FROM)\s+"?(?:users|refresh_tokens|workspaces_users|users_roles|roles|api_keys|api_keys_roles)"""
    r"""|INSERT\s+INTO\s+"?(?:workspaces_users|users_roles|api_keys_roles))"?[\s(]""",
    re.IGNORECASE,
)
_CHANGED = "adplane_standing_changed"
_CONNECTION_INFO = "adplane_connection_info"

logger = structlog.get_logger("adplane.standing_cache")

type UserKey = tuple[uuid.UUID, uuid.UUID, uuid.UUID | None]


class StandingCache:
    def __init__(self, *, max_entries: int = 50_000, max_age: float = 60.0) -> None:
        self._max_entries = max_entries
        self._max_age = max_age
        # key -> (standing or None for "no such caller", monotonic time it was read)
        self._users: dict[UserKey, tuple[UserStandingSchema | None, float]] = {}
        self._api_keys: dict[str, tuple[ApiKeyStandingSchema | None, float]] = {}
        self.generation = 0
        self.notifications = 0
        # 1 while the connection listens; with none, nothing would tell the cache of a change.
        self._listening = 0
        self._connect: Callable[[], Awaitable[asyncpg.Connection]] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._connection: asyncpg.Connection | None = None
        self._listens = asyncio.Event()

    def attach(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        connect: Callable[[], Awaitable[asyncpg.Connection]],
    ) -> None:
        """Listen on a connection of its own to PostgreSQL itself (`connect` opens one), opened
        when the cache is first used or by `start`; and empty the cache when a session of
        `sessions` commits a write that can change a standing."""
        self._connect = connect
        event.listen(engine.sync_engine, "before_cursor_execute", _note_standing_write)
        event.listen(sync_session_class(sessions), "after_begin", _remember_connection)
        event.listen(sync_session_class(sessions), "after_commit", self._after_commit)

    async def start(self) -> None:
        """Listen now (the server, before it serves), waiting until the connection listens."""
        self._ensure_listener()
        async with asyncio.timeout(RECONNECT_SECONDS * 5):
            await self._listens.wait()

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        self._stop_listening()

    @property
    def listening(self) -> bool:
        return self._listening > 0

    def drop_connection(self) -> None:
        """Lose the listening connection, as a network failure would (tests); it reconnects."""
        if self._connection is not None:
            self._connection.terminate()

    def _ensure_listener(self) -> None:
        if self._listener is None and self._connect is not None:
            self._listener = asyncio.get_running_loop().create_task(self._listen_forever())

    async def _listen_forever(self) -> None:
        assert self._connect is not None
        while True:
            lost = asyncio.Event()
            try:
                self._connection = await self._connect()
                self._connection.add_termination_listener(partial(_set, lost))
                await self._connection.add_listener(CHANNEL, self._on_notification)
                # Whatever was kept while nobody listened may have missed a notification.
                self.clear()
                self._listening = 1
                self._listens.set()
                await lost.wait()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
                logger.warning("standing cache not listening", error=repr(error))
            finally:
                self._stop_listening()
            await asyncio.sleep(RECONNECT_SECONDS)

    def _stop_listening(self) -> None:
        self._listening = 0
        self._listens.clear()
        self.clear()
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            connection.terminate()

    def _after_commit(self, session: Any) -> None:
        # Called after the COMMIT returned, before the session gives its connection back.
        info = session.info.pop(_CONNECTION_INFO, None)
        if info is not None and info.pop(_CHANGED, False):
            self.clear()

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, _payload: str) -> None:
        self.notifications += 1
        self.clear()

    def clear(self) -> None:
        self.generation += 1
        self._users.clear()
        self._api_keys.clear()

    def user(self, key: UserKey) -> tuple[bool, UserStandingSchema | None]:
        """(found, standing)."""
        return self._get(self._users, key)

    def api_key(self, prefix: str) -> tuple[bool, ApiKeyStandingSchema | None]:
        return self._get(self._api_keys, prefix)

    def put_user(self, key: UserKey, standing: UserStandingSchema | None, *, generation: int) -> None:
        """Keep a standing read while the cache was at `generation` (dropped if it moved on)."""
        self._put(self._users, key, standing, generation)

    def put_api_key(self, prefix: str, standing: ApiKeyStandingSchema | None, *, generation: int) -> None:
        self._put(self._api_keys, prefix, standing, generation)

    def _get[K, V](self, entries: dict[K, tuple[V | None, float]], key: K) -> tuple[bool, V | None]:
        if self._listening <= 0:
            self._ensure_listener()
            return False, None
        entry = entries.get(key)
        if entry is None:
            return False, None
        if time.monotonic() - entry[1] > self._max_age:
            del entries[key]
            return False, None
        return True, entry[0]

    def _put[K, V](self, entries: dict[K, tuple[V | None, float]], key: K, value: V | None, generation: int) -> None:
        if generation != self.generation or self._listening <= 0:
            return
        if len(entries) >= self._max_entries:
            del entries[next(iter(entries))]
        entries[key] = (value, time.monotonic())


def _set(flag: asyncio.Event, _connection: object) -> None:
    flag.set()


def changes_standing(statement: str) -> bool:
    """Whether `statement` writes a table a standing is read from (as the triggers NOTIFY for)."""
    return statement[:1] in "UDIudi" and _STANDING_WRITE.match(statement) is not None


def _note_standing_write(connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
    if changes_standing(statement):
        connection.info[_CHANGED] = True


def _remember_connection(session: Any, _transaction: Any, connection: Any) -> None:
    # The connection's own info (it outlives the session); only this transaction uses it until commit.
    connection.info.pop(_CHANGED, None)
    session.info[_CONNECTION_INFO] = connection.info
