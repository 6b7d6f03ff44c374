"""Who is calling: set by the authorization interceptor for the duration of one RPC."""

import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum

from server.auth.permissions import WORKSPACE_ROLE_PERMISSIONS
from server.auth.roles import WorkspaceRole
from server.exceptions import UnauthenticatedException


class PrincipalKind(StrEnum):
    USER = "user"
    API_KEY = "api_key"


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    # The user id or the API key id.
    id: uuid.UUID
    superuser: bool = False
    system_permissions: frozenset[str] = field(default_factory=frozenset)
    # The caller's role in the workspace the RPC names, when it names one.
    workspace_id: uuid.UUID | None = None
    workspace_role: WorkspaceRole | None = None

    @property
    def user_id(self) -> uuid.UUID | None:
        return self.id if self.kind is PrincipalKind.USER else None

    def has_system_permission(self, permission: str) -> bool:
        return self.superuser or permission in self.system_permissions

    def has_workspace_permission(self, permission: str, workspace_id: uuid.UUID) -> bool:
        """A role in the workspace that grants it, or the system permission of the same name."""
        if self.has_system_permission(permission):
            return True
        return (
            self.workspace_id == workspace_id
            and self.workspace_role is not None
            and permission in WORKSPACE_ROLE_PERMISSIONS[self.workspace_role]
        )


_current: ContextVar[Principal | None] = ContextVar("adplane_principal", default=None)


def set_current_principal(principal: Principal | None) -> None:
    _current.set(principal)


def current_principal() -> Principal:
    """The caller of the running RPC; UNAUTHENTICATED when the RPC was public and anonymous."""
    principal = _current.get()
    if principal is None:
        raise UnauthenticatedException("sign in first", reason="UNAUTHENTICATED")
    return principal


def current_principal_or_none() -> Principal | None:
    """The caller of the running RPC, or None outside RPCs (workers) and in public RPCs."""
    return _current.get()
