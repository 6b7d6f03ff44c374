"""Meta's ad account `account_status` and `disable_reason`, converted once for creation and sync."""

import structlog

from server.accounts.models import MetaAccountStatus
from server.clients.meta.models import MetaAdAccount

logger = structlog.get_logger("adplane.accounts")


def account_status_from_meta(reported: MetaAdAccount) -> MetaAccountStatus | None:
    """The platform's status for Meta's `account_status` code; None (logged) for a code it does not
    know: one Meta added, or the aggregates `any_active` / `any_closed`, which only filter queries."""
    try:
        return MetaAccountStatus(reported.account_status_name)
    except ValueError:
        logger.warning("unknown Meta account status", account_id=reported.id, account_status=reported.account_status)
        return None


def disable_reason_from_meta(reported: MetaAdAccount) -> str:
    """Meta's `disable_reason` as stored: "" for none (0), otherwise its name in upper case
    (`RISK_PAYMENT`), `UNKNOWN` for a code Meta added since."""
    return "" if reported.disable_reason == 0 else reported.disable_reason_name.upper()
