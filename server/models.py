"""Imports every module's models so `Base.metadata` knows all tables (alembic, tests)."""

from server.api_keys.models import ApiKey, api_keys_roles
from server.auth.models import RefreshToken
from server.db import Base
from server.idempotency.models import IdempotencyKey
from server.users.models import Role, User, users_roles
from server.workspaces.models import Workspace, WorkspaceUser

__all__ = [
    "ApiKey",
    "Base",
    "IdempotencyKey",
    "RefreshToken",
    "Role",
    "User",
    "Workspace",
    "WorkspaceUser",
    "api_keys_roles",
    "users_roles",
]
