"""The read pool: Core statements compiled once for asyncpg and run on pooled connections."""

import time
import uuid
from collections.abc import Callable, Iterator

import asyncpg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from sqlalchemy import Integer, bindparam, func, select
from sqlalchemy.engine import make_url

from server import app, tracing
from server.composition import Infrastructure
from server.config import Settings
from server.db import pooled_connect_arguments
from server.outages import is_outage
from server.read_pool import PreparedRead, ReadPool
from server.statement_log import sent_statements
from tests.conftest import _create_database, _drop_database
from tests.waits import eventually

# Two parameters, one of them used twice, named in the opposite order of their positions, and a
# literal the statement binds itself.
_ARITHMETIC = PreparedRead(
    select(
        (bindparam("b", type_=Integer) - bindparam("a", type_=Integer)).label("difference"),
        (bindparam("b", type_=Integer) * 2).label("double"),
    )
)


def test_expanding_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="expanding"):
        PreparedRead(select(func.abs(1)).where(func.abs(1).in_(bindparam("values", expanding=True))))


async def test_named_parameters_go_to_their_positions(infrastructure: Infrastructure) -> None:
    row = await infrastructure.read_pool.one(_ARITHMETIC, {"a": 1, "b": 10})
    assert row is not None
    assert tuple(row) == (9, 20)


async def test_all_returns_every_row_in_order_and_one_none_for_no_row(infrastructure: Infrastructure) -> None:
    series = PreparedRead(select(func.generate_series(1, bindparam("count", type_=Integer)).label("n")))
    rows = await infrastructure.read_pool.all(series, {"count": 3})
    assert [row[0] for row in rows] == [1, 2, 3]
    assert await infrastructure.read_pool.all(series, {"count": 0}) == []
    assert await infrastructure.read_pool.one(series, {"count": 0}) is None


async def test_answered_at_moves_when_a_statement_comes_back(infrastructure: Infrastructure) -> None:
    before = time.monotonic()
    await infrastructure.read_pool.one(_ARITHMETIC, {"a": 1, "b": 2})
    assert before <= infrastructure.read_pool.answered_at <= time.monotonic()
    answered = infrastructure.read_pool.answered_at
    with pytest.raises(asyncpg.DataError):  # refused (by the driver): not an answer
        await infrastructure.read_pool.one(_ARITHMETIC, {"a": "one", "b": 2})
    assert infrastructure.read_pool.answered_at == answered


async def test_observers_see_each_statement(infrastructure: Infrastructure) -> None:
    with sent_statements(infrastructure) as sent:
        await infrastructure.read_pool.one(_ARITHMETIC, {"a": 1, "b": 2})
        await infrastructure.read_pool.one(_ARITHMETIC, {"a": 3, "b": 4})
    assert sent == [_ARITHMETIC.sql, _ARITHMETIC.sql]


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def _open_connections() -> float:
    return _sample("adplane_db_pool_connections_open")


# Nothing listens on port 9.
_UNREACHABLE_URL = "postgresql+asyncpg://adplane:x@127.0.0.1:9/adplane"


async def test_reads_are_counted_in_the_pool_metrics(infrastructure: Infrastructure) -> None:
    checkouts = _sample("adplane_db_pool_checkouts_total")
    await infrastructure.read_pool.one(_ARITHMETIC, {"a": 1, "b": 2})
    await infrastructure.read_pool.all(_ARITHMETIC, {"a": 1, "b": 2})
    assert _sample("adplane_db_pool_checkouts_total") == checkouts + 2
    assert _sample("adplane_db_pool_connections_in_use") == 0
    assert _open_connections() >= 1


async def test_open_pools_opens_both_pools_to_their_resting_size(settings: Settings) -> None:
    infrastructure = Infrastructure.build(settings)
    try:
        before = _open_connections()
        await infrastructure.open_pools()
        opened = settings.database_pool_size + settings.database_read_pool_size
        assert _open_connections() == before + opened
        # They are kept for the calls that follow: reads open nothing more.
        await infrastructure.read_pool.one(_ARITHMETIC, {"a": 1, "b": 2})
        async with infrastructure.read_engine.connect() as connection:
            await connection.execute(select(1))
        assert _open_connections() == before + opened
    finally:
        await infrastructure.close()
    await _settled(_open_connections, before)


async def test_a_database_missing_at_start_up_leaves_the_pools_closed_until_it_answers(
    settings: Settings, postgres_server_url: str
) -> None:
    """Start-up goes on without the database (the server answers NOT_SERVING meanwhile: see
    tests/e2e/test_readiness.py), keeps no connection, and the pools open on the first use once
    the database is there."""
    name = f"adplane_late_{uuid.uuid4().hex[:8]}"
    late_url = make_url(settings.database_url).set(database=name).render_as_string(hide_password=False)
    infrastructure = Infrastructure.build(settings.model_copy(update={"database_url": late_url}))
    before = _open_connections()
    try:
        with pytest.raises(asyncpg.InvalidCatalogNameError):  # what start-up runs into
            await infrastructure.open_pools()
        await app._open_pools(infrastructure)  # start-up's call: the same failure, logged
        await _settled(_open_connections, before)

        await _create_database(postgres_server_url, name)
        row = await infrastructure.read_pool.one(_ARITHMETIC, {"a": 1, "b": 2})
        assert row is not None
        assert tuple(row) == (1, 4)
        async with infrastructure.engine.connect() as connection:
            assert await connection.scalar(select(1)) == 1
        assert _open_connections() > before
    finally:
        await infrastructure.close()
        await _drop_database(postgres_server_url, name)
    await _settled(_open_connections, before)


async def _settled(read: Callable[[], float], expected: float) -> None:
    """`read()` reaches `expected` soon (asyncpg counts closed connections in callbacks it schedules)."""
    await eventually(lambda: read() == expected, within=5, what=f"{expected} open connections")


async def test_an_unreachable_database_is_an_outage(settings: Settings) -> None:
    unreachable = settings.model_copy(update={"database_url": _UNREACHABLE_URL})
    pool = ReadPool(pooled_connect_arguments(unreachable), size=1)
    try:
        with pytest.raises(ConnectionRefusedError) as raised:
            await pool.one(_ARITHMETIC, {"a": 1, "b": 2})
        assert is_outage(raised.value), repr(raised.value)
    finally:
        await pool.close()


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing as `configure_tracing` leaves it (the global provider can be set once per process)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_configured", [provider])
    yield exporter
    exporter.clear()


async def test_a_read_is_a_client_span_of_the_call(infrastructure: Infrastructure, spans: InMemorySpanExporter) -> None:
    with tracing.tracer.start_as_current_span("call") as call:
        await infrastructure.read_pool.one(_ARITHMETIC, {"a": 1, "b": 2})
    (read,) = [span for span in spans.get_finished_spans() if span.name == "SELECT"]
    assert read.kind is trace.SpanKind.CLIENT
    assert read.parent is not None
    assert read.parent.span_id == call.get_span_context().span_id
    assert read.attributes is not None
    assert read.attributes["db.system"] == "postgresql"
    assert read.attributes["db.statement"] == _ARITHMETIC.sql


async def test_no_span_without_tracing() -> None:
    with tracing.tracer.start_as_current_span("call") as call, tracing.database_span(_ARITHMETIC.sql):
        assert trace.get_current_span() is call


async def test_a_transaction_left_open_is_rolled_back_when_its_connection_returns(settings: Settings) -> None:
    """A direct transaction cancelled while it ended may hand its connection back inside the
    transaction: the pool skips the default reset, so this checks that asyncpg still rolls it back
    on release. The next user of the connection (one here) starts clean, what it wrote gone."""
    pool = ReadPool(pooled_connect_arguments(settings), size=1)
    try:
        async with pool.transaction() as transaction:
            assert await transaction.one(_ARITHMETIC, {"a": 1, "b": 2}) is not None
        assert pool._pool is not None
        async with pool._pool.acquire() as connection:
            await connection.execute("BEGIN")
            await connection.execute("CREATE TEMPORARY TABLE left_open (n int)")
        async with pool._pool.acquire() as connection:
            assert not connection.is_in_transaction()
            assert await connection.fetchval("SELECT to_regclass('pg_temp.left_open')") is None
    finally:
        await pool.close()
