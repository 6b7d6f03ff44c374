import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, utcnow


class AuditLog(IdMixin, Base):
    """One mutation. Rows are never updated or deleted (a database trigger refuses it).

    The table is partitioned by month of `created_at` (`server.audit_logs.partitions`): old months
    leave as whole partitions, dropped by `adplane audit-log rotate`. A partitioned table's keys
    include its partition key, so the primary key is (id, created_at); ids are unique anyway (UUIDv7).
    """

    __tablename__ = "audit_logs"

    # `user`, `api_key`, or None for the platform's own work (workers, scheduled jobs).
    actor_type: Mapped[str | None] = mapped_column(String(20))
    actor_id: Mapped[uuid.UUID | None] = mapped_column()
    workspace_id: Mapped[uuid.UUID | None] = mapped_column()
    entity_type: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[uuid.UUID] = mapped_column()
    action: Mapped[str] = mapped_column(String(50))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The x-request-id of the RPC (or the task id) that made the change.
    trace_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, primary_key=True)

    __table_args__ = (
        # Newest first within a workspace, an entity or an actor; ids are time-ordered (UUIDv7).
        Index("ix_audit_logs_workspace_id_id", "workspace_id", "id"),
        Index("ix_audit_logs_entity_type_entity_id_id", "entity_type", "entity_id", "id"),
        Index("ix_audit_logs_actor_id_id", "actor_id", "id"),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )
