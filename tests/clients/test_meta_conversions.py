"""Time zones, currency units and status codes as Meta spells them."""

import pytest

from server.clients.meta import MetaAdAccount, MetaUnsupportedTimezoneError
from server.clients.meta.currencies import minor_to_major
from server.clients.meta.statuses import account_status_name, disable_reason_name
from server.clients.meta.timezones import META_TIMEZONE_IDS, is_supported_timezone, meta_timezone_id


@pytest.mark.parametrize(
    ("name", "timezone_id"),
    [
        ("America/Los_Angeles", 1),
        ("America/New_York", 7),
        ("Europe/Berlin", 47),
        ("Europe/London", 58),
        ("UTC", 474),
    ],
)
def test_common_zones_have_meta_ids(name: str, timezone_id: int) -> None:
    assert meta_timezone_id(name) == timezone_id


def test_zone_ids_are_unique_and_cover_a_few_dozen_zones() -> None:
    assert len(META_TIMEZONE_IDS) >= 36
    assert len(set(META_TIMEZONE_IDS.values())) == len(META_TIMEZONE_IDS)


def test_unmapped_zone_is_a_domain_error() -> None:
    assert not is_supported_timezone("Europe/Atlantis")
    with pytest.raises(MetaUnsupportedTimezoneError, match="Europe/Atlantis"):
        meta_timezone_id("Europe/Atlantis")


@pytest.mark.parametrize(
    ("minor", "currency", "major"),
    [(12_345, "USD", "123.45"), (7, "EUR", "0.07"), (0, "GBP", "0.00"), (5_000, "JPY", "5000"), (990, "HUF", "990")],
)
def test_minor_units_become_whole_units(minor: int, currency: str, major: str) -> None:
    assert minor_to_major(minor, currency) == major


@pytest.mark.parametrize(("minor", "currency"), [(-1, "USD"), (100, "usd"), (100, "EURO")])
def test_bad_amounts_and_currency_codes_are_refused(minor: int, currency: str) -> None:
    with pytest.raises(ValueError, match=r"negative|currency"):
        minor_to_major(minor, currency)


def test_codes_have_names_and_unknown_codes_do_not_fail() -> None:
    assert [account_status_name(code) for code in (1, 2, 3, 7, 101, 4242)] == [
        "active",
        "disabled",
        "unsettled",
        "pending_risk_review",
        "closed",
        "unknown",
    ]
    assert [disable_reason_name(code) for code in (0, 3, 15, 99)] == [
        "none",
        "risk_payment",
        "compromised_ad_account",
        "unknown",
    ]


def test_ad_account_parses_graph_money_strings() -> None:
    account = MetaAdAccount.model_validate(
        {
            "id": "act_1",
            "name": "A",
            "currency": "USD",
            "timezone_name": "UTC",
            "account_status": 1,
            "spend_cap": "",
            "amount_spent": "1234",
            "some_new_field": True,
        }
    )

    assert (account.spend_cap, account.amount_spent, account.disable_reason, account.account_id) == (0, 1234, 0, "1")
