"""The SQL statements a block of code sends, through SQLAlchemy's engine and the read pool alike:
what the statement-count tests and the keyset benchmark count."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from server.read_pool import ReadPool


class Databases(Protocol):
    """The composition root's infrastructure, as far as statements are sent through it."""

    @property
    def engine(self) -> AsyncEngine: ...
    @property
    def read_pool(self) -> ReadPool: ...


@contextmanager
def sent_statements(infrastructure: Databases) -> Iterator[list[str]]:
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(infrastructure.engine.sync_engine, "before_cursor_execute", record)
    infrastructure.read_pool.observers.append(sent.append)
    try:
        yield sent
    finally:
        infrastructure.read_pool.observers.remove(sent.append)
        event.remove(infrastructure.engine.sync_engine, "before_cursor_execute", record)
