"""The readiness probe reads PostgreSQL's state, not the load on the server's pool; a slow answer
under load is told apart from an outage."""

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import text

from server.composition import Infrastructure
from server.config import Settings
from server.readiness import DatabaseProbe, ProbeFailure, Readiness, dependency_failure
from tests.waits import eventually


async def test_the_probe_answers_while_every_pooled_connection_is_taken(infrastructure: Infrastructure) -> None:
    settings = infrastructure.settings
    probe = DatabaseProbe(infrastructure)
    try:
        async with AsyncExitStack() as taken:
            for _ in range(settings.database_pool_size + settings.database_max_overflow):
                await taken.enter_async_context(infrastructure.engine.connect())
            assert await dependency_failure(infrastructure, probe, limit_seconds=1.0) is None
    finally:
        probe.close()


async def test_the_probe_opens_a_new_connection_after_losing_its_own(infrastructure: Infrastructure) -> None:
    probe = DatabaseProbe(infrastructure)
    try:
        await probe.check()
        async with infrastructure.engine.connect() as connection:
            terminated = await connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND query = 'SELECT 1' AND datname = current_database()"
                )
            )
            await connection.commit()
        assert terminated >= 1
        # The probe either sees the connection closed and opens another at once, or fails once
        # (that probe reports NOT_SERVING) and opens another for the next.
        with contextlib.suppress(Exception):
            await probe.check()
        await probe.check()
    finally:
        probe.close()


async def test_a_probe_past_its_limit_is_slow_and_the_next_one_waits_for_the_same_query(
    infrastructure: Infrastructure,
) -> None:
    probe = DatabaseProbe(infrastructure)
    try:
        assert await dependency_failure(infrastructure, probe, limit_seconds=5.0) is None
        connection = probe._connection  # the connection must outlive a slow probe
        failure = await dependency_failure(infrastructure, probe, limit_seconds=1e-6)
        assert failure == ProbeFailure("PostgreSQL did not answer within 1e-06 s", slow=True)
        # The query was left to finish: the next probe takes its answer, on the same connection.
        assert await dependency_failure(infrastructure, probe, limit_seconds=5.0) is None
        assert probe._connection is connection
        assert await dependency_failure(infrastructure, probe, limit_seconds=5.0) is None
    finally:
        probe.close()


# The longest limit the tests with a stopped backend give a probe.
LIMIT_SECONDS = 0.3


async def _no_call_answered_within(probe: DatabaseProbe, seconds: float) -> None:
    await eventually(
        lambda: not probe.calls_answered_within(seconds), within=5, what=f"no call answered in the last {seconds} s"
    )


@contextlib.asynccontextmanager
async def _backend_stopped(probe: DatabaseProbe) -> AsyncIterator[None]:
    """The probe's PostgreSQL backend gets no CPU (SIGSTOP) until the block ends: a probe on a
    machine where PostgreSQL's other backends keep the CPU."""
    await probe.check()  # connected
    assert probe._connection is not None
    pid = probe._connection.get_server_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        # Statements of earlier tests are older than any limit used here: only what a test runs counts.
        await _no_call_answered_within(probe, LIMIT_SECONDS)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_a_slow_probe_while_calls_are_answered_is_no_failure(infrastructure: Infrastructure) -> None:
    async def calls() -> None:
        while True:
            async with infrastructure.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            await asyncio.sleep(0.02)

    probe = DatabaseProbe(infrastructure)
    try:
        async with _backend_stopped(probe):
            slow = await dependency_failure(infrastructure, probe, limit_seconds=LIMIT_SECONDS)
            assert slow == ProbeFailure(f"PostgreSQL did not answer within {LIMIT_SECONDS} s", slow=True)
            calling = asyncio.create_task(calls())
            try:
                assert await dependency_failure(infrastructure, probe, limit_seconds=LIMIT_SECONDS) is None
            finally:
                calling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await calling
            await _no_call_answered_within(probe, LIMIT_SECONDS)
            assert await dependency_failure(infrastructure, probe, limit_seconds=LIMIT_SECONDS) == slow
        assert await dependency_failure(infrastructure, probe, limit_seconds=5.0) is None
    finally:
        probe.close()


async def test_calls_still_count_after_the_probe_lost_its_connection(infrastructure: Infrastructure) -> None:
    probe = DatabaseProbe(infrastructure)
    try:
        async with _backend_stopped(probe):
            assert probe._connection is not None
            pid = probe._connection.get_server_pid()
            failure = await dependency_failure(infrastructure, probe, limit_seconds=0.1)
            assert failure is not None
            assert failure.slow  # its query is left running
            async with infrastructure.engine.connect() as connection:
                await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        # The backend ends as it resumes: the query left running fails, and the probe with it.
        failure = await dependency_failure(infrastructure, probe, limit_seconds=5.0)
        assert failure is not None
        assert not failure.slow
        started = time.monotonic()
        async with infrastructure.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        assert probe.calls_answered_within(time.monotonic() - started)
        assert await dependency_failure(infrastructure, probe, limit_seconds=5.0) is None  # a new connection
    finally:
        probe.close()


async def test_no_connection_within_the_limit_is_a_failure_not_slowness(settings: Settings) -> None:
    # A host that accepts TCP and never says a word (as good as one that drops packets).
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    unreachable = settings.model_copy(
        update={"database_url": f"postgresql+asyncpg://adplane:x@127.0.0.1:{port}/adplane", "redis_url": None}
    )
    infrastructure = Infrastructure.build(unreachable)
    probe = DatabaseProbe(infrastructure)
    try:
        failure = await dependency_failure(infrastructure, probe, limit_seconds=0.2)
        assert failure == ProbeFailure("PostgreSQL: no connection within 0.2 s", slow=False)
    finally:
        probe.close()
        await infrastructure.close()
        server.close()


SLOW = ProbeFailure("PostgreSQL did not answer within 1 s", slow=True)
REFUSED = ProbeFailure("PostgreSQL: ConnectionRefusedError()", slow=False)


def _serving_after(*outcomes: ProbeFailure | None, slow_probes_allowed: int = 2) -> list[bool | None]:
    readiness = Readiness(slow_probes_allowed=slow_probes_allowed)
    states = []
    for outcome in outcomes:
        readiness.observe(outcome)
        states.append(readiness.serving)
    return states


def test_an_error_turns_not_serving_at_once() -> None:
    assert _serving_after(None, REFUSED, None) == [True, False, True]


def test_slow_probes_turn_not_serving_only_when_they_keep_on() -> None:
    assert _serving_after(None, SLOW, SLOW, None, SLOW, SLOW, SLOW, SLOW, None) == [
        True, True, True, True, True, True, False, False, True,
    ]  # fmt: skip


@pytest.mark.parametrize("first", [SLOW, REFUSED])
def test_before_a_first_answer_any_failure_counts(first: ProbeFailure) -> None:
    assert _serving_after(first, None) == [False, True]


def test_observe_reports_changes_only() -> None:
    readiness = Readiness(slow_probes_allowed=1)
    assert [readiness.observe(o) for o in (None, None, SLOW, SLOW, SLOW, None)] == [
        True, False, False, True, False, True,
    ]  # fmt: skip
