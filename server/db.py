"""Database engine, sessions and the declarative base every model inherits."""

import datetime as dt
import uuid
from typing import Any

import sqlalchemy.exc
import uuid_utils
from sqlalchemy import MetaData, event, func
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime

from server.config import Settings
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


def id_time(row_id: uuid.UUID) -> dt.datetime:
    """When a UUIDv7 was made (its first 48 bits: milliseconds since the epoch)."""
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


def create_engine(settings: Settings) -> AsyncEngine:
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set (make run starts an embedded PostgreSQL for you)")
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_timeout=settings.database_pool_timeout_seconds,
        # Connections are recycled rather than pinged before each use (a ping is a round trip per
        # RPC); a connection that died anyway surfaces as UNAVAILABLE and is replaced.
        pool_recycle=1800,
        # An unreachable server fails the call in seconds (asyncpg waits 60 s by default).
        connect_args={"timeout": CONNECT_TIMEOUT_SECONDS},
        # SQL parameters can hold secrets (hashes, ciphertexts): never in error messages or logs.
        hide_parameters=True,
    )
    event.listen(engine.sync_engine, "checkout", _discard_closed_connection)
    instrument_pool(engine, limit=settings.database_pool_size + settings.database_max_overflow)
    trace_engine(engine)
    return engine


def driver_connect_arguments(engine: AsyncEngine) -> dict[str, Any]:
    """Keyword arguments of `asyncpg.connect` for the engine's database: what SQLAlchemy's asyncpg
    dialect derives from DATABASE_URL, for the connections adplane opens beside the engine's pool."""
    _, arguments = engine.dialect.create_connect_args(engine.url)
    return {**arguments, "timeout": CONNECT_TIMEOUT_SECONDS}


def _discard_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pre-ping without the round trip: a restarting PostgreSQL closes its connections, asyncpg
    notices the closed socket on the event loop, and such a connection is replaced here instead of
    failing the next call that checks it out. A connection cut without a close (a network
    partition) still fails one call, as UNAVAILABLE, and SQLAlchemy then drops the pool's older
    connections."""
    if dbapi_connection.driver_connection.is_closed():
        raise sqlalchemy.exc.DisconnectionError("connection closed while in the pool")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def violated_constraint(error: sqlalchemy.exc.IntegrityError) -> str | None:
    """Name of the constraint or unique index an IntegrityError broke (asyncpg reports it)."""
    return getattr(error.orig.__cause__, "constraint_name", None) if error.orig else None
