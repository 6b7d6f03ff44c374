"""Spend-cap alerts, delivered: the sync records them in the outbox (`account.spend_cap_alert`).

Delivery is a structured WARNING log line for now (`spend cap alert`), which log-based alerting
picks up; e-mail or chat notifications plug in here.
"""

from collections.abc import Mapping
from typing import Any

import structlog

logger = structlog.get_logger("adplane.alerts")


async def notify_spend_cap_alert(payload: Mapping[str, Any]) -> None:
    logger.warning(
        "spend cap alert",
        account_id=payload.get("account_id"),
        workspace_id=payload.get("workspace_id"),
        percent=payload.get("percent"),
        spent_percent=payload.get("spent_percent"),
        outbox_id=payload.get("outbox_id"),
    )
