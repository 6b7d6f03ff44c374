"""Deleting what has outlived its retention, in small batches.

Each module deletes its own rows (its repository knows its table); this is only the loop they share:
one statement per transaction, at most `batch_size` rows each, until a batch comes back short. A
batch is bounded in time and in the locks it holds, a crash keeps what earlier batches did, and a
second run at the same time (two schedulers, a redelivered message) only finds less to delete.
"""

from collections.abc import Awaitable, Callable

from server.units import UnitOfWorkFactory


async def delete_in_batches[U](
    units: UnitOfWorkFactory[U], delete: Callable[[U, int], Awaitable[int]], *, batch_size: int
) -> int:
    """Run `delete(unit, batch_size)` (how many rows it deleted) a transaction at a time until a
    batch deletes fewer than `batch_size`; how many rows in all."""
    total = 0
    while True:
        async with units() as uow:
            deleted = await delete(uow, batch_size)
        total += deleted
        if deleted < batch_size:
            return total
