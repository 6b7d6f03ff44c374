"""Access tokens (short-lived JWTs) and refresh tokens (opaque, stored hashed)."""

import datetime as dt
import hashlib
import hmac
import secrets
import time
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
    # When the token expires (Unix seconds); checked again while a stream stays open.
    expires_at: int = 0


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: dt.datetime


class InvalidTokenException(UnauthenticatedException):
    reason = "INVALID_TOKEN"


# Verified access tokens kept per process; past this many the oldest are forgotten first.
VERIFIED_TOKENS_KEPT = 10_000


class TokenIssuer:
    def __init__(self, *, secret_key: str, access_ttl: dt.timedelta, refresh_ttl: dt.timedelta) -> None:
        # A key of its own, derived from SECRET_KEY, so a token of one kind never verifies as another.
        self._key = hmac.new(secret_key.encode(), b"adplane.access-token", hashlib.sha256).digest()
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        # token -> (claims, expiry as a Unix time): a signature verified once holds until the token
        # expires. Only the signature and expiry are cached; whether the sign-in still stands is
        # checked per call by the authorization step.
        self._verified: dict[str, tuple[AccessClaims, int]] = {}

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
        verified = self._verified.get(token)
        if verified is not None:
            if time.time() < verified[1]:
                return verified[0]
            del self._verified[token]
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "sub", "fam", "iss"]},
            )
            expires = int(claims["exp"])
            access = AccessClaims(
                user_id=uuid.UUID(claims["sub"]), family_id=uuid.UUID(claims["fam"]), expires_at=expires
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenException("the access token has expired; refresh it", reason="TOKEN_EXPIRED") from None
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise InvalidTokenException("the access token is invalid") from None
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (access, expires)
        return access

    def issue_refresh(self, *, now: dt.datetime) -> IssuedToken:
        return IssuedToken(token=secrets.token_urlsafe(32), expires_at=now + self.refresh_ttl)


def hash_secret(secret: str) -> str:
    """sha256 of a high-entropy secret (refresh tokens, API keys): what the database keeps."""
    return hashlib.sha256(secret.encode()).hexdigest()
