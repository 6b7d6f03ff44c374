"""the audit log partitioned by month

`audit_logs` becomes a table partitioned by RANGE (created_at), one partition a month (named
audit_logs_yYYYYmMM) plus a default partition that catches a row of a month nobody created ahead of
time (`adplane audit-log rotate`, run daily by the scheduler, creates the next months and moves such
rows out). The primary key is (id, created_at): a partitioned table's unique keys include its
partition key. The rows are copied over; the append-only trigger stays on the table and is set on
every partition too, since a statement on a partition fires only that partition's triggers.

Revision ID: c83f5a1e6d07
Revises: a41c7e9d2b60
Create Date: 2026-12-07 21:30:00.000000
"""

import datetime as dt
from collections.abc import Sequence

from alembic import op

revision: str = "c83f5a1e6d07"
down_revision: str | None = "a41c7e9d2b60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = "id, actor_type, actor_id, workspace_id, entity_type, entity_id, action, before, after, trace_id, created_at"
INDEXES = {
    "ix_audit_logs_actor_id_id": "(actor_id, id)",
    "ix_audit_logs_entity_type_entity_id_id": "(entity_type, entity_id, id)",
    "ix_audit_logs_workspace_id_id": "(workspace_id, id)",
}
# Months created ahead of the current one (AUDIT_LOG_PARTITIONS_AHEAD's default).
AHEAD = 3
TRIGGER = (
    "CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {table} "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_append_only()"
)


def _month_start(index: int) -> dt.date:
    return dt.date(index // 12, index % 12 + 1, 1)


def upgrade() -> None:
    bind = op.get_bind()
    op.execute("ALTER TABLE audit_logs RENAME TO audit_logs_unpartitioned")
    op.execute("ALTER TABLE audit_logs_unpartitioned RENAME CONSTRAINT pk_audit_logs TO pk_audit_logs_unpartitioned")
    for name in INDEXES:
        op.execute(f"ALTER INDEX {name} RENAME TO {name}_unpartitioned")
    op.execute(
        """
        CREATE TABLE audit_logs (
            id UUID NOT NULL,
            actor_type VARCHAR(20),
            actor_id UUID,
            workspace_id UUID,
            entity_type VARCHAR(50) NOT NULL,
            entity_id UUID NOT NULL,
            action VARCHAR(50) NOT NULL,
            before JSONB,
            after JSONB,
            trace_id VARCHAR(128),
            created_at TIMESTAMP WITH TIME ZONE NOT NULL,
            CONSTRAINT pk_audit_logs PRIMARY KEY (id, created_at)
        ) PARTITION BY RANGE (created_at)
        """
    )
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON audit_logs {columns}")
    op.execute(TRIGGER.format(table="audit_logs"))

    oldest = bind.exec_driver_sql("SELECT min(created_at) FROM audit_logs_unpartitioned").scalar()
    today = dt.datetime.now(dt.UTC).date()
    first = oldest.astimezone(dt.UTC).date() if oldest is not None else today
    for index in range(first.year * 12 + first.month - 1, today.year * 12 + today.month + AHEAD):
        start, end = _month_start(index), _month_start(index + 1)
        table = f"audit_logs_y{start.year:04d}m{start.month:02d}"
        op.execute(
            f"CREATE TABLE {table} PARTITION OF audit_logs "
            f"FOR VALUES FROM ('{start.isoformat()} 00:00:00+00') TO ('{end.isoformat()} 00:00:00+00')"
        )
        op.execute(TRIGGER.format(table=table))
    op.execute("CREATE TABLE audit_logs_default PARTITION OF audit_logs DEFAULT")
    op.execute(TRIGGER.format(table="audit_logs_default"))

    op.execute(f"INSERT INTO audit_logs ({COLUMNS}) SELECT {COLUMNS} FROM audit_logs_unpartitioned")  # noqa: S608
    op.execute("DROP TABLE audit_logs_unpartitioned")


def downgrade() -> None:
    op.execute("ALTER TABLE audit_logs RENAME TO audit_logs_partitioned")
    op.execute("ALTER TABLE audit_logs_partitioned RENAME CONSTRAINT pk_audit_logs TO pk_audit_logs_partitioned")
    for name in INDEXES:
        op.execute(f"ALTER INDEX {name} RENAME TO {name}_partitioned")
    op.execute(
        """
        CREATE TABLE audit_logs (
            actor_type VARCHAR(20),
            actor_id UUID,
            workspace_id UUID,
            entity_type VARCHAR(50) NOT NULL,
            entity_id UUID NOT NULL,
            action VARCHAR(50) NOT NULL,
            before JSONB,
            after JSONB,
            trace_id VARCHAR(128),
            created_at TIMESTAMP WITH TIME ZONE NOT NULL,
            id UUID NOT NULL,
            CONSTRAINT pk_audit_logs PRIMARY KEY (id)
        )
        """
    )
    op.execute(f"INSERT INTO audit_logs ({COLUMNS}) SELECT {COLUMNS} FROM audit_logs_partitioned")  # noqa: S608
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON audit_logs {columns}")
    op.execute(TRIGGER.format(table="audit_logs"))
    op.execute("DROP TABLE audit_logs_partitioned")  # and every partition with it
