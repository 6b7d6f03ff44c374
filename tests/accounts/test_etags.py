"""server.etags: the weak etags of versioned resources, and the caller's own conflict for a bad one."""

import uuid

import pytest

from server.accounts.exceptions import AccountEtagMismatchException
from server.etags import etag_of, version_of
from server.exceptions import ConflictException

ACCOUNT_ID = uuid.UUID("01900000-0000-7000-8000-000000000001")


def mismatch() -> ConflictException:
    return AccountEtagMismatchException(ACCOUNT_ID)


@pytest.mark.parametrize("version", [1, 2, 42, 10**17])
def test_an_etag_names_its_version(version: int) -> None:
    assert etag_of(version) == f'W/"{version}"'
    assert version_of(etag_of(version), mismatch=mismatch) == version


def test_no_etag_means_any_version() -> None:
    assert version_of("", mismatch=mismatch) is None


@pytest.mark.parametrize(
    "etag",
    ['"1"', "W/1", 'W/"one"', 'W/"-1"', 'W/""', 'w/"1"', ' W/"1"', 'W/"1"\n', 'W/"1234567890123456789"'],
)
def test_an_etag_never_issued_raises_the_callers_conflict(etag: str) -> None:
    with pytest.raises(AccountEtagMismatchException) as raised:
        version_of(etag, mismatch=mismatch)
    assert raised.value.reason == "ETAG_MISMATCH"
    assert str(ACCOUNT_ID) in str(raised.value)
