"""Database engine, sessions and the declarative base every model inherits."""

import datetime as dt
import uuid
from typing import Any

import sqlalchemy.exc
import uuid_utils
from sqlalchemy import MetaData, event, func
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import DateTime

from server.config import DatabasePooler, Settings
from server.metrics import instrument_pool
from server.tracing import trace_engine

CONNECT_TIMEOUT_SECONDS = 5

# Deterministic constraint names, so alembic autogenerate and downgrades can address them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> uuid.UUID:
    """A UUIDv7: time-ordered, so primary-key order is creation order and inserts stay local."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def first_id_at(moment: dt.datetime) -> uuid.UUID:
    """The smallest UUIDv7 of `moment`'s millisecond: every id made earlier sorts before it, so
    `id < first_id_at(t)` is a range of the primary key holding the rows made before `t`."""
    return uuid.UUID(int=int(moment.timestamp() * 1000) << 80)


def new_id_at(moment: dt.datetime) -> uuid.UUID:
    """A UUIDv7 as new_id() would have made it at `moment` (rows of the past: tests, benchmarks)."""
    random = uuid.uuid4().int
    version_7 = 0x7 << 76
    variant = 0b10 << 62
    return uuid.UUID(
        int=first_id_at(moment).int | version_7 | (random & (0xFFF << 64)) | variant | (random & ((1 << 62) - 1))
    )


def id_time(row_id: uuid.UUID) -> dt.datetime | None:
    """When a UUIDv7 was made (its first 48 bits: milliseconds since the epoch); None for an id of
    another version (a client may send any UUID)."""
    if row_id.version != 7:
        return None
    return dt.datetime.fromtimestamp((row_id.int >> 80) / 1000, dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: DateTime(timezone=True)}


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now(), default=utcnow, onupdate=utcnow)


def create_engine(settings: Settings, *, url: str | None = None) -> AsyncEngine:
    """The engine of DATABASE_URL, or of `url` (the replica's) with the same pool settings."""
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set (make run starts an embedded PostgreSQL for you)")
    connect_args: dict[str, Any] = {"timeout": CONNECT_TIMEOUT_SECONDS}
    if settings.database_pooler is DatabasePooler.PGBOUNCER:
        connect_args |= _UNPREPARED | {"prepared_statement_cache_size": 0}
    engine = create_async_engine(
        url or settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_timeout=settings.database_pool_timeout_seconds,
        # Connections are recycled rather than pinged before each use (a ping is a round trip per
        # RPC); a connection that died anyway surfaces as UNAVAILABLE and is replaced.
        pool_recycle=1800,
        # An unreachable server fails the call in seconds (asyncpg waits 60 s by default).
        connect_args=connect_args,
        # SQL parameters can hold secrets (hashes, ciphertexts): never in error messages or logs.
        hide_parameters=True,
    )
    event.listen(engine.sync_engine, "checkout", _discard_closed_connection)
    instrument_pool(engine, limit=settings.database_pool_size + settings.database_max_overflow)
    trace_engine(engine)
    return engine


# Behind PgBouncer in transaction mode consecutive statements of a client may run on different
# server connections, so no named prepared statement may outlive its statement: asyncpg then
# prepares each statement unnamed and parses it again in the message batch that runs it (asyncpg
# >= 0.28), and SQLAlchemy keeps no prepared statements of its own. Named statements, even with
# unique names (SQLAlchemy's `prepared_statement_name_func`), would be parsed on one server
# connection and bound on another when no transaction holds the connection (autocommit reads).
_UNPREPARED: dict[str, Any] = {"statement_cache_size": 0}
_DIALECT = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it unannotated


def connect_arguments(url: str, *, pooler: DatabasePooler = DatabasePooler.NONE) -> dict[str, Any]:
    """Keyword arguments of `asyncpg.connect` for `url`: what SQLAlchemy's asyncpg dialect derives
    from it, for the connections adplane opens beside the engine's pool; `pooler` says whether
    `url` is PgBouncer's."""
    _, arguments = _DIALECT.create_connect_args(make_url(url))  # type: ignore[no-untyped-call]
    arguments = {**arguments, "timeout": CONNECT_TIMEOUT_SECONDS}
    if pooler is DatabasePooler.PGBOUNCER:
        arguments |= _UNPREPARED
    return arguments


def pooled_connect_arguments(settings: Settings, url: str | None = None) -> dict[str, Any]:
    """`connect_arguments` for DATABASE_URL (or `url`, the replica's) as DATABASE_POOLER has it."""
    return connect_arguments(url or settings.database_url, pooler=settings.database_pooler)


def direct_connect_arguments(settings: Settings) -> dict[str, Any]:
    """`connect_arguments` for PostgreSQL itself (DATABASE_DIRECT_URL): sessions of their own."""
    pooler = DatabasePooler.NONE if settings.database_direct_url else settings.database_pooler
    return connect_arguments(settings.direct_database_url, pooler=pooler)


def _discard_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pre-ping without the round trip: a restarting PostgreSQL closes its connections, asyncpg
    notices the closed socket on the event loop, and such a connection is replaced here instead of
    failing the next call that checks it out. A connection cut without a close (a network
    partition) still fails one call, as UNAVAILABLE, and SQLAlchemy then drops the pool's older
    connections."""
    if dbapi_connection.driver_connection.is_closed():
        raise sqlalchemy.exc.DisconnectionError("connection closed while in the pool")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # A Session class of its own: session events (the standing cache's) then reach this maker's
    # sessions only, not every session of the process.
    own = type("AdplaneSession", (Session,), {})
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=own)


def sync_session_class(sessions: async_sessionmaker[AsyncSession]) -> type[Session]:
    """The `Session` class behind `sessions`' AsyncSessions, for session events."""
    own: type[Session] = sessions.kw["sync_session_class"]
    return own


def violated_constraint(error: sqlalchemy.exc.IntegrityError) -> str | None:
    """Name of the constraint or unique index an IntegrityError broke (asyncpg reports it)."""
    return getattr(error.orig.__cause__, "constraint_name", None) if error.orig else None
