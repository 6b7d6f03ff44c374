"""Sign-in throttling that locks no one out, in Redis, shared by every server process.

It follows OWASP's Authentication Cheat Sheet ("Login Throttling", "Account Lockout"): failures are
counted against the account, not only the address (so guessing from many addresses is slowed too),
delays grow exponentially instead of a fixed lockout, and the mechanism must not let someone lock
an account they do not control; and NIST SP 800-63B 5.2.2, "wait following a failed attempt for a
period of time that increases as the account approaches its maximum allowance". Three counters,
each of the failures within `window` of the last one:

- per (address, account): after `delay_after` failures, that address's next attempt at that
  account is refused (RESOURCE_EXHAUSTED, TOO_MANY_LOGIN_ATTEMPTS, RetryInfo) until a delay has
  passed since its last failure, doubling with each failure up to `max_delay`. Its password is not
  checked. This is what caps a single source's guessing, and it touches no one else's sign-ins.
- per account and per address: after `wait_after` failures, every attempt at that account (from
  anywhere), or from that address (at any account), waits before its password is checked, doubling
  up to `max_wait`; it is never refused for them. Someone who fails at an account, or from a shared
  address (an office behind one NAT), slows others down by at most `max_wait`, and locks no one out.

So a correct password signs in after at most `max_wait`, however much the account or the address was
abused, unless it comes from the address that failed at that same account (then after that pair's
delay, at most `max_delay` after its last failure). An attempt is counted before its password is
checked (concurrent guesses cannot slip in under a limit) and a success takes it back; the answer is
the same whether or not the account exists. Redis unreachable: no throttling (sign-in must not
depend on it).
"""

import asyncio
import dataclasses
import datetime as dt
import hashlib

import redis.asyncio as redis
import structlog

from server.config import Settings
from server.exceptions import ResourceExhaustedException

logger = structlog.get_logger("adplane.auth")


class TooManyLoginAttemptsException(ResourceExhaustedException):
    reason = "TOO_MANY_LOGIN_ATTEMPTS"

    def __init__(self, retry_after: dt.timedelta) -> None:
        super().__init__("too many failed sign-in attempts; try again later", retry_after=retry_after)


@dataclasses.dataclass(frozen=True)
class ThrottlePolicy:
    window: dt.timedelta
    delay_after: int
    wait_after: int
    first_delay: dt.timedelta
    max_delay: dt.timedelta
    max_wait: dt.timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> "ThrottlePolicy":
        return cls(
            window=dt.timedelta(seconds=settings.login_failure_window_seconds),
            delay_after=settings.login_delay_after,
            wait_after=settings.login_wait_after,
            first_delay=dt.timedelta(seconds=settings.login_first_delay_seconds),
            max_delay=dt.timedelta(seconds=settings.login_max_delay_seconds),
            max_wait=dt.timedelta(seconds=settings.login_max_wait_seconds),
        )


@dataclasses.dataclass(frozen=True)
class Admitted:
    """An attempt that may check its password after `wait`."""

    wait: dt.timedelta


# KEYS: the (address, account) pair, the account, the address. ARGV: window, delay_after,
# wait_after, first delay, max delay, max wait (milliseconds and counts).
# Returns {-1, retry_after_ms} for a refused attempt, {wait_ms, 0} for an admitted one (counted).
_ATTEMPT = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window, delay_after, wait_after = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local first, max_delay, max_wait = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local function state(key)
  local values = redis.call('HMGET', key, 'failures', 'last')
  return tonumber(values[1] or '0'), tonumber(values[2] or '0')
end
local function delay(failures, after, cap)
  if failures < after then return 0 end
  return math.min(first * 2 ^ (failures - after), cap)
end
local pair_failures, pair_last = state(KEYS[1])
local refused_until = pair_last + delay(pair_failures, delay_after, max_delay)
if pair_failures >= delay_after and now < refused_until then
  return {-1, refused_until - now}
end
local wait = 0
for i = 2, 3 do
  local failures, last = state(KEYS[i])
  wait = math.max(wait, last + delay(failures, wait_after, max_wait) - now)
end
for i = 1, 3 do
  redis.call('HINCRBY', KEYS[i], 'failures', 1)
  redis.call('HSET', KEYS[i], 'last', now)
  redis.call('PEXPIRE', KEYS[i], window)
end
return {math.max(math.floor(wait), 0), 0}
"""

# KEYS: the pair, the account, the address. A success forgets the pair's and the account's
# failures; the address keeps the others' (only this attempt is taken back).
_SUCCESS = """
redis.call('DEL', KEYS[1], KEYS[2])
if tonumber(redis.call('HINCRBY', KEYS[3], 'failures', -1)) <= 0 then
  redis.call('DEL', KEYS[3])
end
"""


class LoginThrottle:
    def __init__(self, client: redis.Redis | None, policy: ThrottlePolicy) -> None:
        self._redis = client
        self._policy = policy
        self._attempt = client.register_script(_ATTEMPT) if client is not None else None
        self._success = client.register_script(_SUCCESS) if client is not None else None

    @classmethod
    def from_settings(cls, client: redis.Redis | None, settings: Settings) -> "LoginThrottle":
        return cls(client, ThrottlePolicy.from_settings(settings))

    async def admit(self, *, email: str, address: str) -> Admitted:
        """Count the attempt, or refuse it (TooManyLoginAttemptsException); how long it must wait."""
        if self._attempt is None:
            return Admitted(wait=dt.timedelta(0))
        policy = self._policy
        try:
            first, second = await self._attempt(
                keys=_keys(email, address),
                args=[
                    _ms(policy.window),
                    policy.delay_after,
                    policy.wait_after,
                    _ms(policy.first_delay),
                    _ms(policy.max_delay),
                    _ms(policy.max_wait),
                ],
            )
        except redis.RedisError:
            # Throttling protects sign-in; an outage of Redis must not stop everyone signing in.
            logger.warning("login throttle unavailable", exc_info=True)
            return Admitted(wait=dt.timedelta(0))
        if int(first) < 0:
            raise TooManyLoginAttemptsException(dt.timedelta(milliseconds=int(second)))
        return Admitted(wait=dt.timedelta(milliseconds=int(first)))

    async def before_attempt(self, *, email: str, address: str) -> None:
        """Refuse the attempt, or let it wait its turn; then its password may be checked."""
        admitted = await self.admit(email=email, address=address)
        if admitted.wait > dt.timedelta(0):
            await asyncio.sleep(admitted.wait.total_seconds())

    async def record_success(self, *, email: str, address: str) -> None:
        if self._success is None:
            return
        try:
            await self._success(keys=_keys(email, address))
        except redis.RedisError:
            logger.warning("login throttle unavailable", exc_info=True)


def _ms(value: dt.timedelta) -> int:
    return int(value.total_seconds() * 1000)


def _keys(email: str, address: str) -> list[str]:
    # Emails hashed so that they do not sit in Redis in clear; one hash tag, so that a script's keys
    # live in the same slot of a Redis cluster.
    account = hashlib.sha256(email.encode()).hexdigest()[:32]
    prefix = "adplane:{login-throttle}"
    return [f"{prefix}:pair:{account}:{address}", f"{prefix}:account:{account}", f"{prefix}:address:{address}"]
