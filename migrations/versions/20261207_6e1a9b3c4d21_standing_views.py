"""views the auth module reads callers' standing from

The standing of a caller (active, superuser, system permissions, role in a workspace, a revoked
sign-in; an API key's hash, revocation and permissions) is read on every call that is not cached.
Its data belongs to the users, workspaces, api_keys and signin modules; these views put it where the
auth module, which owns them, reads it without naming those modules' tables. They are plain views:
PostgreSQL inlines them, so the lookup plans as the query written against the tables did.

Revision ID: 6e1a9b3c4d21
Revises: 3c9d4a7e1b52
Create Date: 2026-12-07 18:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "6e1a9b3c4d21"
down_revision: str | None = "3c9d4a7e1b52"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = {
    "standing_users": """
        SELECT u.id AS user_id,
               u.is_active AS active,
               u.is_superuser AS superuser,
               ARRAY(SELECT DISTINCT p
                       FROM users_roles ur
                       JOIN roles r ON r.id = ur.role_id, unnest(r.permissions) AS p
                      WHERE ur.user_id = u.id) AS permissions
          FROM users u
    """,
    "standing_memberships": """
        SELECT wu.user_id, wu.workspace_id, wu.role::text AS role
          FROM workspaces_users wu
    """,
    "standing_sessions": """
        SELECT rt.family_id, rt.revoked_at
          FROM refresh_tokens rt
    """,
    "standing_api_keys": """
        SELECT k.id,
               k.prefix,
               k.secret_hash,
               k.revoked_at IS NOT NULL AS revoked,
               ARRAY(SELECT DISTINCT p
                       FROM api_keys_roles kr
                       JOIN roles r ON r.id = kr.role_id, unnest(r.permissions) AS p
                      WHERE kr.api_key_id = k.id) AS permissions
          FROM api_keys k
    """,
}


def upgrade() -> None:
    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {query}")


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
