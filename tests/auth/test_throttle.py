"""Sign-in throttling that locks no one out, through AuthService.login on the real Redis.

An address that keeps failing at an account is refused there for a delay that grows and is bounded;
failures at an account from anywhere, or from an address at any account, only make attempts wait a
bounded time: the right password from another address always signs in."""

import asyncio
import dataclasses
import datetime as dt
import time
import uuid

import pytest

from server.auth.exceptions import InvalidCredentialsException
from server.auth.throttle import LoginThrottle, ThrottlePolicy, TooManyLoginAttemptsException
from server.composition import Infrastructure
from tests.auth.test_login import WRONG_PASSWORD, fail_login, login
from tests.callers import PASSWORD, make_caller

ATTACKER = "203.0.113.66"
OWNER = "192.0.2.77"


def with_policy(infrastructure: Infrastructure, **policy: object) -> Infrastructure:
    """The infrastructure with a login throttle of its own policy (same Redis)."""
    base = ThrottlePolicy.from_settings(infrastructure.settings)
    throttle = LoginThrottle(infrastructure.redis, dataclasses.replace(base, **policy))  # type: ignore[arg-type]
    return dataclasses.replace(infrastructure, login_throttle=throttle)


def seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)


async def refused(infrastructure: Infrastructure, email: str, *, address: str) -> dt.timedelta:
    """The retry delay of an attempt the throttle refuses (with the right password)."""
    with pytest.raises(TooManyLoginAttemptsException) as refusal:
        await login(infrastructure, email, PASSWORD, address=address)
    assert refusal.value.reason == "TOO_MANY_LOGIN_ATTEMPTS"
    assert refusal.value.retry_after is not None
    return refusal.value.retry_after


async def test_an_address_failing_at_an_account_is_refused_there_for_a_growing_bounded_delay(
    fast_infrastructure: Infrastructure,
) -> None:
    infrastructure = with_policy(
        fast_infrastructure, delay_after=3, wait_after=1000, first_delay=seconds(0.5), max_delay=seconds(1.5)
    )
    victim = await make_caller(infrastructure)
    bystander = await make_caller(infrastructure)
    for _ in range(3):
        await fail_login(infrastructure, victim.email, address=ATTACKER)

    # Refused at that account from that address, even with the right password ...
    first = await refused(infrastructure, victim.email, address=ATTACKER)
    assert seconds(0) < first <= seconds(0.5)
    # ... and nowhere else: the owner from their own address, another account from that address.
    assert (await login(infrastructure, victim.email, address=OWNER)).access_token
    assert (await login(infrastructure, bystander.email, address=ATTACKER)).access_token

    # The owner's sign-in forgot the account's failures, not the pair's. Each further failure
    # doubles the delay, up to the maximum.
    await asyncio.sleep(first.total_seconds() + 0.02)
    await fail_login(infrastructure, victim.email, address=ATTACKER)
    second = await refused(infrastructure, victim.email, address=ATTACKER)
    assert seconds(0.5) < second <= seconds(1.0)
    await asyncio.sleep(second.total_seconds() + 0.02)
    await fail_login(infrastructure, victim.email, address=ATTACKER)
    third = await refused(infrastructure, victim.email, address=ATTACKER)
    assert seconds(1.0) < third <= seconds(1.5)  # 2 s, capped

    # Bounded: once the delay is over, the right password from that very address signs in.
    await asyncio.sleep(third.total_seconds() + 0.02)
    assert (await login(infrastructure, victim.email, address=ATTACKER)).access_token


async def test_an_abused_address_delays_the_right_password_of_others_a_bounded_time_and_refuses_it_never(
    fast_infrastructure: Infrastructure,
) -> None:
    """A burst of failed sign-ins from one address (a fuzzer, an attacker behind the office NAT)."""
    infrastructure = with_policy(fast_infrastructure, delay_after=3, wait_after=5, max_wait=seconds(0.3))
    colleague = await make_caller(infrastructure)
    for n in range(10):
        await fail_login(infrastructure, f"guess-{n}-{uuid.uuid4().hex[:6]}@example.com", address=ATTACKER)

    admitted = await infrastructure.login_throttle.admit(email=colleague.email, address=ATTACKER)
    assert seconds(0) < admitted.wait <= seconds(0.3)
    tokens = await login(infrastructure, colleague.email, address=ATTACKER)
    assert infrastructure.tokens.decode_access(tokens.access_token).user_id == colleague.user_id


async def test_someone_without_the_password_cannot_lock_the_account_however_long_they_try(
    fast_infrastructure: Infrastructure,
) -> None:
    infrastructure = with_policy(fast_infrastructure, delay_after=3, wait_after=5, max_wait=seconds(0.3))
    owner = await make_caller(infrastructure)
    stop = asyncio.Event()
    guesses = {"checked": 0, "refused": 0}

    async def guess_from_everywhere(guesser: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                await login(infrastructure, owner.email, WRONG_PASSWORD, address=f"198.51.{guesser}.{n % 50}")
            except InvalidCredentialsException:
                guesses["checked"] += 1
            except TooManyLoginAttemptsException:
                guesses["refused"] += 1

    attack = [asyncio.create_task(guess_from_everywhere(guesser)) for guesser in range(5)]
    try:
        deadline = time.monotonic() + 60
        while guesses["checked"] < 20:
            assert time.monotonic() < deadline, guesses
            await asyncio.sleep(0.05)
        # Under attack every attempt at the account waits, the owner's too, and is then checked.
        admitted = await infrastructure.login_throttle.admit(email=owner.email, address=OWNER)
        assert seconds(0) < admitted.wait <= seconds(0.3)
        for _ in range(3):
            tokens = await login(infrastructure, owner.email, address=OWNER)
            assert infrastructure.tokens.decode_access(tokens.access_token).user_id == owner.user_id
    finally:
        stop.set()
        await asyncio.gather(*attack)


async def test_a_success_forgets_the_accounts_failures_and_the_pairs(fast_infrastructure: Infrastructure) -> None:
    infrastructure = with_policy(fast_infrastructure, delay_after=3, wait_after=3, first_delay=seconds(30))
    caller = await make_caller(infrastructure)
    for _ in range(2):
        await fail_login(infrastructure, caller.email, address=OWNER)
    await login(infrastructure, caller.email, address=OWNER)
    # The pair forgot its two failures: without that the second of these would be refused for 30 s.
    for _ in range(2):
        await fail_login(infrastructure, caller.email, address=OWNER)
    # The account forgot them too: with the two above it has two, short of a wait (from a clean address).
    admitted = await infrastructure.login_throttle.admit(email=caller.email, address=ATTACKER)
    assert admitted.wait == seconds(0)


async def test_without_redis_sign_in_is_not_throttled(fast_infrastructure: Infrastructure) -> None:
    throttle = LoginThrottle(None, ThrottlePolicy.from_settings(fast_infrastructure.settings))
    infrastructure = dataclasses.replace(fast_infrastructure, login_throttle=throttle)
    caller = await make_caller(infrastructure)
    for _ in range(3 * infrastructure.settings.login_wait_after):
        await fail_login(infrastructure, caller.email, address=ATTACKER)
    assert (await login(infrastructure, caller.email, address=ATTACKER)).access_token
