"""Which errors mean "PostgreSQL or Redis is unreachable, or the connection to it died".

Such an error is the infrastructure's, not the request's: the caller gets UNAVAILABLE (HTTP 503)
and may retry, and the log gets one line per kind of outage rather than a traceback per call.
The exception that reaches us is often a wrapper (SQLAlchemy around asyncpg around an OSError),
so the whole cause chain is examined.
"""

import errno
import socket

import asyncpg
import redis.exceptions
import sqlalchemy.exc

# SQLSTATEs of a server that is going away, not ready yet, or full.
_UNAVAILABLE_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown: a fast shutdown terminated the connection
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: starting up or shutting down
        "57P05",  # idle_session_timeout
        "53300",  # too_many_connections
    }
)
# Class 08: connection exceptions (refused, closed in the middle of an operation, ...).
_CONNECTION_EXCEPTION_CLASS = "08"

# errnos of a network path that is down; ConnectionError already covers refused/reset/aborted/EPIPE.
_NETWORK_ERRNOS = frozenset(
    {errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.EADDRNOTAVAIL}
)


def is_outage(error: BaseException) -> bool:
    """Whether `error`, or an exception it was raised from, says a database or Redis is out of reach."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _says_unreachable(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _says_unreachable(error: BaseException) -> bool:
    return _database_says_unreachable(error) or _network_says_unreachable(error)


def _database_says_unreachable(error: BaseException) -> bool:
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        # SQLAlchemy decided the connection is dead and dropped it (and the pool's older ones).
        return error.connection_invalidated or isinstance(error, sqlalchemy.exc.OperationalError)
    if isinstance(error, asyncpg.PostgresError):
        sqlstate = str(getattr(error, "sqlstate", "") or "")
        return sqlstate in _UNAVAILABLE_SQLSTATES or sqlstate.startswith(_CONNECTION_EXCEPTION_CLASS)
    if isinstance(error, asyncpg.InterfaceError):
        # The same test SQLAlchemy's asyncpg dialect applies; other interface errors are bugs.
        return "connection is closed" in str(error)
    # A pool timeout: no pooled connection came free in time.
    return isinstance(error, sqlalchemy.exc.TimeoutError)


def _network_says_unreachable(error: BaseException) -> bool:
    if isinstance(error, FileNotFoundError):
        # A unix socket that is not there (PostgreSQL stopped): socket errors carry no file name,
        # unlike a missing file the code tried to open, which is a bug and stays INTERNAL.
        return error.filename is None
    if isinstance(error, OSError) and error.errno in _NETWORK_ERRNOS:
        return True
    return isinstance(
        error,
        (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            ConnectionError,
            TimeoutError,
            socket.gaierror,
        ),
    )
