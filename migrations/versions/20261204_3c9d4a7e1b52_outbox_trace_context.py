"""outbox rows carry the trace context and request id of the call that wrote them

Revision ID: 3c9d4a7e1b52
Revises: 5d2c8e1f7a90
Create Date: 2026-12-04 02:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "3c9d4a7e1b52"
down_revision: str | None = "5d2c8e1f7a90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox_messages", sa.Column("trace_context", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox_messages", "trace_context")
