"""The readiness probe reads PostgreSQL's state, not the load on the server's pool."""

import contextlib
from contextlib import AsyncExitStack

from sqlalchemy import text

from server.composition import Infrastructure
from server.readiness import DatabaseProbe, dependencies_ok


async def test_the_probe_answers_while_every_pooled_connection_is_taken(infrastructure: Infrastructure) -> None:
    settings = infrastructure.settings
    probe = DatabaseProbe(infrastructure)
    try:
        async with AsyncExitStack() as taken:
            for _ in range(settings.database_pool_size + settings.database_max_overflow):
                await taken.enter_async_context(infrastructure.engine.connect())
            assert await dependencies_ok(infrastructure, probe, limit_seconds=1.0)
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
