"""Benchmark: the read pool's own CPU per read, straight on PostgreSQL and through PgBouncer.

    .venv/bin/python -m bench.read_pool_cpu [--reads 4000] [--rounds 3]

One process, no gRPC: the CPU this process spends per `ReadPool.one` (8 reads in flight) on an
embedded PostgreSQL (unix socket), and through PgBouncer in transaction mode (TCP on loopback) as
asyncpg runs it without a statement cache (the server describes every read: two round trips) and as
the read pool runs it (`unnamed=True`: described once per connection, one round trip per read).
"""

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from devstack.embedded import start_postgres
from devstack.pgbouncer import start_pgbouncer
from server.config import DatabasePooler
from server.db import connect_arguments
from server.read_pool import PreparedRead, ReadPool

READ = PreparedRead(select(text("oid, relname, relkind FROM pg_class WHERE oid = CAST(:oid AS oid)")))
IN_FLIGHT = 8


async def cpu_per_read(pool: ReadPool, reads: int) -> float:
    """Microseconds of this process's CPU per read."""
    await pool.open()
    for _ in range(200):  # warm up: connections, descriptions, codecs
        await pool.one(READ, {"oid": 1259})

    async def reader() -> None:
        for _ in range(reads // IN_FLIGHT):
            await pool.one(READ, {"oid": 1259})

    started = time.process_time()
    await asyncio.gather(*(reader() for _ in range(IN_FLIGHT)))
    spent = time.process_time() - started
    await pool.close()
    return spent / reads * 1e6


async def measure(direct: dict[str, Any], pooled: dict[str, Any], *, reads: int, rounds: int) -> None:
    for n in range(rounds):
        figures = [
            await cpu_per_read(ReadPool(direct, size=IN_FLIGHT), reads),
            await cpu_per_read(ReadPool(pooled, size=IN_FLIGHT), reads),
            await cpu_per_read(ReadPool(pooled, size=IN_FLIGHT, unnamed=True), reads),
        ]
        direct_us, described_each, described_once = figures
        print(
            f"round {n + 1}: direct {direct_us:.0f} us, PgBouncer described per read {described_each:.0f} us, "
            f"PgBouncer described once (the read pool) {described_once:.0f} us",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.read_pool_cpu", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--reads", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        postgres = start_postgres(Path(tmp) / "pg", ephemeral=True)
        try:
            with start_pgbouncer(postgres.url, pool_size=IN_FLIGHT) as bouncer:
                direct = connect_arguments(postgres.url)
                pooled = connect_arguments(bouncer.url_for(postgres.url), pooler=DatabasePooler.PGBOUNCER)
                asyncio.run(measure(direct, pooled, reads=args.reads, rounds=args.rounds))
        finally:
            postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
