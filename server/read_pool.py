"""Hot reads and hot writes straight on asyncpg: a pool of connections beside SQLAlchemy's engine.

A Get or a List of the hot tables is one SELECT of committed data. Through SQLAlchemy's asyncio
layer that SELECT costs a pool checkout and a greenlet switch into SQLAlchemy's synchronous core per
call, plus its execution and result machinery: under load that was more CPU than all the rest of
the RPC's own code (`python -m bench.read_rpc --profile DIR` shows it). Here the same statement is
one asyncpg call on a pooled connection, where asyncpg keeps it prepared.

The statements stay SQLAlchemy Core, written in the repository that owns their table like every
other statement; `PreparedRead` compiles one once, for asyncpg. Only single reads of committed data
belong here: whatever runs inside a transaction, or must see what the transaction wrote, goes
through the unit of work's session. Rows come back as asyncpg Records (tuples in column order).

The hot writes (RequestAccount, ApproveRequest) run their whole transaction on one of these
connections (`ReadPool.transaction`, a unit of work opened with `direct=True`): the same reasoning,
for every statement of the write (bench/README.md, "The write path").
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.sql import Insert, Select, Update

from server.metrics import DB_CHECKOUTS, DB_CONNECTIONS_IN_USE, DB_CONNECTIONS_LIMIT, DB_CONNECTIONS_OPEN
from server.outages import is_outage
from server.tracing import database_span

_DIALECT = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it unannotated


class PreparedRead:
    """A Core statement compiled once for asyncpg: its SQL with `$n` parameters, and which named
    bound parameter goes into each position. A SELECT for the read pool; in a direct transaction
    an INSERT or UPDATE too."""

    def __init__(self, statement: Select[*tuple[Any, ...]] | Insert | Update) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("expanding parameters (IN lists) are rendered per call: run such a read on a session")
        self.sql = compiled.string
        self._names = tuple(compiled.positiontup or ())
        # Values the statement carries itself (literals SQLAlchemy binds, bindparams given a value).
        self._fixed = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}

    def arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        if self._fixed:
            parameters = {**self._fixed, **parameters}
        return [parameters[name] for name in self._names]


class ReadPool:
    """asyncpg connections to one database (`connect_arguments`: `server.db.connect_arguments`),
    opened on first use (inside the event loop) or all at once by `open`.

    A read waits for a free connection as long as its call allows (a timeout here would cost a
    timer per read); the call's deadline, or its cancellation, ends the wait like the query.
    """

    def __init__(
        self,
        connect_arguments: Mapping[str, Any],
        *,
        size: int,
        fallback: ReadPool | None = None,
        on_outage: Callable[[], None] | None = None,
        unnamed: bool = False,
    ) -> None:
        """`fallback`: where a read goes when this pool's database is out of reach (a replica's
        reads go to the primary), after calling `on_outage`. `unnamed`: behind PgBouncer in
        transaction mode (`connect_arguments` without a statement cache), see `_DescribedOnce`."""
        self._connect_arguments = dict(connect_arguments)
        self._unnamed = unnamed
        self._fallback = fallback
        self._on_outage = on_outage
        self._size = size
        self._pool: asyncpg.Pool | None = None
        self._starting: asyncio.Lock | None = None
        # Called with each statement's SQL before it runs (tests count statements with it).
        self.observers: list[Callable[[str], None]] = []
        # time.monotonic() when a statement last came back (the readiness probe asks).
        self.answered_at = -math.inf
        DB_CONNECTIONS_LIMIT.inc(size)

    async def one(self, read: PreparedRead, parameters: Mapping[str, Any]) -> Any | None:
        """The first row `read` returns, or None."""
        return await self._run(read, parameters, every_row=False)

    async def all(self, read: PreparedRead, parameters: Mapping[str, Any]) -> Sequence[Any]:
        """Every row `read` returns."""
        rows: Sequence[Any] = await self._run(read, parameters, every_row=True)
        return rows

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[DirectTransaction]:
        """One transaction on one connection of the pool: committed when the block ends normally,
        rolled back on an exception. Waits for a connection like a read."""
        pool = self._pool or await self._start(opened=1)
        DB_CHECKOUTS.inc()
        DB_CONNECTIONS_IN_USE.inc()
        try:
            async with pool.acquire() as connection, connection.transaction():
                transaction = DirectTransaction(connection, self)
                yield transaction
                await transaction.write_deferred()
            self.answered_at = time.monotonic()
        finally:
            DB_CONNECTIONS_IN_USE.dec()

    async def open(self) -> None:
        """Open every connection now (the server, before it serves) rather than on first use."""
        await self._start(opened=self._size)

    async def _run(self, read: PreparedRead, parameters: Mapping[str, Any], *, every_row: bool) -> Any:
        if self._fallback is None:
            return await self._read(read, parameters, every_row=every_row)
        try:
            return await self._read(read, parameters, every_row=every_row)
        except Exception as error:
            if not is_outage(error):
                raise
            if self._on_outage is not None:
                self._on_outage()
            return await self._fallback._run(read, parameters, every_row=every_row)

    async def _read(self, read: PreparedRead, parameters: Mapping[str, Any], *, every_row: bool) -> Any:
        pool = self._pool or await self._start(opened=1)
        self._observe(read)
        with database_span(read.sql):
            DB_CHECKOUTS.inc()
            DB_CONNECTIONS_IN_USE.inc()
            try:
                async with pool.acquire() as connection:
                    if self._unnamed:
                        rows = await connection.run_described(read.sql, read.arguments(parameters), every_row)
                    else:
                        fetch = connection.fetch if every_row else connection.fetchrow
                        rows = await fetch(read.sql, *read.arguments(parameters))
                    self.answered_at = time.monotonic()
                    return rows
            finally:
                DB_CONNECTIONS_IN_USE.dec()

    def _observe(self, read: PreparedRead) -> None:
        for observer in self.observers:
            observer(read.sql)

    async def _start(self, *, opened: int) -> asyncpg.Pool:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    connection_class=_DescribedOnce if self._unnamed else asyncpg.Connection,
                    **self._connect_arguments,
                    # Opened now; beyond the one kept at all times, idle connections close after
                    # asyncpg's inactivity limit and reopen on demand.
                    init_size=opened,
                    min_size=1,
                    max_size=self._size,
                    init=_prepare_connection,
                    # Each use is one autocommit statement or one transaction that ends with its
                    # block: nothing to reset between uses (the default reset is a round trip per
                    # release). A transaction left open (cancelled as it ended) is rolled back by
                    # asyncpg before any reset.
                    reset=_nothing_to_reset,
                )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class DirectTransaction:
    """The statements of one transaction on an asyncpg connection (`ReadPool.transaction`)."""

    def __init__(self, connection: asyncpg.Connection, pool: ReadPool) -> None:
        self._connection = connection
        self._pool = pool
        self._deferred: dict[PreparedRead, list[Mapping[str, Any]]] = {}

    def defer(self, statement: PreparedRead, parameters: Mapping[str, Any]) -> None:
        """Run `statement` just before the commit, with the other rows deferred for it: rows that
        nothing in the transaction reads back (outbox messages) cost one round trip together."""
        self._deferred.setdefault(statement, []).append(parameters)

    async def write_deferred(self) -> None:
        deferred, self._deferred = self._deferred, {}
        for statement, rows in deferred.items():
            if len(rows) == 1:
                await self.execute(statement, rows[0])
            else:
                await self.execute_many(statement, rows)

    async def one(self, statement: PreparedRead, parameters: Mapping[str, Any]) -> Any | None:
        """The first row `statement` returns (RETURNING for a write), or None."""
        self._pool._observe(statement)
        with database_span(statement.sql):
            return await self._connection.fetchrow(statement.sql, *statement.arguments(parameters))

    async def execute(self, statement: PreparedRead, parameters: Mapping[str, Any]) -> None:
        self._pool._observe(statement)
        with database_span(statement.sql):
            await self._connection.execute(statement.sql, *statement.arguments(parameters))

    async def execute_many(self, statement: PreparedRead, rows: Sequence[Mapping[str, Any]]) -> None:
        """`statement` once per row, in one round trip (asyncpg pipelines executemany)."""
        self._pool._observe(statement)
        with database_span(statement.sql):
            await self._connection.executemany(statement.sql, [statement.arguments(row) for row in rows])


class _DescribedOnce(asyncpg.Connection):  # type: ignore[misc]  # asyncpg ships no annotations
    """A connection behind PgBouncer in transaction mode, which keeps each statement's description.

    Without a statement cache asyncpg asks the server to describe every statement before running
    it: two round trips per read. Here a statement is described once per connection (an unnamed
    Parse and Describe), and every later read sends it unnamed with its Parse in the batch that runs
    it (Parse, Bind, Execute, Sync: asyncpg does so for an unnamed statement when the statement cache
    is off), one round trip that PgBouncer keeps on one server connection. A statement whose result
    columns a migration changes is described again when the connection is replaced (asyncpg closes
    idle ones after five minutes; a deploy restarts the processes).
    """

    __slots__ = ("_described",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SQL -> asyncpg's state of the unnamed statement (its description and codecs).
        self._described: dict[str, Any] = {}

    async def run_described(self, sql: str, arguments: list[Any], every_row: bool) -> Any:
        state = self._described.get(sql)
        if state is None:
            # name="": unnamed, which asyncpg (statement cache off) parses again in each run's batch.
            described = await self.prepare(sql, name="")
            state = self._described[sql] = described._state
            state.mark_unprepared()  # as asyncpg does without a statement cache: Parse on every run
        # What PreparedStatement.fetch does, without a statement object per read (asyncpg refuses
        # one after its connection went back to the pool; the state lives as long as the connection).
        rows, _status, _done = await self._protocol.bind_execute(
            state, arguments, "", 0 if every_row else 1, True, None
        )
        return rows if every_row else (rows[0] if rows else None)


async def _prepare_connection(connection: asyncpg.Connection) -> None:
    # JSON(B) values in and out as Python objects, as SQLAlchemy's asyncpg dialect does.
    await connection.set_type_codec("jsonb", encoder=_dumps, decoder=json.loads, schema="pg_catalog")
    await connection.set_type_codec("json", encoder=_dumps, decoder=json.loads, schema="pg_catalog")
    DB_CONNECTIONS_OPEN.inc()
    connection.add_termination_listener(lambda _connection: DB_CONNECTIONS_OPEN.dec())


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    return None
