"""Which errors count as a database or Redis outage (UNAVAILABLE), and which stay bugs (INTERNAL)."""

import errno
import time
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as redis
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.embedded import free_port
from server.config import Settings
from server.db import create_engine
from server.outages import is_outage


def _raised_from(error: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise error from inner
    except BaseException as outer:
        return outer


async def test_a_missing_postgres_socket_is_an_outage(tmp_path: Path) -> None:
    engine = create_async_engine(f"postgresql+asyncpg://postgres@/postgres?host={tmp_path}")
    try:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - whatever the driver raises
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert is_outage(caught.value)


async def test_a_refused_redis_connection_is_an_outage() -> None:
    client = redis.Redis(port=free_port())
    with pytest.raises(redis.ConnectionError) as caught:
        await client.ping()
    await client.aclose()
    assert is_outage(caught.value)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("cannot call PreparedStatement.fetch(): the underlying connection is closed"),
        sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
        FileNotFoundError(errno.ENOENT, "No such file or directory"),
        OSError(errno.EHOSTUNREACH, "No route to host"),
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_connection_failures_are_outages(error: BaseException) -> None:
    assert is_outage(error)
    # However deep the driver wrapped it.
    assert is_outage(_raised_from(RuntimeError("wrapper"), error))


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UniqueViolationError("duplicate key value violates unique constraint"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        FileNotFoundError(errno.ENOENT, "No such file or directory", "/etc/adplane/missing.pem"),
        OSError(errno.EACCES, "Permission denied"),
        sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key")),
        ValueError("a bug"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_other_errors_are_not_outages(error: BaseException) -> None:
    assert not is_outage(error)
    assert not is_outage(_raised_from(RuntimeError("wrapper"), error))


async def test_a_call_that_finds_the_pool_taken_waits_database_pool_timeout_then_is_an_outage(
    settings: Settings,
) -> None:
    """SQLAlchemy's default wait (30 s) outlasted every client's deadline while PostgreSQL was away:
    calls beyond the pool's size hung instead of answering UNAVAILABLE."""
    engine = create_engine(
        settings.model_copy(
            update={"database_pool_size": 1, "database_max_overflow": 0, "database_pool_timeout_seconds": 0.2}
        )
    )
    try:
        async with engine.connect():
            started = time.monotonic()
            with pytest.raises(sqlalchemy.exc.TimeoutError) as caught:
                async with engine.connect():
                    pass
            waited = time.monotonic() - started
    finally:
        await engine.dispose()
    assert is_outage(caught.value)
    assert waited < 5  # the setting bounds the wait, not SQLAlchemy's 30 s default
