"""IANA time zone names -> Meta's numeric `timezone_id`, which ad account creation takes.

Ids 0-125 are taken from Meta's "Ad Account Timezone IDs" reference, where every copy we checked
agrees; later ids differ between copies, so only a few are listed and each is marked. An ad account's
time zone cannot be changed once it exists, so a zone is added here only with its id checked against
the reference of the pinned Graph version.
"""

from types import MappingProxyType

from server.clients.meta.exceptions import MetaUnsupportedTimezoneError

META_TIMEZONE_IDS: MappingProxyType[str, int] = MappingProxyType(
    {
        "America/Los_Angeles": 1,
        "America/Denver": 2,
        "Pacific/Honolulu": 3,
        "America/Anchorage": 4,
        "America/Phoenix": 5,
        "America/Chicago": 6,
        "America/New_York": 7,
        "Asia/Dubai": 8,
        "America/Argentina/Buenos_Aires": 10,
        "Europe/Vienna": 12,
        "Australia/Perth": 13,
        "Australia/Sydney": 15,
        "Asia/Dhaka": 17,
        "Europe/Brussels": 18,
        "Europe/Sofia": 19,
        "America/Sao_Paulo": 25,
        "America/Vancouver": 28,
        "America/Edmonton": 30,
        "America/Toronto": 35,
        "America/Halifax": 37,
        "Europe/Zurich": 39,
        "America/Santiago": 41,
        "Asia/Shanghai": 42,
        "America/Bogota": 43,
        "Europe/Prague": 46,
        "Europe/Berlin": 47,
        "Europe/Copenhagen": 48,
        "Europe/Tallinn": 52,
        "Africa/Cairo": 53,
        "Europe/Madrid": 55,
        "Europe/Helsinki": 56,
        "Europe/Paris": 57,
        "Europe/London": 58,
        "Europe/Athens": 60,
        "Asia/Hong_Kong": 62,
        "Europe/Zagreb": 64,
        "Europe/Budapest": 65,
        "Asia/Jakarta": 66,
        "Europe/Dublin": 69,
        "Asia/Jerusalem": 70,
        "Asia/Kolkata": 71,
        "Europe/Rome": 74,
        "Asia/Tokyo": 77,
        "Africa/Nairobi": 78,
        "Asia/Seoul": 79,
        "Europe/Vilnius": 83,
        "Europe/Luxembourg": 84,
        "Europe/Riga": 85,
        "America/Mexico_City": 94,
        "Asia/Kuala_Lumpur": 95,
        "Africa/Lagos": 96,
        "Europe/Amsterdam": 98,
        "Europe/Oslo": 99,
        "Pacific/Auckland": 100,
        "America/Lima": 103,
        "Asia/Manila": 104,
        "Asia/Karachi": 105,
        "Europe/Warsaw": 106,
        "Europe/Lisbon": 110,
        "Asia/Qatar": 112,
        "Europe/Bucharest": 113,
        "Europe/Belgrade": 114,
        "Europe/Moscow": 116,
        # Beyond 125: verify against the reference before relying on these.
        "Asia/Singapore": 128,
        "UTC": 474,
    }
)


def meta_timezone_id(timezone_name: str) -> int:
    """Meta's `timezone_id` for an IANA zone name; raises MetaUnsupportedTimezoneError if unmapped."""
    try:
        return META_TIMEZONE_IDS[timezone_name]
    except KeyError:
        raise MetaUnsupportedTimezoneError(timezone_name) from None


def is_supported_timezone(timezone_name: str) -> bool:
    """For validating a request before it is approved, long before a worker calls Meta."""
    return timezone_name in META_TIMEZONE_IDS
