"""Key material: the shape of a key and the prefix authentication looks it up by."""

import pytest

from server.auth.api_key_format import PREFIX_LENGTH, new_key, split_key
from server.auth.tokens import hash_secret


def test_new_key_is_prefixed_random_and_hashed() -> None:
    key, prefix, secret_hash = new_key()
    assert key.startswith("adp_")
    assert len(key) == 47
    assert prefix == key[:PREFIX_LENGTH] == split_key(key)
    assert len(prefix) == 12
    assert secret_hash == hash_secret(key)
    assert key not in secret_hash
    assert new_key()[0] != key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "adp_",
        "adp_short",
        "xyz_" + "a" * 43,
        "ADP_" + "a" * 43,
        "adp_" + "a" * 42,
        "adp_" + "a" * 44,
        "adp_" + "a" * 42 + "=",
        "adp_" + "a" * 42 + "/",
        "adp_" + "a" * 42 + "\n",
        " adp_" + "a" * 43,
        "eyJhbGciOiJIUzI1NiJ9.e30.signature",
    ],
)
def test_split_key_rejects_what_cannot_be_a_key(key: str) -> None:
    assert split_key(key) is None


def test_split_key_accepts_every_url_safe_character() -> None:
    key = "adp_" + "Az09-_" * 7 + "x"
    assert split_key(key) == key[:12]
