"""How every Redis client of the platform connects: the login throttle, the broker, the result backend.

A Redis restart leaves each pooled connection dead. Without a retry policy the first command on one
fails (redis-py's `from_url` pools retry nothing), which made the outbox relay back off for many
seconds after Redis had returned and the result backend drop results. Here a command that fails on
a connection error is retried on a fresh connection, a connection idle for a while is checked with
a PING before use, and connecting gives up quickly while Redis is away.
"""

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError, TimeoutError

# A PING before reusing a connection idle this long; busy connections are never pinged.
HEALTH_CHECK_INTERVAL_SECONDS = 15
CONNECT_TIMEOUT_SECONDS = 2.0
# How long a reply may take before the command fails with TimeoutError (redis-py's own default,
# stated here because a blocking command must block for less: see `server.requests.watch`).
SOCKET_TIMEOUT_SECONDS = 5.0


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


def connect_redis(url: str) -> Redis:
    return Redis.from_url(url, **connection_options())
