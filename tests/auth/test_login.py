"""SigninService.login against the real database and Redis: credentials and deactivation (throttling:
test_throttle.py)."""

import uuid

import pytest
from sqlalchemy import select

from server.auth.exceptions import InvalidCredentialsException
from server.composition import Infrastructure
from server.db import utcnow
from server.signin.schemas import LoginRequestSchema, TokenPairSchema
from server.users.models import User
from tests.callers import PASSWORD, make_caller

WRONG_PASSWORD = "not the right password"
ADDRESS = "192.0.2.10"


async def login(
    infrastructure: Infrastructure, email: str, password: str = PASSWORD, *, address: str = ADDRESS
) -> TokenPairSchema:
    async with infrastructure.unit_of_work() as uow:
        return await uow.signin.login(LoginRequestSchema(email=email, password=password), address=address)


async def fail_login(infrastructure: Infrastructure, email: str, *, address: str = ADDRESS) -> None:
    with pytest.raises(InvalidCredentialsException):
        await login(infrastructure, email, WRONG_PASSWORD, address=address)


async def test_login_returns_tokens_for_the_user(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure)
    before = utcnow()
    tokens = await login(infrastructure, caller.email)

    claims = infrastructure.tokens.decode_access(tokens.access_token)
    assert claims.user_id == caller.user_id
    assert tokens.refresh_token
    assert tokens.refresh_token != tokens.access_token
    assert tokens.access_token_expires_at > before
    assert tokens.refresh_token_expires_at > tokens.access_token_expires_at


async def stored_hash(infrastructure: Infrastructure, user_id: uuid.UUID) -> str:
    async with infrastructure.sessions() as session:
        stored = await session.scalar(select(User.password_hash).where(User.id == user_id))
    assert stored is not None
    return stored


async def test_login_rehashes_a_password_hashed_with_older_parameters(
    infrastructure: Infrastructure, fast_infrastructure: Infrastructure
) -> None:
    """A user created under cheaper argon2 parameters signs in under the current ones: the hash is
    upgraded at that sign-in (the only moment the password is known), and signing in still works."""
    caller = await make_caller(fast_infrastructure)
    old = await stored_hash(infrastructure, caller.user_id)
    assert infrastructure.passwords.needs_rehash(old)

    await login(infrastructure, caller.email)

    new = await stored_hash(infrastructure, caller.user_id)
    assert new != old
    assert not infrastructure.passwords.needs_rehash(new)
    await login(infrastructure, caller.email)
    assert await stored_hash(infrastructure, caller.user_id) == new


async def test_a_failed_login_does_not_rehash(
    infrastructure: Infrastructure, fast_infrastructure: Infrastructure
) -> None:
    caller = await make_caller(fast_infrastructure)
    old = await stored_hash(infrastructure, caller.user_id)
    await fail_login(infrastructure, caller.email)
    assert await stored_hash(infrastructure, caller.user_id) == old


async def test_each_login_starts_a_sign_in_of_its_own(fast_infrastructure: Infrastructure) -> None:
    caller = await make_caller(fast_infrastructure)
    first = await login(fast_infrastructure, caller.email)
    second = await login(fast_infrastructure, caller.email)
    tokens = fast_infrastructure.tokens
    assert tokens.decode_access(first.access_token).family_id != tokens.decode_access(second.access_token).family_id
    assert first.refresh_token != second.refresh_token


async def test_wrong_password_and_unknown_email_fail_alike(fast_infrastructure: Infrastructure) -> None:
    caller = await make_caller(fast_infrastructure)
    with pytest.raises(InvalidCredentialsException) as wrong_password:
        await login(fast_infrastructure, caller.email, WRONG_PASSWORD)
    with pytest.raises(InvalidCredentialsException) as unknown_email:
        await login(fast_infrastructure, "nobody@example.com", PASSWORD)

    assert type(wrong_password.value) is type(unknown_email.value)
    assert wrong_password.value.message == unknown_email.value.message
    assert wrong_password.value.reason == unknown_email.value.reason
    assert wrong_password.value.metadata == unknown_email.value.metadata


async def test_deactivated_user_cannot_log_in(fast_infrastructure: Infrastructure) -> None:
    caller = await make_caller(fast_infrastructure)
    async with fast_infrastructure.unit_of_work() as uow:
        await uow.users.deactivate_user(caller.user_id)

    with pytest.raises(InvalidCredentialsException) as deactivated:
        await login(fast_infrastructure, caller.email, PASSWORD)
    with pytest.raises(InvalidCredentialsException) as unknown:
        await login(fast_infrastructure, "nobody@example.com", PASSWORD)
    # Nothing tells the caller that the account exists.
    assert deactivated.value.message == unknown.value.message


@pytest.mark.parametrize("typed", ["Mixed.Case@Example.COM", "MIXED.CASE@EXAMPLE.COM", "  mixed.case@example.com  "])
async def test_email_is_case_insensitive(fast_infrastructure: Infrastructure, typed: str) -> None:
    caller = await make_caller(fast_infrastructure, email="Mixed.Case@Example.com")
    tokens = await login(fast_infrastructure, typed)
    assert fast_infrastructure.tokens.decode_access(tokens.access_token).user_id == caller.user_id


async def test_user_stored_with_a_mixed_case_email_can_log_in(fast_infrastructure: Infrastructure) -> None:
    """Rows written by other paths (CLI, database) may keep capitals; sign-in still finds them."""
    password_hash = await fast_infrastructure.passwords.hash(PASSWORD)
    async with fast_infrastructure.unit_of_work() as uow:
        user = User(email="Legacy.User@Example.com", full_name="Legacy", password_hash=password_hash)
        uow.session.add(user)
    tokens = await login(fast_infrastructure, "legacy.user@example.com")
    assert fast_infrastructure.tokens.decode_access(tokens.access_token).user_id == user.id
