"""notify standing changes: a NOTIFY on every change to what a caller's standing is read from

Revision ID: 8a1f0c2d9e47
Revises: b7730f56e72f
Create Date: 2026-12-03 09:20:00.000000

Server processes cache callers' standing and LISTEN on `adplane_standing`; these statement-level
triggers tell them at commit that it may have changed, whichever path wrote (RPCs, workers, the
CLI, SQL by hand).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8a1f0c2d9e47"
down_revision: str | None = "b7730f56e72f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "adplane_standing"

# table -> the events that can change a standing (users: deactivation, superuser flag, deletion;
# refresh_tokens: a revoked sign-in; the rest: memberships, roles, their permissions, API keys).
TRIGGERS = {
    "users": "UPDATE OF is_active, is_superuser OR DELETE",
    "refresh_tokens": "UPDATE OF revoked_at OR DELETE",
    "workspaces_users": "INSERT OR UPDATE OR DELETE",
    "users_roles": "INSERT OR UPDATE OR DELETE",
    "roles": "UPDATE OF permissions OR DELETE",
    "api_keys": "UPDATE OF revoked_at, secret_hash, prefix OR DELETE",
    "api_keys_roles": "INSERT OR UPDATE OR DELETE",
}


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION notify_standing_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
            RETURN NULL;
        END
        $$
        """
    )
    for table, events in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {table}_standing_changed AFTER {events} ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION notify_standing_changed()"
        )


def downgrade() -> None:
    for table in TRIGGERS:
        op.execute(f"DROP TRIGGER {table}_standing_changed ON {table}")
    op.execute("DROP FUNCTION notify_standing_changed()")
