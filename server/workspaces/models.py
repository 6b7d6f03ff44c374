from enum import StrEnum

from sqlalchemy import Enum, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, TimestampMixin


class WorkspaceStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    ARCHIVED = "archived"


class Workspace(IdMixin, TimestampMixin, Base):
    __tablename__ = "workspaces"

    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[WorkspaceStatus] = mapped_column(
        Enum(WorkspaceStatus, name="workspace_status", values_callable=lambda e: [m.value for m in e])
    )
    # Bumped by every update; the etag clients send back for optimistic concurrency.
    version: Mapped[int] = mapped_column(default=1)

    __table_args__ = (
        # Names are unique among live workspaces, ignoring case; archived ones free theirs.
        Index(
            "uq_workspaces_live_name",
            func.lower(text("name")),
            unique=True,
            postgresql_where=text("status <> 'archived'"),
        ),
        Index("ix_workspaces_status_id", "status", "id"),
    )
