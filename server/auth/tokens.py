"""Access tokens (short-lived JWTs) and refresh tokens (opaque, stored hashed)."""

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

import jwt

from server.exceptions import UnauthenticatedException

_ISSUER = "adplane"
_ALGORITHM = "HS256"


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    # The refresh-token family (sign-in) the token was issued for.
    family_id: uuid.UUID


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: dt.datetime


class InvalidTokenException(UnauthenticatedException):
    reason = "INVALID_TOKEN"


class TokenIssuer:
    def __init__(self, *, secret_key: str, access_ttl: dt.timedelta, refresh_ttl: dt.timedelta) -> None:
        # A key of its own, derived from SECRET_KEY, so a token of one kind never verifies as another.
        self._key = hmac.new(secret_key.encode(), b"adplane.access-token", hashlib.sha256).digest()
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def issue_access(self, *, user_id: uuid.UUID, family_id: uuid.UUID, now: dt.datetime) -> IssuedToken:
        expires_at = now + self.access_ttl
        claims = {
            "iss": _ISSUER,
            "sub": str(user_id),
            "fam": str(family_id),
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
        }
        return IssuedToken(token=jwt.encode(claims, self._key, algorithm=_ALGORITHM), expires_at=expires_at)

    def decode_access(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "sub", "fam", "iss"]},
            )
            return AccessClaims(user_id=uuid.UUID(claims["sub"]), family_id=uuid.UUID(claims["fam"]))
        except jwt.ExpiredSignatureError:
            raise InvalidTokenException("the access token has expired; refresh it", reason="TOKEN_EXPIRED") from None
        except (jwt.InvalidTokenError, ValueError):
            raise InvalidTokenException("the access token is invalid") from None

    def issue_refresh(self, *, now: dt.datetime) -> IssuedToken:
        return IssuedToken(token=secrets.token_urlsafe(32), expires_at=now + self.refresh_ttl)


def hash_secret(secret: str) -> str:
    """sha256 of a high-entropy secret (refresh tokens, API keys): what the database keeps."""
    return hashlib.sha256(secret.encode()).hexdigest()
