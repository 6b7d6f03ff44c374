"""The permission catalog: every system permission, and what each workspace role grants.

Policies in the protos name these strings. A workspace permission is also a system permission
of the same name, so staff holding it pass the workspace check in every workspace.
"""

from server.auth.roles import WorkspaceRole

WORKSPACES_READ = "workspaces.read"
WORKSPACES_MANAGE = "workspaces.manage"
MEMBERS_READ = "members.read"
MEMBERS_MANAGE = "members.manage"
USERS_READ = "users.read"
USERS_MANAGE = "users.manage"
API_KEYS_MANAGE = "api_keys.manage"
BUSINESS_MANAGERS_READ = "business_managers.read"
BUSINESS_MANAGERS_REQUEST = "business_managers.request"
BUSINESS_MANAGERS_MANAGE = "business_managers.manage"
ACCOUNTS_READ = "accounts.read"
ACCOUNTS_REQUEST = "accounts.request"
ACCOUNTS_MANAGE_USERS = "accounts.manage_users"
ACCOUNTS_MANAGE = "accounts.manage"
PIXELS_READ = "pixels.read"
PIXELS_REQUEST = "pixels.request"
PIXELS_MANAGE = "pixels.manage"
REQUESTS_READ = "requests.read"
REQUESTS_CANCEL = "requests.cancel"
REQUESTS_APPROVE = "requests.approve"
AUDIT_LOGS_READ = "audit_logs.read"
EXPORTS_READ = "exports.read"

SYSTEM_PERMISSIONS = frozenset(
    {
        WORKSPACES_READ,
        WORKSPACES_MANAGE,
        MEMBERS_READ,
        MEMBERS_MANAGE,
        USERS_READ,
        USERS_MANAGE,
        API_KEYS_MANAGE,
        BUSINESS_MANAGERS_READ,
        BUSINESS_MANAGERS_REQUEST,
        BUSINESS_MANAGERS_MANAGE,
        ACCOUNTS_READ,
        ACCOUNTS_REQUEST,
        ACCOUNTS_MANAGE_USERS,
        ACCOUNTS_MANAGE,
        PIXELS_READ,
        PIXELS_REQUEST,
        PIXELS_MANAGE,
        REQUESTS_READ,
        REQUESTS_CANCEL,
        REQUESTS_APPROVE,
        AUDIT_LOGS_READ,
        EXPORTS_READ,
    }
)

# Viewers read; members also ask for assets and withdraw their workspace's requests; admins
# also manage people, account access, pixel sharing and business manager connections.
_VIEWER = frozenset(
    {WORKSPACES_READ, MEMBERS_READ, BUSINESS_MANAGERS_READ, ACCOUNTS_READ, PIXELS_READ, REQUESTS_READ, EXPORTS_READ}
)
_MEMBER = _VIEWER | {ACCOUNTS_REQUEST, PIXELS_REQUEST, REQUESTS_CANCEL}
_ADMIN = _MEMBER | {MEMBERS_MANAGE, ACCOUNTS_MANAGE_USERS, PIXELS_MANAGE, BUSINESS_MANAGERS_REQUEST, AUDIT_LOGS_READ}
_OWNER = _ADMIN

WORKSPACE_ROLE_PERMISSIONS: dict[WorkspaceRole, frozenset[str]] = {
    WorkspaceRole.VIEWER: _VIEWER,
    WorkspaceRole.MEMBER: _MEMBER,
    WorkspaceRole.ADMIN: _ADMIN,
    WorkspaceRole.OWNER: _OWNER,
}
