"""The SQL statements a block of code sends, through SQLAlchemy's engine and the read pool alike:
what the statement-count tests and the keyset benchmark count."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from server.composition import Infrastructure


@contextmanager
def sent_statements(infrastructure: Infrastructure) -> Iterator[list[str]]:
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
