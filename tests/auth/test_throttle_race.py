"""Concurrent guesses cannot slip past the login limit: each attempt is counted before its
password is checked."""

import asyncio
import datetime as dt

from server.auth.throttle import TooManyLoginAttemptsException
from server.composition import Infrastructure
from server.exceptions import UnauthenticatedException
from server.signin.schemas import LoginRequestSchema
from tests.auth.test_throttle import with_policy
from tests.callers import make_caller


async def test_concurrent_wrong_passwords_are_cut_off_at_the_limit(infrastructure: Infrastructure) -> None:
    # A first delay far longer than the test: no attempt beyond the limit can be admitted in time.
    throttled = with_policy(infrastructure, first_delay=dt.timedelta(seconds=60))
    caller = await make_caller(throttled)
    limit = throttled.settings.login_delay_after
    attempts = 3 * limit

    async def guess() -> BaseException | None:
        try:
            async with throttled.unit_of_work() as uow:
                await uow.signin.login(LoginRequestSchema(email=caller.email, password="wrong guess"), address="a")
        except (UnauthenticatedException, TooManyLoginAttemptsException) as error:
            return error
        return None

    outcomes = await asyncio.gather(*(guess() for _ in range(attempts)))
    checked = [o for o in outcomes if isinstance(o, UnauthenticatedException)]
    refused = [o for o in outcomes if isinstance(o, TooManyLoginAttemptsException)]
    assert len(checked) == limit
    assert len(refused) == attempts - limit
