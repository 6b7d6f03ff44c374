import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, TimestampMixin
from server.db_types import pg_enum

MAX_USERS_PER_ACCOUNT = 25


class AccountStatus(StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"


class MetaAccountStatus(StrEnum):
    """Meta's `account_status`, by name (Meta's numeric codes are mapped in the Meta client)."""

    ACTIVE = "active"
    DISABLED = "disabled"
    UNSETTLED = "unsettled"
    PENDING_RISK_REVIEW = "pending_risk_review"
    PENDING_SETTLEMENT = "pending_settlement"
    IN_GRACE_PERIOD = "in_grace_period"
    PENDING_CLOSURE = "pending_closure"
    CLOSED = "closed"


class AccountUserTask(StrEnum):
    MANAGE = "manage"
    ADVERTISE = "advertise"
    ANALYZE = "analyze"


class Account(IdMixin, TimestampMixin, Base):
    __tablename__ = "accounts"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id"))
    business_manager_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("business_managers.id"))
    # `act_<digits>`; set once Meta created the account.
    meta_account_id: Mapped[str | None] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64))
    # Money in minor units of `currency`; no cap when None.
    spend_cap_minor: Mapped[int | None] = mapped_column(BigInteger)
    amount_spent_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[AccountStatus] = mapped_column(pg_enum(AccountStatus, "account_status"))
    meta_status: Mapped[MetaAccountStatus | None] = mapped_column(pg_enum(MetaAccountStatus, "meta_account_status"))
    disable_reason: Mapped[str] = mapped_column(String(100), default="")
    synced_at: Mapped[dt.datetime | None] = mapped_column()
    # The highest spend-cap threshold (80, 100) already alerted for the current cap; 0 for none.
    # Alerts fire once per crossing; a new cap starts over.
    spend_cap_alert_percent: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    version: Mapped[int] = mapped_column(default=1)

    __table_args__ = (
        Index("ix_accounts_workspace_id_id", "workspace_id", "id"),
        Index("ix_accounts_business_manager_id_id", "business_manager_id", "id"),
    )


class AccountUser(TimestampMixin, Base):
    """A workspace member's access to an ad account, with Meta tasks."""

    __tablename__ = "accounts_users"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    # AccountUserTask values; a plain text array (asyncpg and alembic handle enum arrays poorly).
    tasks: Mapped[list[str]] = mapped_column(ARRAY(String(20)))
