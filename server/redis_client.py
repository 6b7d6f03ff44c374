"""How every Redis client of the platform connects: the login throttle, the request events and the
watch fan-out, the broker, the result backend, the scheduler's lease. One factory, `connection_pool`.

A Redis restart leaves each pooled connection dead. Without a retry policy the first command on one
fails (redis-py's `from_url` pools retry nothing), which made the outbox relay back off for many
seconds after Redis had returned and the result backend drop results. Here a command that fails on
a connection error is retried on a fresh connection, a connection idle for a while is checked with
a PING before use, and connecting gives up quickly while Redis is away.

With REDIS_SENTINELS set, a pool asks the sentinels for the primary of REDIS_SENTINEL_SERVICE each
time it opens a connection (redis-py's `SentinelConnectionPool`, what `Sentinel.master_for` builds).
When the primary fails, commands fail with ConnectionError until the sentinels have promoted a
replica (what the callers do meanwhile is what they do in any Redis outage); the retry then
connects to the new primary. A demoted primary that answers READONLY is dropped the same way.
REDIS_URL then gives only the database number and the primary's credentials.
"""

from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError, TimeoutError

from server.config import Settings

# A PING before reusing a connection idle this long; busy connections are never pinged.
HEALTH_CHECK_INTERVAL_SECONDS = 15
CONNECT_TIMEOUT_SECONDS = 2.0
# How long a reply may take before the command fails with TimeoutError (redis-py's own default,
# stated here because a blocking command must block for less: see `server.requests.watch`).
SOCKET_TIMEOUT_SECONDS = 5.0
# What REDIS_URL says that the sentinels do: where the primary is.
_ADDRESS_OPTIONS = ("host", "port", "path", "connection_class")


def connection_options() -> dict[str, Any]:
    """Keyword arguments for redis-py connection pools (and taskiq-redis, which passes them on)."""
    return {
        # Two more tries, 0.1 s then up to 0.4 s apart: enough to replace a stale connection, short
        # enough that a caller waiting on Redis during an outage hears of it soon.
        "retry": Retry(ExponentialWithJitterBackoff(base=0.1, cap=0.5), retries=2),
        "retry_on_error": [ConnectionError, TimeoutError],
        "health_check_interval": HEALTH_CHECK_INTERVAL_SECONDS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_keepalive": True,
    }


def connection_pool(settings: Settings) -> ConnectionPool:
    """A pool of connections to the Redis primary: REDIS_URL's, or the one the sentinels name."""
    if not settings.redis_sentinels:
        if not settings.redis_url:
            raise RuntimeError("REDIS_URL is not set (make run starts an embedded Redis for you)")
        return ConnectionPool.from_url(settings.redis_url, **connection_options())
    primary = _primary_options(settings.redis_url)
    password = settings.redis_sentinel_password.get_secret_value() or None
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        settings.redis_sentinel_addresses,
        sentinel_kwargs={
            "password": password,
            "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "socket_timeout": CONNECT_TIMEOUT_SECONDS,
        },
        **primary,
        **connection_options(),
    )
    pool: ConnectionPool = sentinel.master_for(settings.redis_sentinel_service).connection_pool
    return pool


def _primary_options(url: str) -> dict[str, Any]:
    """REDIS_URL's options for connections to the primary the sentinels name: its database,
    credentials and query options, and TLS for a rediss:// URL (the sentinels themselves are
    reached without TLS)."""
    if not url:
        return {}
    parsed: dict[str, Any] = dict(parse_url(url))
    options = {name: value for name, value in parsed.items() if name not in _ADDRESS_OPTIONS}
    connection_class = parsed.get("connection_class")
    if isinstance(connection_class, type) and issubclass(connection_class, SSLConnection):
        options["ssl"] = True  # SentinelConnectionPool then uses SentinelManagedSSLConnection
    return options


def connect_redis(settings: Settings) -> Redis:
    return Redis.from_pool(connection_pool(settings))
