import uuid

from pydantic import BaseModel, ConfigDict

from server.auth.roles import WorkspaceRole


class UserStandingSchema(BaseModel):
    """What authorization needs to know about a signed-in user, read in one query."""

    model_config = ConfigDict(frozen=True)

    active: bool
    superuser: bool
    permissions: frozenset[str]
    workspace_role: WorkspaceRole | None
    session_revoked: bool


class ApiKeyStandingSchema(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    secret_hash: str
    revoked: bool
    permissions: frozenset[str]
