import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, TimestampMixin
from server.db_types import pg_enum


class BusinessManagerOwnership(StrEnum):
    PLATFORM = "platform"
    CLIENT = "client"


class BusinessManagerStatus(StrEnum):
    ACTIVE = "active"
    NEEDS_ATTENTION = "needs_attention"
    ARCHIVED = "archived"


class BusinessVerificationStatus(StrEnum):
    NOT_VERIFIED = "not_verified"
    PENDING = "pending"
    VERIFIED = "verified"
    FAILED = "failed"


class BusinessManager(IdMixin, TimestampMixin, Base):
    __tablename__ = "business_managers"

    meta_business_id: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    ownership: Mapped[BusinessManagerOwnership] = mapped_column(
        pg_enum(BusinessManagerOwnership, "business_manager_ownership")
    )
    # Client business managers belong to a workspace; platform ones to the agency.
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("workspaces.id"))
    status: Mapped[BusinessManagerStatus] = mapped_column(pg_enum(BusinessManagerStatus, "business_manager_status"))
    verification_status: Mapped[BusinessVerificationStatus] = mapped_column(
        pg_enum(BusinessVerificationStatus, "business_verification_status")
    )
    # Fernet ciphertext of the system-user token (server.crypto); never leaves the service layer.
    encrypted_token: Mapped[str | None] = mapped_column(Text)
    # When the periodic job last read it from Meta.
    synced_at: Mapped[dt.datetime | None] = mapped_column()
    version: Mapped[int] = mapped_column(default=1)

    __table_args__ = (
        # One live record per Meta business; an archived one can be added again.
        Index(
            "uq_business_managers_live_meta_business_id",
            "meta_business_id",
            unique=True,
            postgresql_where=text("status <> 'archived'"),
        ),
        Index("ix_business_managers_workspace_id_id", "workspace_id", "id"),
    )
