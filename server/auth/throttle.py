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
        """Refuse a locked-out email or address; slow down one with recent failures.

        The attempt is counted against the email here, before the password is checked, so that
        concurrent guesses cannot all slip in under the limit; a success clears the count.
        """
        if self._redis is None:
            return
        email_subject, address_subject = _subjects(email, address)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.pttl(f"login:lock:{email_subject}")
                pipe.pttl(f"login:lock:{address_subject}")
                pipe.get(f"login:fail:{address_subject}")
                # The window starts with the first attempt (SET NX); INCR keeps the key's expiry.
                pipe.set(f"login:fail:{email_subject}", 0, px=self._window_ms, nx=True)
                pipe.incr(f"login:fail:{email_subject}")
                email_lock, address_lock, address_failures, _, email_attempts = await pipe.execute()
        except redis.RedisError:
            # Throttling protects sign-in; an outage of Redis must not stop everyone signing in.
            logger.warning("login throttle unavailable", exc_info=True)
            return
        locks = [int(ttl) for ttl in (email_lock, address_lock) if int(ttl) > 0]
        if locks:
            raise TooManyLoginAttemptsException(dt.timedelta(milliseconds=max(locks)))
        if int(email_attempts) > self._lockout_after:
            await self._lock(self._redis, email_subject)
            raise TooManyLoginAttemptsException(self._lockout)
        earlier_failures = max(int(email_attempts) - 1, int(address_failures or 0))
        if earlier_failures >= self._slowdown_after:
            await asyncio.sleep(self._slowdown.total_seconds())

    async def record_failure(self, *, email: str, address: str) -> None:
        """The attempt failed: it stays counted for the email; the address counts it now."""
        if self._redis is None:
            return
        email_subject, address_subject = _subjects(email, address)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(f"login:fail:{email_subject}")
                pipe.set(f"login:fail:{address_subject}", 0, px=self._window_ms, nx=True)
                pipe.incr(f"login:fail:{address_subject}")
                email_failures, _, address_failures = await pipe.execute()
            for subject, count in ((email_subject, email_failures), (address_subject, address_failures)):
                if int(count or 0) >= self._lockout_after:
                    await self._lock(self._redis, subject)
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

    @property
    def _window_ms(self) -> int:
        return int(self._window.total_seconds() * 1000)

    async def _lock(self, client: redis.Redis, subject: str) -> None:
        await client.set(f"login:lock:{subject}", "1", px=int(self._lockout.total_seconds() * 1000))
        await client.delete(f"login:fail:{subject}")


def _subjects(email: str, address: str) -> list[str]:
    # Hashed so emails do not sit in Redis in clear.
    return [f"email:{hashlib.sha256(email.encode()).hexdigest()[:32]}", f"addr:{address}"]
