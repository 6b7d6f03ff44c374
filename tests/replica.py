"""An embedded PostgreSQL primary and a streaming replica of it (`pg_basebackup -R` from the same
binaries, devstack.embedded.start_replica), for any test or topology that reads from a replica;
`paused_replay` holds the replica back to make lag."""

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from devstack.embedded import EmbeddedPostgres, start_postgres, start_replica


@dataclass
class Replicated:
    primary: EmbeddedPostgres
    replica: EmbeddedPostgres

    def replica_url(self, primary_url: str) -> str:
        """The database of `primary_url` (a URL on the primary) on the replica."""
        database = make_url(primary_url).database or "postgres"
        return self.replica.url_for(database)


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def replicated_postgres() -> Iterator[Replicated]:
    """A primary and its streaming replica in throwaway directories (outside pytest's private tmp:
    see tests.conftest.postgres_data_dir), both removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="adplane-test-replicated-"))
    try:
        primary = start_postgres(directory / "primary", ephemeral=True)
        try:
            replica = start_replica(primary, directory / "replica")
            try:
                yield Replicated(primary=primary, replica=replica)
            finally:
                replica.stop()
        finally:
            primary.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@asynccontextmanager
async def paused_replay(replica: EmbeddedPostgres) -> AsyncIterator[None]:
    """The replica receives WAL but applies none of it until the block ends."""
    connection = await asyncpg.connect(_dsn(replica.url))
    try:
        await connection.execute("SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            await connection.execute("SELECT pg_wal_replay_resume()")
    finally:
        await connection.close()


async def replayed_up_to_primary(replicated: Replicated) -> bool:
    """Whether the replica has applied everything the primary has written."""
    primary = await asyncpg.connect(_dsn(replicated.primary.url))
    replica = await asyncpg.connect(_dsn(replicated.replica.url))
    try:
        written = await primary.fetchval("SELECT pg_current_wal_flush_lsn()::text")
        return bool(await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", written))
    finally:
        await primary.close()
        await replica.close()
