"""requests wait out transient failures: waiting_since, retry_at

Revision ID: 5d2c8e1f7a90
Revises: 8a1f0c2d9e47
Create Date: 2026-12-03 09:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d2c8e1f7a90"
down_revision: str | None = "8a1f0c2d9e47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("requests", sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True))
    op.add_column("requests", sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("requests", "retry_at")
    op.drop_column("requests", "waiting_since")
