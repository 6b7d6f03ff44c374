import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, TimestampMixin
from server.db_types import pg_enum


class RequestType(StrEnum):
    ACCOUNT_CREATION = "account_creation"
    PIXEL_CREATION = "pixel_creation"
    SPEND_CAP_CHANGE = "spend_cap_change"
    PIXEL_SHARE = "pixel_share"
    BUSINESS_MANAGER_CONNECTION = "business_manager_connection"


class RequestStatus(StrEnum):
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    APPROVED = "approved"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Request(IdMixin, TimestampMixin, Base):
    __tablename__ = "requests"

    type: Mapped[RequestType] = mapped_column(pg_enum(RequestType, "request_type"))
    status: Mapped[RequestStatus] = mapped_column(pg_enum(RequestStatus, "request_status"))
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id"))
    # `user` or `api_key`, and its id (no foreign key: a key or user may go, the record stays).
    requester_type: Mapped[str] = mapped_column(String(20))
    requester_id: Mapped[uuid.UUID] = mapped_column()
    reviewer_type: Mapped[str | None] = mapped_column(String(20))
    reviewer_id: Mapped[uuid.UUID | None] = mapped_column()
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    # The typed payload (server.requests.schemas), validated on the way in and out.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    expires_at: Mapped[dt.datetime] = mapped_column()
    # An APPROVED request whose work failed transiently (Meta's rate limits, 5xx): since when it
    # has been waiting, and when the requeue job may run it again (Meta's regain time).
    waiting_since: Mapped[dt.datetime | None] = mapped_column()
    retry_at: Mapped[dt.datetime | None] = mapped_column()
    version: Mapped[int] = mapped_column(default=1)

    __table_args__ = (
        Index("ix_requests_workspace_id_id", "workspace_id", "id"),
        Index("ix_requests_status_id", "status", "id"),
        # The expiry job scans waiting requests by deadline.
        Index("ix_requests_status_expires_at", "status", "expires_at"),
    )
