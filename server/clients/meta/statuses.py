"""Names for Meta's numeric ad account codes (`account_status`, `disable_reason`).

Unknown codes map to "unknown" instead of failing: Meta adds codes, and a sync must not stop on one.
"""

from types import MappingProxyType

UNKNOWN = "unknown"

ACCOUNT_STATUS_NAMES: MappingProxyType[int, str] = MappingProxyType(
    {
        1: "active",
        2: "disabled",
        3: "unsettled",
        7: "pending_risk_review",
        8: "pending_settlement",
        9: "in_grace_period",
        100: "pending_closure",
        101: "closed",
        201: "any_active",
        202: "any_closed",
    }
)

DISABLE_REASON_NAMES: MappingProxyType[int, str] = MappingProxyType(
    {
        0: "none",
        1: "ads_integrity_policy",
        2: "ads_ip_review",
        3: "risk_payment",
        4: "gray_account_shut_down",
        5: "ads_afc_review",
        6: "business_integrity_rar",
        7: "permanent_close",
        8: "unused_reseller_account",
        9: "unused_account",
        10: "umbrella_ad_account",
        11: "business_manager_integrity_policy",
        12: "misrepresented_ad_account",
        13: "aoab_deshare_legal_entity",
        14: "ctx_thread_review",
        15: "compromised_ad_account",
    }
)


def account_status_name(code: int) -> str:
    return ACCOUNT_STATUS_NAMES.get(code, UNKNOWN)


def disable_reason_name(code: int) -> str:
    return DISABLE_REASON_NAMES.get(code, UNKNOWN)
