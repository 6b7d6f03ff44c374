"""Verified access tokens are kept until they expire: the signature is checked once per process,
expiry on every call, and a token that differs in any character is verified afresh."""

import datetime as dt
import time
import uuid

import jwt
import pytest

from server.auth import tokens as tokens_module
from server.auth.tokens import InvalidTokenException, TokenIssuer
from tests.waits import eventually

SECRET = "test-secret-key-that-is-long-enough-0123456789"


def issuer(ttl_seconds: int = 60) -> TokenIssuer:
    return TokenIssuer(
        secret_key=SECRET, access_ttl=dt.timedelta(seconds=ttl_seconds), refresh_ttl=dt.timedelta(days=1)
    )


def test_a_verified_token_is_not_verified_again(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = issuer()
    user_id, family_id = uuid.uuid4(), uuid.uuid4()
    token = tokens.issue_access(user_id=user_id, family_id=family_id, now=dt.datetime.now(dt.UTC)).token
    first = tokens.decode_access(token)

    def no_decoding(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("verified again")

    monkeypatch.setattr(jwt, "decode", no_decoding)
    assert tokens.decode_access(token) == first
    assert (first.user_id, first.family_id) == (user_id, family_id)


async def test_a_kept_token_still_expires() -> None:
    tokens = issuer(ttl_seconds=30)
    # Issued 28.5 s ago: expires within the next two seconds (exp is whole seconds).
    issued = tokens.issue_access(
        user_id=uuid.uuid4(), family_id=uuid.uuid4(), now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=28.5)
    )
    tokens.decode_access(issued.token)
    expiry = int(issued.expires_at.timestamp())
    await eventually(lambda: time.time() > expiry, within=5, what="the token's expiry time")
    with pytest.raises(InvalidTokenException) as raised:
        tokens.decode_access(issued.token)
    assert raised.value.reason == "TOKEN_EXPIRED"


def test_a_token_changed_in_one_character_is_verified_afresh() -> None:
    tokens = issuer()
    token = tokens.issue_access(user_id=uuid.uuid4(), family_id=uuid.uuid4(), now=dt.datetime.now(dt.UTC)).token
    tokens.decode_access(token)
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(InvalidTokenException):
        tokens.decode_access(tampered)


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens_module, "VERIFIED_TOKENS_KEPT", 3)
    tokens = issuer()
    now = dt.datetime.now(dt.UTC)
    issued = [tokens.issue_access(user_id=uuid.uuid4(), family_id=uuid.uuid4(), now=now).token for _ in range(5)]
    for token in issued:
        tokens.decode_access(token)
    assert len(tokens._verified) == 3
    assert list(tokens._verified) == issued[2:]
