"""Statements through a real PgBouncer in transaction mode: with DATABASE_POOLER=pgbouncer the
engine (in transactions and in autocommit), the read pool and the readiness probe keep no prepared
statement across messages, so clients sharing PgBouncer's few server connections never meet each
other's; what asyncpg does by default fails there."""

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from devstack.pgbouncer import PgBouncer, start_pgbouncer
from server.composition import Infrastructure
from server.config import DatabasePooler, Settings
from server.db import connect_arguments
from server.read_pool import PreparedRead
from server.readiness import DatabaseProbe

pytestmark = pytest.mark.xdist_group("pgbouncer")

CLIENTS = 8
ROUNDS = 50


@pytest.fixture(scope="module")
def bouncer(postgres_server_url: str) -> Iterator[PgBouncer]:
    # Fewer server connections than clients: statements of different clients share them.
    with start_pgbouncer(postgres_server_url, pool_size=2) as running:
        yield running


@pytest.fixture
async def pooled(settings: Settings, bouncer: PgBouncer) -> AsyncIterator[Infrastructure]:
    infrastructure = Infrastructure.build(
        settings.model_copy(
            update={
                "database_url": bouncer.url_for(settings.database_url),
                "database_direct_url": settings.database_url,
                "database_pooler": DatabasePooler.PGBOUNCER,
                "database_pool_size": CLIENTS,
                "database_read_pool_size": CLIENTS,
            }
        )
    )
    yield infrastructure
    await infrastructure.close()


async def test_the_engine_the_read_pool_and_the_probe_share_pgbouncer(pooled: Infrastructure) -> None:
    await pooled.open_pools()
    read = PreparedRead(select(text("CAST(:a AS int) * 2")))

    async def client(n: int) -> None:
        for i in range(ROUNDS):
            row = await pooled.read_pool.one(read, {"a": i})
            assert row is not None
            assert row[0] == 2 * i
            async with pooled.read_engine.connect() as connection:  # autocommit, as the resolver reads
                assert await connection.scalar(text("SELECT CAST(:n AS int)"), {"n": n}) == n
            async with pooled.sessions() as session, session.begin():
                assert await session.scalar(text("SELECT CAST(:i AS int) + 1"), {"i": i}) == i + 1

    probe = DatabaseProbe(pooled)
    try:
        await asyncio.gather(*(client(n) for n in range(CLIENTS)), *(probe.check() for _ in range(3)))
    finally:
        probe.close()


async def test_direct_transactions_share_pgbouncer(pooled: Infrastructure) -> None:
    """The hot writes' transactions on the read pool (`unit_of_work(direct=True)`): several
    statements each, JSON through the pool's codec, clients interleaved on fewer server connections."""
    await pooled.open_pools()
    doubled = PreparedRead(select(text("CAST(:a AS int) * 2")))
    echoed = PreparedRead(select(text("CAST(:j AS jsonb)")))

    async def client(n: int) -> None:
        for i in range(ROUNDS):
            async with pooled.read_pool.transaction() as transaction:
                row = await transaction.one(doubled, {"a": i})
                assert row is not None
                assert row[0] == 2 * i
                row = await transaction.one(echoed, {"j": {"client": n, "round": i}})
                assert row is not None
                assert row[0] == {"client": n, "round": i}

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))


async def _shared_statements(
    arguments: dict[str, Any], run: Callable[[asyncpg.Connection, int], Awaitable[None]]
) -> None:
    connections = [await asyncpg.connect(**arguments) for _ in range(CLIENTS)]
    try:
        await asyncio.gather(*(run(connection, n) for n, connection in enumerate(connections)))
    finally:
        for connection in connections:
            connection.terminate()


# One process of a server, worker or scheduler: asyncpg's defaults, statements named
# __asyncpg_stmt_1__, __asyncpg_stmt_2__... per process.
_PROCESS = """
import asyncio, sys
import asyncpg

async def main() -> None:
    connection = await asyncpg.connect(sys.argv[1])
    for i in range(200):
        await connection.fetchval(f"SELECT $1::int + {i}", i)

asyncio.run(main())
"""


async def test_asyncpg_defaults_fail_through_pgbouncer(settings: Settings, postgres_server_url: str) -> None:
    """Why the setting exists: asyncpg's statement cache names statements alike in every process,
    and two processes whose statements meet on one server connection collide."""
    with start_pgbouncer(postgres_server_url, pool_size=1) as single:
        dsn = make_url(single.url_for(settings.database_url)).set(drivername="postgresql")
        command = [sys.executable, "-c", _PROCESS, dsn.render_as_string(hide_password=False)]
        processes = [await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.PIPE) for _ in range(2)]
        errors = [(await process.communicate())[1].decode() for process in processes]
    assert any("prepared statement" in error for error in errors), errors


async def test_named_statements_fail_through_pgbouncer_even_with_unique_names(
    settings: Settings, bouncer: PgBouncer
) -> None:
    """Why adplane does not use SQLAlchemy's `prepared_statement_name_func`: a named statement
    prepared outside a transaction is bound in a later message batch, which PgBouncer may send to
    another server connection."""
    arguments = connect_arguments(bouncer.url_for(settings.database_url), pooler=DatabasePooler.PGBOUNCER)

    async def run(connection: asyncpg.Connection, _n: int) -> None:
        for i in range(ROUNDS):
            statement = await connection.prepare("SELECT $1::int + 2", name=f"__asyncpg_{uuid.uuid4()}__")
            assert await statement.fetchval(i) == i + 2

    with pytest.raises(asyncpg.exceptions.InvalidSQLStatementNameError):
        await _shared_statements(arguments, run)
