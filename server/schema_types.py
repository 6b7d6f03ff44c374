"""Field types shared by the service schemas: names, currencies, time zones, Meta ids."""

import re
import uuid
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, StringConstraints

from server.clients.meta.timezones import is_supported_timezone


def _printable(value: str) -> str:
    if any(not ch.isprintable() for ch in value):
        raise ValueError("must not contain control characters")
    return value


# Ids are accepted in one spelling only: lowercase, hyphenated (as the server writes them). pydantic's
# UUID would also take upper case, braces, `urn:uuid:` and no hyphens, so one resource would have
# many URLs (and many cache keys, log spellings, rate-limit keys).
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _canonical_uuid(value: object) -> object:
    if isinstance(value, str) and not CANONICAL_UUID.fullmatch(value):
        raise ValueError("must be a UUID in canonical form (lowercase, hyphenated)")
    return value


# An id given by a caller (UUID instances pass as they are).
Id = Annotated[uuid.UUID, BeforeValidator(_canonical_uuid)]

Name100 = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), AfterValidator(_printable)
]
# A system role's name (roles.name is at most 50 characters).
RoleName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50), AfterValidator(_printable)
]
Name200 = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_printable)
]

# Currencies Meta accepts for ad accounts.
META_CURRENCIES = frozenset(
    [
        "AED",
        "ARS",
        "AUD",
        "BDT",
        "BOB",
        "BRL",
        "CAD",
        "CHF",
        "CLP",
        "CNY",
        "COP",
        "CRC",
        "CZK",
        "DKK",
        "DZD",
        "EGP",
        "EUR",
        "GBP",
        "GTQ",
        "HKD",
        "HNL",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "ISK",
        "JPY",
        "KES",
        "KRW",
        "LKR",
        "MAD",
        "MOP",
        "MXN",
        "MYR",
        "NGN",
        "NIO",
        "NOK",
        "NZD",
        "PEN",
        "PHP",
        "PKR",
        "PLN",
        "PYG",
        "QAR",
        "RON",
        "RSD",
        "SAR",
        "SEK",
        "SGD",
        "THB",
        "TRY",
        "TWD",
        "UAH",
        "USD",
        "UYU",
        "VES",
        "VND",
        "ZAR",
    ]
)


def _meta_currency(value: str) -> str:
    if value not in META_CURRENCIES:
        raise ValueError("must be an ISO 4217 currency Meta supports for ad accounts, e.g. USD or EUR")
    return value


Currency = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_upper=True, min_length=3, max_length=3),
    AfterValidator(_meta_currency),
]


def _time_zone(value: str) -> str:
    # Ad accounts take Meta's time zones only (a subset of IANA's), fixed at creation: refusing an
    # unsupported one here beats a request that fails after approval.
    if not is_supported_timezone(value):
        raise ValueError("must be an IANA time zone Meta supports for ad accounts, e.g. Europe/Berlin")
    return value


TimeZone = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64), AfterValidator(_time_zone)]

MetaBusinessId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\d{1,20}$")]

# Money in minor units; 10^15 is far above any real cap and well inside int64.
MAX_MINOR_AMOUNT = 10**15
