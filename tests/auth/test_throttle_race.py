"""Concurrent guesses cannot slip past the login limit."""

import asyncio

from server.auth.throttle import TooManyLoginAttemptsException
from server.composition import Infrastructure
from server.exceptions import UnauthenticatedException
from server.signin.schemas import LoginRequestSchema
from tests.callers import make_caller


async def test_concurrent_wrong_passwords_are_cut_off_at_the_limit(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure)
    attempts = 3 * infrastructure.settings.login_lockout_after

    async def guess() -> BaseException | None:
        try:
            async with infrastructure.unit_of_work() as uow:
                await uow.signin.login(LoginRequestSchema(email=caller.email, password="wrong guess"), address="a")
        except (UnauthenticatedException, TooManyLoginAttemptsException) as error:
            return error
        return None

    outcomes = await asyncio.gather(*(guess() for _ in range(attempts)))
    checked = [o for o in outcomes if isinstance(o, UnauthenticatedException)]
    refused = [o for o in outcomes if isinstance(o, TooManyLoginAttemptsException)]
    assert len(checked) <= infrastructure.settings.login_lockout_after
    assert len(checked) + len(refused) == attempts
