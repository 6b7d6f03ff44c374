"""Imports every module's models so `Base.metadata` knows all tables (alembic, tests)."""

from server.accounts.models import Account, AccountUser
from server.api_keys.models import ApiKey, ApiKeyRole
from server.audit_logs.models import AuditLog
from server.business_managers.models import BusinessManager
from server.db import Base
from server.exports.models import Export
from server.idempotency.models import IdempotencyKey
from server.outbox.models import OutboxMessage
from server.pixels.models import Pixel, PixelAccount
from server.requests.models import Request
from server.signin.models import RefreshToken
from server.users.models import Role, User, users_roles
from server.workspaces.models import Workspace, WorkspaceUser

__all__ = [
    "Account",
    "AccountUser",
    "ApiKey",
    "ApiKeyRole",
    "AuditLog",
    "Base",
    "BusinessManager",
    "Export",
    "IdempotencyKey",
    "OutboxMessage",
    "Pixel",
    "PixelAccount",
    "RefreshToken",
    "Request",
    "Role",
    "User",
    "Workspace",
    "WorkspaceUser",
    "users_roles",
]
