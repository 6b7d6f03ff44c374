"""A per-process cache of callers' standing, emptied the moment the database says it may be stale.

Every pooled connection of the engine LISTENs on `adplane_standing`; triggers on the tables a
standing is read from (users, refresh_tokens, workspaces_users, users_roles, roles, api_keys,
api_keys_roles) NOTIFY it at commit, whichever path wrote. Any notification empties the whole
cache: such changes are rare next to reads, and a coarse rule cannot miss a case.

How "at once" holds:
- in the process that made the change, the connection that committed listens too, and PostgreSQL
  delivers a session's own notification before the COMMIT returns; the cache is empty before the
  RPC that made the change answers;
- in other processes, idle pooled connections get the notification within milliseconds;
- the cache answers only while at least one connection listens; when the last one closes (a
  restart, a network failure: notifications may be missed) it is emptied, and so it is when a
  connection starts listening after a time without any; entries also live at most `max_age`
  seconds;
- a standing read while a change commits is not kept: reads remember the cache's generation and
  only store their result if no notification came in between.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.schemas import ApiKeyStandingSchema, UserStandingSchema

CHANNEL = "adplane_standing"

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
        # Connections listening now; with none, nothing would tell the cache of a change.
        self._listening = 0

    def attach(self, engine: AsyncEngine) -> None:
        """Listen on every connection `engine` opens from now on."""
        event.listen(engine.sync_engine, "connect", self._on_connect)

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.run_async(self._listen)

    async def _listen(self, connection: Any) -> None:
        await connection.add_listener(CHANNEL, self._on_notification)
        connection.add_termination_listener(self._on_termination)
        if self._listening <= 0:
            # Nobody listened until now: whatever was kept may have missed a notification.
            self.clear()
        self._listening += 1

    def _on_termination(self, _connection: Any) -> None:
        # While another connection listens, nothing was missed (each one gets every notification);
        # pools open and close connections as load comes and goes, which must not empty the cache.
        self._listening -= 1
        if self._listening <= 0:
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
        entry = entries.get(key)
        if entry is None or self._listening <= 0:
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
