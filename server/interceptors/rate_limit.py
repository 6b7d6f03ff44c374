"""Per-caller rate limits: a token bucket per API key or user and per class of method, in Redis.

Each caller (an API key, or a user) has one bucket per class of method (reads, writes, stream
opens; `server.method_classes`): `per_second` tokens flow in, up to `burst`. The buckets live in
Redis, so the limit holds across the processes and nodes of a deployment. A call takes one token;
without one it is refused with RESOURCE_EXHAUSTED (`RATE_LIMITED`) and a RetryInfo saying when the
next token comes (429 with Retry-After through Envoy).

No Redis round trip per call: each process takes tokens from the shared bucket in batches (a
*lease* of about a tenth of a second's worth, `LEASE_SHARE`) and spends them locally; a lease not
spent within `LEASE_SECONDS` is dropped. A process therefore never admits a token the shared bucket
did not grant, so across every process a caller gets at most `burst + per_second * t` calls in any
`t` seconds; what leases drop only makes the limit a little stricter for a caller near it. A refusal
is remembered locally until the time Redis gave, so a caller hammering over its limit is refused
without a round trip either, at the cost of a dictionary lookup.

Who is not limited here: health checks and reflection (load balancers and probes must get through),
public RPCs (sign-in has its own throttle, `server.auth.throttle`), every class whose `per_second`
is 0, and every call of a server without Redis (tests and benchmarks that run none). Staff are
callers like any other, with buckets of their own: one caller over its limit spends only its own
tokens, so everyone else, staff included, is served meanwhile. Redis out of reach: calls are admitted
(the readiness probe turns the server NOT_SERVING meanwhile anyway), and the next try is a second
later, not on every call.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
import structlog

from server.auth.policies import is_public_infrastructure
from server.auth.principal import Principal, current_principal_or_none
from server.exceptions import ResourceExhaustedException
from server.interceptors.pipeline import Context, Method, Step, StreamBehavior, UnaryBehavior
from server.method_classes import MethodClass

logger = structlog.get_logger("adplane.rate_limit")

# A lease is this share of a second's tokens (at least one, at most the burst).
LEASE_SHARE = 0.1
# Tokens of a lease not spent within this long are dropped (another process may need them).
LEASE_SECONDS = 1.0
# After Redis failed, calls pass unchecked this long before it is tried again.
OUTAGE_SECONDS = 1.0
# Allowances are swept of expired entries when there are more than this many.
SWEEP_ABOVE = 10_000


@dataclass(frozen=True)
class Limit:
    per_second: float
    burst: int

    @property
    def lease(self) -> int:
        return max(1, min(self.burst, math.ceil(self.per_second * LEASE_SHARE)))


class RateLimitedException(ResourceExhaustedException):
    reason = "RATE_LIMITED"

    def __init__(self, method_class: MethodClass, retry_after: dt.timedelta) -> None:
        super().__init__(
            f"too many {method_class} calls from this caller; retry after the delay in RetryInfo",
            retry_after=retry_after,
            metadata={"method_class": str(method_class)},
        )
        self.method_class = method_class


# KEYS: the bucket. ARGV: tokens per second, burst, tokens wanted.
# Returns {granted, 0}, or {0, milliseconds until a token} when the bucket is empty.
_TAKE = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil or at == nil then
  tokens, at = burst, now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
if granted > 0 then
  return {granted, 0}
end
return {0, math.ceil((1 - tokens) * 1000 / rate)}
"""


class _Allowance:
    """One caller's tokens in one class, in this process."""

    __slots__ = ("expires", "refill", "refused_until", "tokens")

    def __init__(self) -> None:
        self.tokens = 0
        self.expires = 0.0
        self.refused_until = 0.0
        self.refill: asyncio.Future[None] | None = None


class SharedBuckets:
    """The buckets in Redis, drawn on in leases; one per server process."""

    def __init__(self, client: redis.Redis | None) -> None:
        self._take = client.register_script(_TAKE) if client is not None else None
        self._allowances: dict[tuple[str, MethodClass], _Allowance] = {}
        self._outage_until = 0.0

    @property
    def shared(self) -> bool:
        """Whether there is a Redis to keep the buckets in (without one nothing is limited)."""
        return self._take is not None

    def try_take(self, caller: str, method_class: MethodClass) -> float | None:
        """Without Redis: 0.0 when a token of this process's lease was spent, the seconds until the
        caller may call again while a refusal stands, None when a lease must be drawn (`take`)."""
        allowance = self._allowances.get((caller, method_class))
        if allowance is None:
            return None
        now = time.monotonic()
        if allowance.tokens > 0 and now < allowance.expires:
            allowance.tokens -= 1
            return 0.0
        if now < allowance.refused_until:
            return allowance.refused_until - now
        return None

    async def take(self, caller: str, method_class: MethodClass, limit: Limit) -> float:
        """Spend a token, drawing a lease from Redis when this process has none: 0.0 when one was
        spent, else the seconds until the next one."""
        key = (caller, method_class)
        while True:
            allowance = self._allowances.get(key)
            if allowance is None:
                if len(self._allowances) > SWEEP_ABOVE:
                    self._sweep()
                allowance = self._allowances[key] = _Allowance()
            now = time.monotonic()
            if allowance.tokens > 0 and now < allowance.expires:
                allowance.tokens -= 1
                return 0.0
            if now < allowance.refused_until:
                return allowance.refused_until - now
            if self._take is None or now < self._outage_until:
                return 0.0
            if allowance.refill is not None:
                # Another call of this caller is drawing a lease: share it.
                await asyncio.shield(allowance.refill)
                continue
            refill = allowance.refill = asyncio.get_running_loop().create_future()
            try:
                await self._draw(f"adplane:ratelimit:{method_class}:{caller}", allowance, limit)
            finally:
                allowance.refill = None
                refill.set_result(None)

    async def _draw(self, bucket: str, allowance: _Allowance, limit: Limit) -> None:
        assert self._take is not None
        try:
            granted, wait_ms = await self._take(keys=[bucket], args=[limit.per_second, limit.burst, limit.lease])
        except redis.RedisError:
            logger.warning("rate limits unavailable: calls pass unchecked", exc_info=True)
            self._outage_until = time.monotonic() + OUTAGE_SECONDS
            return
        now = time.monotonic()
        if int(granted) > 0:
            allowance.tokens = int(granted)
            allowance.expires = now + LEASE_SECONDS
        else:
            allowance.tokens = 0
            allowance.refused_until = now + int(wait_ms) / 1000

    def _sweep(self) -> None:
        now = time.monotonic()
        for key, allowance in list(self._allowances.items()):
            if allowance.refill is None and allowance.expires <= now and allowance.refused_until <= now:
                del self._allowances[key]


def caller_key(principal: Principal) -> str:
    return f"{principal.kind}:{principal.id}"


class RateLimit(Step):
    """After authorization (it limits the caller the call was authorized for), inside error mapping
    (which turns the refusal into RESOURCE_EXHAUSTED with its RetryInfo)."""

    def __init__(
        self, buckets: SharedBuckets, limits: Mapping[MethodClass, Limit], classes: Mapping[str, MethodClass]
    ) -> None:
        self._buckets = buckets
        self._limits = limits
        self._classes = classes

    def _limit(self, method: Method) -> tuple[MethodClass, Limit] | None:
        if not self._buckets.shared or is_public_infrastructure(method.name):
            return None
        method_class = self._classes.get(method.name)
        if method_class is None:
            return None
        limit = self._limits.get(method_class)
        if limit is None or limit.per_second <= 0:
            return None
        return method_class, limit

    async def _take(self, caller: str, method_class: MethodClass, limit: Limit) -> None:
        wait = await self._buckets.take(caller, method_class, limit)
        if wait > 0:
            raise RateLimitedException(method_class, _retry_after(wait))

    def unary(self, method: Method, behavior: UnaryBehavior) -> UnaryBehavior:
        limited = self._limit(method)
        if limited is None:
            return behavior
        method_class, limit = limited
        buckets = self._buckets

        async def drawn(caller: str, request: Any, context: Context) -> Any:
            await self._take(caller, method_class, limit)
            return await behavior(request, context)

        def checked(request: Any, context: Context) -> Awaitable[Any]:
            principal = current_principal_or_none()
            if principal is None:  # a public RPC, called anonymously
                return behavior(request, context)
            caller = caller_key(principal)
            # The common case: a token of this process's lease, and the call's own coroutine back.
            wait = buckets.try_take(caller, method_class)
            if wait is None:
                return drawn(caller, request, context)
            if wait > 0:
                raise RateLimitedException(method_class, _retry_after(wait))
            return behavior(request, context)

        return checked

    def server_stream(self, method: Method, behavior: StreamBehavior) -> StreamBehavior:
        limited = self._limit(method)
        if limited is None:
            return behavior
        method_class, limit = limited

        async def checked(request: Any, context: Context) -> AsyncIterator[Any]:
            # Opening the stream takes the token; its messages are not counted.
            principal = current_principal_or_none()
            if principal is not None:
                await self._take(caller_key(principal), method_class, limit)
            async for response in behavior(request, context):
                yield response

        return checked


def _retry_after(seconds: float) -> dt.timedelta:
    # Whole milliseconds, at least one: RetryInfo of zero would invite an immediate retry.
    return dt.timedelta(milliseconds=max(1, math.ceil(seconds * 1000)))
