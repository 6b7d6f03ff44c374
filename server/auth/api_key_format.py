"""API key material: `adp_` + 43 URL-safe characters, of which the first 12 are the prefix.

The prefix is stored in clear and looked up on every call; the whole key is stored as its sha256.
Here, next to the credentials parsing, because authentication reads keys on every call; the
api_keys module issues them with `new_key`.
"""

import re
import secrets

from server.auth.credentials import API_KEY_PREFIX
from server.auth.tokens import hash_secret

# secrets.token_urlsafe(32): 32 random bytes, base64url without padding.
_RANDOM_LENGTH = 43
PREFIX_LENGTH = 12
_KEY = re.compile(rf"{re.escape(API_KEY_PREFIX)}[A-Za-z0-9_-]{{{_RANDOM_LENGTH}}}")


def split_key(key: str) -> str | None:
    """The prefix a key is looked up by, or None when it cannot be a key we issued."""
    if _KEY.fullmatch(key) is None:
        return None
    return key[:PREFIX_LENGTH]


def new_key() -> tuple[str, str, str]:
    """A fresh key, its prefix and the hash the database keeps."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[:PREFIX_LENGTH], hash_secret(key)
