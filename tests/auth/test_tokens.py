"""Refresh-token rotation and revocation, access-token verification, the PrincipalResolver and
read_credentials, against the real database."""

import base64
import datetime as dt
import json
import uuid

import jwt
import pytest
from sqlalchemy import update

from server.api_keys.schemas import ApiKeyCreatedSchema, ApiKeyCreateRequestSchema
from server.auth.credentials import (
    ApiKeyCredentials,
    Credentials,
    InvalidCredentials,
    UserCredentials,
    read_credentials,
)
from server.auth.exceptions import CallerRevokedException, InvalidRefreshTokenException
from server.auth.principal import Principal, PrincipalKind
from server.auth.repository import StandingRepository
from server.auth.resolver import PrincipalResolver
from server.auth.roles import WorkspaceRole
from server.auth.tokens import InvalidTokenException, TokenIssuer, hash_secret
from server.composition import Infrastructure
from server.config import Settings
from server.db import new_id, utcnow
from server.exceptions import UnauthenticatedException
from server.signin.repository import RefreshTokenRepository
from server.signin.schemas import LoginRequestSchema, RefreshTokenRequestSchema, TokenPairSchema
from server.signin.service import RefreshTokenReplayed
from server.users.models import User
from server.workspaces.schemas import WorkspaceCreateRequestSchema
from tests.callers import PASSWORD, Caller, make_caller


async def refresh(infrastructure: Infrastructure, token: str) -> TokenPairSchema | RefreshTokenReplayed:
    async with infrastructure.unit_of_work() as uow:
        return await uow.signin.refresh(RefreshTokenRequestSchema(refresh_token=token))


async def refreshed(infrastructure: Infrastructure, token: str) -> TokenPairSchema:
    result = await refresh(infrastructure, token)
    assert isinstance(result, TokenPairSchema), result
    return result


async def logout(infrastructure: Infrastructure, token: str) -> None:
    async with infrastructure.unit_of_work() as uow:
        await uow.signin.logout(RefreshTokenRequestSchema(refresh_token=token))


async def resolve(
    infrastructure: Infrastructure, access_token: str, *, workspace_id: uuid.UUID | None = None
) -> Principal:
    claims = infrastructure.tokens.decode_access(access_token)
    return await PrincipalResolver(StandingRepository(infrastructure.read_engine)).resolve(
        UserCredentials(claims), workspace_id=workspace_id
    )


async def create_workspace(infrastructure: Infrastructure, name: str) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        workspace = await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name=name))
    return workspace.id


async def role_permissions(infrastructure: Infrastructure, name: str) -> frozenset[str]:
    """The permissions the migrations seed for a system role."""
    async with infrastructure.unit_of_work() as uow:
        roles = {role.name: role for role in await uow.users.list_roles()}
    return frozenset(roles[name].permissions)


# --- refresh tokens ---------------------------------------------------------------------------


async def test_refresh_rotates_the_refresh_token(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure)
    first = await refreshed(infrastructure, caller.refresh_token)
    assert first.refresh_token != caller.refresh_token
    tokens = infrastructure.tokens
    # The new pair continues the same sign-in, for the same user.
    new_claims = tokens.decode_access(first.access_token)
    old_claims = tokens.decode_access(caller.access_token)
    assert new_claims.user_id == caller.user_id
    assert new_claims.family_id == old_claims.family_id

    # The new refresh token works once, like the first one.
    second = await refreshed(infrastructure, first.refresh_token)
    assert second.refresh_token not in (caller.refresh_token, first.refresh_token)
    assert isinstance(await refresh(infrastructure, first.refresh_token), RefreshTokenReplayed)


async def test_replaying_a_spent_refresh_token_revokes_the_whole_sign_in(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure)
    rotated = await refreshed(infrastructure, caller.refresh_token)

    assert isinstance(await refresh(infrastructure, caller.refresh_token), RefreshTokenReplayed)

    # The token the legitimate holder got by rotation is dead too (the revocation was committed) ...
    with pytest.raises(InvalidRefreshTokenException):
        await refresh(infrastructure, rotated.refresh_token)
    # ... a second replay is no longer a replay, just an invalid token ...
    with pytest.raises(InvalidRefreshTokenException):
        await refresh(infrastructure, caller.refresh_token)
    # ... and the access tokens of the sign-in stop at once.
    for access_token in (caller.access_token, rotated.access_token):
        with pytest.raises(CallerRevokedException):
            await resolve(infrastructure, access_token)


async def test_replay_leaves_other_sign_ins_alone(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure)
    other = await make_caller(infrastructure, email=f"second-{caller.email}")
    await refreshed(infrastructure, caller.refresh_token)
    assert isinstance(await refresh(infrastructure, caller.refresh_token), RefreshTokenReplayed)

    assert (await resolve(infrastructure, other.access_token)).id == other.user_id
    await refreshed(infrastructure, other.refresh_token)


async def test_logout_revokes_the_sign_in(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure)
    rotated = await refreshed(infrastructure, caller.refresh_token)

    await logout(infrastructure, rotated.refresh_token)

    with pytest.raises(InvalidRefreshTokenException):
        await refresh(infrastructure, rotated.refresh_token)
    with pytest.raises(CallerRevokedException):
        await resolve(infrastructure, rotated.access_token)


async def test_logout_of_one_sign_in_keeps_the_others(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure)
    async with infrastructure.unit_of_work() as uow:
        second = await uow.signin.login(LoginRequestSchema(email=caller.email, password=PASSWORD), address="192.0.2.9")

    await logout(infrastructure, caller.refresh_token)

    assert (await resolve(infrastructure, second.access_token)).id == caller.user_id
    await refreshed(infrastructure, second.refresh_token)


async def test_logout_with_an_unknown_token_does_nothing(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure)
    await logout(infrastructure, "no-such-refresh-token")
    await refreshed(infrastructure, caller.refresh_token)


async def test_unknown_refresh_token_is_rejected(infrastructure: Infrastructure) -> None:
    with pytest.raises(InvalidRefreshTokenException):
        await refresh(infrastructure, "no-such-refresh-token")


async def test_expired_refresh_token_is_rejected(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure)
    family_id = new_id()
    expired = "an-expired-refresh-token-0123456789"
    sibling = "a-live-refresh-token-of-the-same-family"
    async with infrastructure.unit_of_work() as uow:
        repository = RefreshTokenRepository(uow.session)
        await repository.add(
            user_id=caller.user_id,
            family_id=family_id,
            token_hash=hash_secret(expired),
            expires_at=utcnow() - dt.timedelta(seconds=1),
        )
        await repository.add(
            user_id=caller.user_id,
            family_id=family_id,
            token_hash=hash_secret(sibling),
            expires_at=utcnow() + dt.timedelta(hours=1),
        )

    with pytest.raises(InvalidRefreshTokenException):
        await refresh(infrastructure, expired)
    # An expired token is not a replay: the sign-in is not revoked for it.
    rotated = await refreshed(infrastructure, sibling)
    assert infrastructure.tokens.decode_access(rotated.access_token).family_id == family_id


async def test_refresh_tokens_are_not_stored_in_clear(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure)
    async with infrastructure.unit_of_work() as uow:
        repository = RefreshTokenRepository(uow.session)
        assert await repository.find(token_hash=caller.refresh_token) is None
        assert await repository.find(token_hash=hash_secret(caller.refresh_token)) is not None


# --- access tokens (JWT) ----------------------------------------------------------------------


@pytest.fixture
def tokens(settings: Settings) -> TokenIssuer:
    return TokenIssuer(
        secret_key=settings.secret_key.get_secret_value(),
        access_ttl=dt.timedelta(seconds=settings.access_token_ttl_seconds),
        refresh_ttl=dt.timedelta(seconds=settings.refresh_token_ttl_seconds),
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_access_token_decodes_to_its_claims(tokens: TokenIssuer) -> None:
    user_id, family_id = uuid.uuid4(), uuid.uuid4()
    issued = tokens.issue_access(user_id=user_id, family_id=family_id, now=utcnow())
    claims = tokens.decode_access(issued.token)
    assert (claims.user_id, claims.family_id) == (user_id, family_id)
    assert issued.expires_at > utcnow()


def test_tampered_access_token_is_invalid(tokens: TokenIssuer) -> None:
    issued = tokens.issue_access(user_id=uuid.uuid4(), family_id=uuid.uuid4(), now=utcnow())
    header, payload, signature = issued.token.split(".")
    claims = json.loads(_unb64(payload))
    claims["sub"] = str(uuid.uuid4())  # someone else
    forged = ".".join((header, _b64(json.dumps(claims).encode()), signature))

    with pytest.raises(InvalidTokenException) as error:
        tokens.decode_access(forged)
    assert error.value.reason == "INVALID_TOKEN"


def test_access_token_signed_with_another_key_is_invalid(tokens: TokenIssuer, settings: Settings) -> None:
    other = TokenIssuer(
        secret_key="another-secret-key-that-is-long-enough-9876543210",
        access_ttl=dt.timedelta(seconds=settings.access_token_ttl_seconds),
        refresh_ttl=dt.timedelta(seconds=settings.refresh_token_ttl_seconds),
    )
    issued = other.issue_access(user_id=uuid.uuid4(), family_id=uuid.uuid4(), now=utcnow())
    with pytest.raises(InvalidTokenException) as error:
        tokens.decode_access(issued.token)
    assert error.value.reason == "INVALID_TOKEN"


def test_unsigned_access_token_is_invalid(tokens: TokenIssuer) -> None:
    now = int(utcnow().timestamp())
    claims = {"iss": "adplane", "sub": str(uuid.uuid4()), "fam": str(uuid.uuid4()), "iat": now, "exp": now + 600}
    unsigned = jwt.encode(claims, "", algorithm="none")
    with pytest.raises(InvalidTokenException) as error:
        tokens.decode_access(unsigned)
    assert error.value.reason == "INVALID_TOKEN"


@pytest.mark.parametrize("garbage", ["", "not-a-jwt", "a.b.c", "adp_" + "x" * 43])
def test_garbage_access_token_is_invalid(tokens: TokenIssuer, garbage: str) -> None:
    with pytest.raises(InvalidTokenException) as error:
        tokens.decode_access(garbage)
    assert error.value.reason == "INVALID_TOKEN"


def test_expired_access_token_says_so(tokens: TokenIssuer) -> None:
    issued = tokens.issue_access(
        user_id=uuid.uuid4(), family_id=uuid.uuid4(), now=utcnow() - tokens.access_ttl - dt.timedelta(minutes=1)
    )
    assert issued.expires_at < utcnow()
    with pytest.raises(InvalidTokenException) as error:
        tokens.decode_access(issued.token)
    assert error.value.reason == "TOKEN_EXPIRED"


# --- PrincipalResolver: users ------------------------------------------------------------------


async def test_user_token_resolves_to_the_users_standing(infrastructure: Infrastructure) -> None:
    workspace_id = await create_workspace(infrastructure, "Resolver Admin")
    other_workspace_id = await create_workspace(infrastructure, "Resolver Elsewhere")
    caller = await make_caller(infrastructure, roles=["staff"], memberships={workspace_id: WorkspaceRole.ADMIN})
    staff = await role_permissions(infrastructure, "staff")
    assert staff

    principal = await resolve(infrastructure, caller.access_token, workspace_id=workspace_id)
    assert principal.kind is PrincipalKind.USER
    assert principal.id == caller.user_id
    assert principal.user_id == caller.user_id
    assert not principal.superuser
    assert principal.system_permissions == staff
    assert principal.workspace_id == workspace_id
    assert principal.workspace_role is WorkspaceRole.ADMIN

    elsewhere = await resolve(infrastructure, caller.access_token, workspace_id=other_workspace_id)
    assert elsewhere.workspace_id == other_workspace_id
    assert elsewhere.workspace_role is None
    assert elsewhere.system_permissions == staff

    nowhere = await resolve(infrastructure, caller.access_token)
    assert nowhere.workspace_id is None
    assert nowhere.workspace_role is None


async def test_user_without_roles_has_no_system_permissions(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure)
    principal = await resolve(infrastructure, caller.access_token)
    assert principal.system_permissions == frozenset()
    assert not principal.superuser


async def test_superuser_resolves_as_superuser(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure, superuser=True)
    principal = await resolve(infrastructure, caller.access_token)
    assert principal.superuser
    assert principal.has_system_permission("users.manage")


async def test_deactivation_revokes_the_access_token_at_once(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure)
    assert (await resolve(infrastructure, caller.access_token)).id == caller.user_id
    async with infrastructure.unit_of_work() as uow:
        await uow.users.deactivate_user(caller.user_id)

    with pytest.raises(CallerRevokedException):
        await resolve(infrastructure, caller.access_token)
    with pytest.raises(InvalidRefreshTokenException):
        await refresh(infrastructure, caller.refresh_token)


async def test_user_deactivated_by_another_path_is_revoked(infrastructure: Infrastructure) -> None:
    """The check reads `is_active` itself, not only the revocation deactivate_user does (CLI, SQL)."""
    caller = await make_caller(infrastructure)
    async with infrastructure.unit_of_work() as uow:
        await uow.session.execute(update(User).where(User.id == caller.user_id).values(is_active=False))
    with pytest.raises(CallerRevokedException):
        await resolve(infrastructure, caller.access_token)


async def test_logout_revokes_the_access_token_at_once(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure)
    assert (await resolve(infrastructure, caller.access_token)).id == caller.user_id
    await logout(infrastructure, caller.refresh_token)
    with pytest.raises(CallerRevokedException):
        await resolve(infrastructure, caller.access_token)


async def test_token_of_a_deleted_user_is_revoked(infrastructure: Infrastructure) -> None:
    issued = infrastructure.tokens.issue_access(user_id=uuid.uuid4(), family_id=uuid.uuid4(), now=utcnow())
    with pytest.raises(CallerRevokedException):
        await resolve(infrastructure, issued.token)


async def test_invalid_credentials_raise_their_error(infrastructure: Infrastructure) -> None:
    error = InvalidTokenException("the access token is invalid")
    with pytest.raises(InvalidTokenException) as raised:
        await PrincipalResolver(StandingRepository(infrastructure.read_engine)).resolve(
            InvalidCredentials(error), workspace_id=None
        )
    assert raised.value is error


# --- PrincipalResolver: API keys ---------------------------------------------------------------


async def create_api_key(infrastructure: Infrastructure, creator: Caller, *, roles: list[str]) -> ApiKeyCreatedSchema:
    async with infrastructure.unit_of_work() as uow:
        return await uow.api_keys.create_api_key(
            ApiKeyCreateRequestSchema(name="reporting service", role_names=roles),
            actor=Principal(kind=PrincipalKind.USER, id=creator.user_id),
        )


async def resolve_key(infrastructure: Infrastructure, key: str, *, workspace_id: uuid.UUID | None = None) -> Principal:
    return await PrincipalResolver(StandingRepository(infrastructure.read_engine)).resolve(
        ApiKeyCredentials(key), workspace_id=workspace_id
    )


async def test_api_key_resolves_with_its_roles_permissions(infrastructure: Infrastructure) -> None:
    creator = await make_caller(infrastructure, superuser=True)
    created = await create_api_key(infrastructure, creator, roles=["staff"])
    assert created.secret is not None

    principal = await resolve_key(infrastructure, created.secret, workspace_id=uuid.uuid4())
    assert principal.kind is PrincipalKind.API_KEY
    assert principal.id == created.api_key.id
    assert principal.user_id is None
    assert not principal.superuser
    assert principal.system_permissions == await role_permissions(infrastructure, "staff")
    assert principal.workspace_role is None


async def test_api_key_with_a_wrong_secret_is_invalid(infrastructure: Infrastructure) -> None:
    creator = await make_caller(infrastructure, superuser=True)
    created = await create_api_key(infrastructure, creator, roles=["staff"])
    secret = created.secret
    assert secret is not None
    # Same prefix (the part looked up), another secret of the right shape.
    last = "A" if secret[-1] != "A" else "B"
    wrong = secret[:-1] + last

    with pytest.raises(InvalidTokenException):
        await resolve_key(infrastructure, wrong)


@pytest.mark.parametrize("key", ["adp_short", "adp_" + "x" * 43, "not-a-key-" + "x" * 37])
async def test_malformed_or_unknown_api_key_is_invalid(infrastructure: Infrastructure, key: str) -> None:
    with pytest.raises(InvalidTokenException):
        await resolve_key(infrastructure, key)


async def test_revoked_api_key_is_refused(infrastructure: Infrastructure) -> None:
    creator = await make_caller(infrastructure, superuser=True)
    created = await create_api_key(infrastructure, creator, roles=["staff"])
    assert created.secret is not None
    assert (await resolve_key(infrastructure, created.secret)).id == created.api_key.id

    async with infrastructure.unit_of_work() as uow:
        await uow.api_keys.revoke_api_key(created.api_key.id)

    with pytest.raises(CallerRevokedException):
        await resolve_key(infrastructure, created.secret)


# --- read_credentials --------------------------------------------------------------------------


def read(tokens: TokenIssuer, *metadata: tuple[str, str | bytes]) -> Credentials | None:
    return read_credentials(tuple(metadata), tokens=tokens)


API_KEY = "adp_" + "k" * 43


def test_no_credentials_is_none(tokens: TokenIssuer) -> None:
    assert read_credentials(None, tokens=tokens) is None
    assert read(tokens) is None
    assert read(tokens, ("x-request-id", "abc"), ("user-agent", "grpc-python")) is None


def test_x_api_key_header(tokens: TokenIssuer) -> None:
    assert read(tokens, ("x-api-key", API_KEY)) == ApiKeyCredentials(API_KEY)


def test_bearer_api_key(tokens: TokenIssuer) -> None:
    assert read(tokens, ("authorization", f"Bearer {API_KEY}")) == ApiKeyCredentials(API_KEY)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_jwt(tokens: TokenIssuer, scheme: str) -> None:
    user_id, family_id = uuid.uuid4(), uuid.uuid4()
    issued = tokens.issue_access(user_id=user_id, family_id=family_id, now=utcnow())

    credentials = read(tokens, ("authorization", f"{scheme} {issued.token}"))

    assert isinstance(credentials, UserCredentials)
    assert (credentials.claims.user_id, credentials.claims.family_id) == (user_id, family_id)


def _error_of(credentials: Credentials | None) -> UnauthenticatedException:
    assert isinstance(credentials, InvalidCredentials), credentials
    return credentials.error


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwYXNzd29yZA==", "Bearer", "Bearer   ", "Token abc", f"Basic {API_KEY}"]
)
def test_other_authorization_schemes_are_invalid(tokens: TokenIssuer, authorization: str) -> None:
    assert isinstance(_error_of(read(tokens, ("authorization", authorization))), UnauthenticatedException)


def test_bearer_with_a_bad_jwt_is_invalid(tokens: TokenIssuer) -> None:
    error = _error_of(read(tokens, ("authorization", "Bearer not.a.jwt")))
    assert isinstance(error, InvalidTokenException)
    assert error.reason == "INVALID_TOKEN"


def test_bearer_with_an_expired_jwt_says_expired(tokens: TokenIssuer) -> None:
    issued = tokens.issue_access(
        user_id=uuid.uuid4(), family_id=uuid.uuid4(), now=utcnow() - tokens.access_ttl - dt.timedelta(minutes=1)
    )
    error = _error_of(read(tokens, ("authorization", f"Bearer {issued.token}")))
    assert error.reason == "TOKEN_EXPIRED"
