"""Imports every module's models so `Base.metadata` knows all tables (alembic, tests)."""

from server.db import Base
from server.idempotency.models import IdempotencyKey
from server.workspaces.models import Workspace

__all__ = ["Base", "IdempotencyKey", "Workspace"]
