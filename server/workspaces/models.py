import uuid
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from server.auth.roles import WorkspaceRole
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


class WorkspaceUser(TimestampMixin, Base):
    """A user's membership of a workspace, with their role in it."""

    __tablename__ = "workspaces_users"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[WorkspaceRole] = mapped_column(
        Enum(WorkspaceRole, name="workspace_role", values_callable=lambda e: [m.value for m in e])
    )

    __table_args__ = (
        # Keyset orders: a workspace's members by joining time, a user's workspaces by id.
        Index("ix_workspaces_users_workspace_id_created_at", "workspace_id", "created_at", "user_id"),
        Index("ix_workspaces_users_user_id_workspace_id", "user_id", "workspace_id"),
    )
