"""Login throttling in Redis, shared by every server process.

Failures are counted per email and per client address within a window. Past a first threshold
each attempt is slowed down; past a second, attempts are refused for a cooling-off period. The
answer is the same whether or not the email exists.
"""

import asyncio
import datetime as dt
import hashlib

import redis.asyncio as redis
import structlog

from server.exceptions import ResourceExhaustedException

logger = structlog.get_logger("adplane.auth")


class TooManyLoginAttemptsException(ResourceExhaustedException):
    reason = "TOO_MANY_LOGIN_ATTEMPTS"

    def __init__(self, retry_after: dt.timedelta) -> None:
        super().__init__("too many failed sign-in attempts; try again later", retry_after=retry_after)


class LoginThrottle:
    def __init__(
        self,
        client: redis.Redis | None,
        *,
        window: dt.timedelta,
        slowdown_after: int,
        slowdown: dt.timedelta,
        lockout_after: int,
        lockout: dt.timedelta,
    ) -> None:
        self._redis = client
        self._window = window
        self._slowdown_after = slowdown_after
        self._slowdown = slowdown
        self._lockout_after = lockout_after
        self._lockout = lockout

    async def before_attempt(self, *, email: str, address: str) -> None:
        """Refuse a locked-out email or address; slow down one with recent failures."""
        if self._redis is None:
            return
        subjects = _subjects(email, address)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for subject in subjects:
                    pipe.pttl(f"login:lock:{subject}")
                for subject in subjects:
                    pipe.get(f"login:fail:{subject}")
                replies = await pipe.execute()
        except redis.RedisError:
            # Throttling protects sign-in; an outage of Redis must not stop everyone signing in.
            logger.warning("login throttle unavailable", exc_info=True)
            return
        locks = [int(ttl) for ttl in replies[: len(subjects)] if int(ttl) > 0]
        if locks:
            raise TooManyLoginAttemptsException(dt.timedelta(milliseconds=max(locks)))
        failures = max(int(count or 0) for count in replies[len(subjects) :])
        if failures >= self._slowdown_after:
            await asyncio.sleep(self._slowdown.total_seconds())

    async def record_failure(self, *, email: str, address: str) -> None:
        if self._redis is None:
            return
        window_ms = int(self._window.total_seconds() * 1000)
        try:
            for subject in _subjects(email, address):
                # The window starts with the first failure (SET NX); INCR keeps the key's expiry.
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.set(f"login:fail:{subject}", 0, px=window_ms, nx=True)
                    pipe.incr(f"login:fail:{subject}")
                    _, count = await pipe.execute()
                if int(count) >= self._lockout_after:
                    await self._redis.set(f"login:lock:{subject}", "1", px=int(self._lockout.total_seconds() * 1000))
                    await self._redis.delete(f"login:fail:{subject}")
        except redis.RedisError:
            logger.warning("login throttle unavailable", exc_info=True)

    async def record_success(self, *, email: str) -> None:
        """Forget the email's failures. The address keeps its count: signing in to one account
        must not reset the count of an address trying many."""
        if self._redis is None:
            return
        try:
            await self._redis.delete(f"login:fail:{_subjects(email, '')[0]}")
        except redis.RedisError:
            logger.warning("login throttle unavailable", exc_info=True)


def _subjects(email: str, address: str) -> list[str]:
    # Hashed so emails do not sit in Redis in clear.
    return [f"email:{hashlib.sha256(email.encode()).hexdigest()[:32]}", f"addr:{address}"]
