"""What a caller presents: `authorization: Bearer <JWT or API key>` or `x-api-key: <key>`."""

from collections.abc import Iterable
from dataclasses import dataclass

from server.auth.tokens import AccessClaims, TokenIssuer
from server.exceptions import UnauthenticatedException

API_KEY_PREFIX = "adp_"


@dataclass(frozen=True)
class UserCredentials:
    claims: AccessClaims


@dataclass(frozen=True)
class ApiKeyCredentials:
    key: str


@dataclass(frozen=True)
class InvalidCredentials:
    """Credentials were sent but are no good; only RPCs that need a caller reject them."""

    error: UnauthenticatedException


type Credentials = UserCredentials | ApiKeyCredentials | InvalidCredentials


def read_credentials(metadata: Iterable[tuple[str, str | bytes]] | None, *, tokens: TokenIssuer) -> Credentials | None:
    """Parse and verify the signature of what the caller sent; None when they sent nothing."""
    values = {key: value for key, value in metadata or () if isinstance(value, str)}
    api_key = values.get("x-api-key")
    if api_key:
        return ApiKeyCredentials(api_key.strip())
    authorization = values.get("authorization")
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return InvalidCredentials(
            UnauthenticatedException("send `authorization: Bearer <token>`", reason="INVALID_AUTHORIZATION_HEADER")
        )
    if token.startswith(API_KEY_PREFIX):
        return ApiKeyCredentials(token)
    try:
        return UserCredentials(tokens.decode_access(token))
    except UnauthenticatedException as error:
        return InvalidCredentials(error)
