"""Every value Meta documents for an ad account's `account_status` and `disable_reason`, converted."""

import pytest

from server.accounts.meta_values import account_status_from_meta, disable_reason_from_meta
from server.accounts.models import MetaAccountStatus
from server.clients.meta import MetaAdAccount


def reported(*, account_status: int = 1, disable_reason: int = 0) -> MetaAdAccount:
    return MetaAdAccount(
        id="act_1",
        name="A",
        currency="EUR",
        timezone_name="Europe/Berlin",
        account_status=account_status,
        disable_reason=disable_reason,
    )


# https://developers.facebook.com/docs/marketing-api/reference/ad-account/ (account_status)
@pytest.mark.parametrize(
    ("code", "status"),
    [
        (1, MetaAccountStatus.ACTIVE),
        (2, MetaAccountStatus.DISABLED),
        (3, MetaAccountStatus.UNSETTLED),
        (7, MetaAccountStatus.PENDING_RISK_REVIEW),
        (8, MetaAccountStatus.PENDING_SETTLEMENT),
        (9, MetaAccountStatus.IN_GRACE_PERIOD),
        (100, MetaAccountStatus.PENDING_CLOSURE),
        (101, MetaAccountStatus.CLOSED),
        (201, None),  # any_active: a filter value, never an account's status
        (202, None),  # any_closed: likewise
        (4242, None),  # a code Meta adds later
    ],
)
def test_account_status(code: int, status: MetaAccountStatus | None) -> None:
    assert account_status_from_meta(reported(account_status=code)) is status


def test_every_platform_account_status_has_a_meta_code() -> None:
    converted = {account_status_from_meta(reported(account_status=code)) for code in (1, 2, 3, 7, 8, 9, 100, 101)}
    assert converted == set(MetaAccountStatus)


# (disable_reason)
@pytest.mark.parametrize(
    ("code", "stored"),
    [
        (0, ""),
        (1, "ADS_INTEGRITY_POLICY"),
        (2, "ADS_IP_REVIEW"),
        (3, "RISK_PAYMENT"),
        (4, "GRAY_ACCOUNT_SHUT_DOWN"),
        (5, "ADS_AFC_REVIEW"),
        (6, "BUSINESS_INTEGRITY_RAR"),
        (7, "PERMANENT_CLOSE"),
        (8, "UNUSED_RESELLER_ACCOUNT"),
        (9, "UNUSED_ACCOUNT"),
        (10, "UMBRELLA_AD_ACCOUNT"),
        (11, "BUSINESS_MANAGER_INTEGRITY_POLICY"),
        (12, "MISREPRESENTED_AD_ACCOUNT"),
        (13, "AOAB_DESHARE_LEGAL_ENTITY"),
        (14, "CTX_THREAD_REVIEW"),
        (15, "COMPROMISED_AD_ACCOUNT"),
        (99, "UNKNOWN"),
    ],
)
def test_disable_reason(code: int, stored: str) -> None:
    assert disable_reason_from_meta(reported(disable_reason=code)) == stored
