"""What code below the composition root knows of a unit of work: a factory that opens one.

A unit is one transaction (committed when its block ends normally, rolled back on an exception) and
the services built on it; a read-only unit (Get and List RPCs) runs each statement on its own and
must not write; a direct unit (`direct=True`: the hot writes) runs its transaction on an asyncpg
connection of the read pool, and only the statements that have a direct form may be used in it.
The composition root (`server.composition`) builds units; everything below it takes a
`UnitOfWorkFactory` of a Protocol declared where it is used, naming only the services that code calls
(`AccountServicer` takes a factory of units that offer `accounts`), so no module imports the root.
"""

from contextlib import AbstractAsyncContextManager
from typing import Protocol


class UnitOfWorkFactory[U](Protocol):
    def __call__(
        self, *, read_only: bool = False, direct: bool = False, primary: bool = False
    ) -> AbstractAsyncContextManager[U]:
        """`primary`: a read-only unit that must see every committed write reads the primary even
        when a replica serves reads (server.read_replica)."""
        ...
