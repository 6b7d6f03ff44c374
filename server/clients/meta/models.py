"""What the Graph API returns, as the workers use it."""

import datetime as dt
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator

from server.clients.meta.exceptions import MetaError
from server.clients.meta.statuses import account_status_name, disable_reason_name

AdAccountId = Annotated[str, StringConstraints(pattern=r"^act_\d+$")]
NumericId = Annotated[str, StringConstraints(pattern=r"^\d+$")]

# The tasks a user can be given on an ad account (Graph's `tasks` enum).
MetaAccountTask = Literal["MANAGE", "ADVERTISE", "ANALYZE", "DRAFT", "AA_ANALYZE"]


class _GraphObject(BaseModel):
    # Graph adds fields over versions; ignoring them keeps a version bump from breaking parsing.
    model_config = ConfigDict(frozen=True, extra="ignore")


class MetaBusiness(_GraphObject):
    id: NumericId
    name: str
    # e.g. "verified", "not_verified", "pending", "failed"; kept as Meta spells it.
    verification_status: str


class MetaAdAccount(_GraphObject):
    id: AdAccountId
    name: str
    currency: str
    timezone_name: str
    account_status: int
    disable_reason: int = 0
    # In Meta's currency units (see currencies.py); 0 = no spend cap.
    spend_cap: int = 0
    amount_spent: int = 0

    @field_validator("spend_cap", "amount_spent", "disable_reason", mode="before")
    @classmethod
    def _absent_is_zero(cls, value: object) -> object:
        # Graph sends these money fields as numeric strings, and omits or empties them when unset.
        return 0 if value in (None, "") else value

    @property
    def account_id(self) -> str:
        """The digits alone, as some Graph parameters (`shared_accounts`' `account_id`) take it."""
        return self.id.removeprefix("act_")

    @property
    def account_status_name(self) -> str:
        return account_status_name(self.account_status)

    @property
    def disable_reason_name(self) -> str:
        return disable_reason_name(self.disable_reason)


class MetaPixel(_GraphObject):
    id: NumericId
    name: str
    last_fired_time: dt.datetime | None = None


@dataclass(frozen=True)
class MetaAdAccountReads:
    """The result of a batched read: what was read, and why each other account was not.

    Per-account errors (a deleted account, a throttled one) do not fail the whole read; the caller
    decides per account, e.g. re-queue the `retryable` ones.
    """

    accounts: dict[str, MetaAdAccount] = field(default_factory=dict)
    errors: dict[str, MetaError] = field(default_factory=dict)
