"""Meta's currency offsets: how many of Meta's amount units make one unit of the currency.

Meta reports `spend_cap` and `amount_spent` as integers in these units (cents for USD, whole yen for
JPY) and this client passes them on unchanged as "minor units". Meta's offset is not always the ISO 4217
exponent: HUF, TWD, COP, CRC, IDR and ISK have offset 1 although ISO gives them decimals, and BHD,
JOD and KWD have offset 100 although ISO gives them three decimals. Writing a spend cap takes the
amount in whole currency units, so the client divides by the offset.
"""

import re
from decimal import Decimal

# From Meta's "Currencies" reference; every other supported currency has offset 100.
OFFSET_ONE_CURRENCIES = frozenset({"CLP", "COP", "CRC", "HUF", "IDR", "ISK", "JPY", "KRW", "PYG", "TWD", "VND"})
CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")


def currency_offset(currency: str) -> int:
    if not CURRENCY_CODE.fullmatch(currency):
        raise ValueError(f"not an ISO 4217 currency code: {currency!r}")
    return 1 if currency in OFFSET_ONE_CURRENCIES else 100


def minor_to_major(amount_minor: int, currency: str) -> str:
    """`12345, "USD"` -> `"123.45"`; exact (Decimal), as Graph takes spend caps in whole units."""
    if amount_minor < 0:
        raise ValueError(f"amount must not be negative: {amount_minor}")
    offset = currency_offset(currency)
    if offset == 1:
        return str(amount_minor)
    return format(Decimal(amount_minor).scaleb(-2), "f")
