"""The views this module reads callers' standing from (created by the migration `standing_views`).

Their data belongs to the users, workspaces, api_keys and signin modules; the views are this
module's own, so the standing lookups (`server.auth.repository`) name no other module's table. They
live on a MetaData of their own: alembic does not autogenerate views, and tests never truncate them.
"""

from sqlalchemy import Boolean, Column, MetaData, String, Table, Uuid
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import DateTime

standing_views = MetaData()

standing_users = Table(
    "standing_users",
    standing_views,
    Column("user_id", Uuid),
    Column("active", Boolean),
    Column("superuser", Boolean),
    Column("permissions", ARRAY(String)),
)

standing_memberships = Table(
    "standing_memberships",
    standing_views,
    Column("user_id", Uuid),
    Column("workspace_id", Uuid),
    Column("role", String),
)

standing_sessions = Table(
    "standing_sessions",
    standing_views,
    Column("family_id", Uuid),
    Column("revoked_at", DateTime(timezone=True)),
)

standing_api_keys = Table(
    "standing_api_keys",
    standing_views,
    Column("id", Uuid),
    Column("prefix", String),
    Column("secret_hash", String),
    Column("revoked", Boolean),
    Column("permissions", ARRAY(String)),
)
