import datetime as dt
import uuid

from sqlalchemy import BigInteger, Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, utcnow


class Export(IdMixin, Base):
    """One workspace's spend export of one day: a CSV object in S3."""

    __tablename__ = "exports"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id"))
    # The day the export covers (UTC).
    export_date: Mapped[dt.date] = mapped_column(Date)
    object_key: Mapped[str] = mapped_column(String(300))
    row_count: Mapped[int] = mapped_column()
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        # The job is idempotent per workspace and day: a rerun replaces, never duplicates.
        UniqueConstraint("workspace_id", "export_date"),
        Index("ix_exports_workspace_id_id", "workspace_id", "id"),
    )
