import datetime as dt
from typing import Any

from sqlalchemy import Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, utcnow


class OutboxMessage(IdMixin, Base):
    __tablename__ = "outbox_messages"

    # What happened, e.g. `request.approved`; the relay routes it to a task.
    topic: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The trace context (W3C traceparent/tracestate) and x-request-id of the call whose transaction
    # wrote the row: the task it becomes runs in that trace and logs that request id.
    trace_context: Mapped[dict[str, str] | None] = mapped_column(JSONB)

    __table_args__ = (
        # The relay reads unpublished messages oldest first; published ones are not indexed.
        Index("ix_outbox_messages_pending", "id", postgresql_where=text("published_at IS NULL")),
    )
