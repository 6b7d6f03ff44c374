"""Every value Meta documents for a business's `verification_status`, converted."""

import pytest

from server.business_managers.meta_values import VERIFICATION_STATUSES, verification_status_from_meta
from server.business_managers.models import BusinessVerificationStatus

# https://developers.facebook.com/docs/graph-api/reference/business/ (verification_status)
DOCUMENTED = {
    "expired": BusinessVerificationStatus.FAILED,
    "failed": BusinessVerificationStatus.FAILED,
    "ineligible": BusinessVerificationStatus.FAILED,
    "not_verified": BusinessVerificationStatus.NOT_VERIFIED,
    "pending": BusinessVerificationStatus.PENDING,
    "pending_need_more_info": BusinessVerificationStatus.PENDING,
    "pending_submission": BusinessVerificationStatus.PENDING,
    "rejected": BusinessVerificationStatus.FAILED,
    "revoked": BusinessVerificationStatus.FAILED,
    "verified": BusinessVerificationStatus.VERIFIED,
}


@pytest.mark.parametrize(("value", "status"), sorted(DOCUMENTED.items()))
def test_verification_status(value: str, status: BusinessVerificationStatus) -> None:
    assert verification_status_from_meta(value) is status


def test_the_table_is_exactly_the_documented_values() -> None:
    assert dict(VERIFICATION_STATUSES) == DOCUMENTED


def test_a_value_meta_adds_later_is_not_guessed() -> None:
    assert verification_status_from_meta("under_review") is None
