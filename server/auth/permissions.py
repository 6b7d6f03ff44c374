"""The permission catalog: every system permission, and what each workspace role grants.

Policies in the protos name these strings. A workspace permission is also a system permission
of the same name, so staff holding it pass the workspace check in every workspace.
"""

from server.workspaces.models import WorkspaceRole

WORKSPACES_READ = "workspaces.read"
WORKSPACES_MANAGE = "workspaces.manage"
MEMBERS_READ = "members.read"
MEMBERS_MANAGE = "members.manage"
USERS_READ = "users.read"
USERS_MANAGE = "users.manage"
API_KEYS_MANAGE = "api_keys.manage"

SYSTEM_PERMISSIONS = frozenset(
    {WORKSPACES_READ, WORKSPACES_MANAGE, MEMBERS_READ, MEMBERS_MANAGE, USERS_READ, USERS_MANAGE, API_KEYS_MANAGE}
)

_VIEWER = frozenset({WORKSPACES_READ, MEMBERS_READ})
_MEMBER = _VIEWER
_ADMIN = _MEMBER | {MEMBERS_MANAGE}
_OWNER = _ADMIN

WORKSPACE_ROLE_PERMISSIONS: dict[WorkspaceRole, frozenset[str]] = {
    WorkspaceRole.VIEWER: _VIEWER,
    WorkspaceRole.MEMBER: _MEMBER,
    WorkspaceRole.ADMIN: _ADMIN,
    WorkspaceRole.OWNER: _OWNER,
}
