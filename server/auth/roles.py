"""A member's role in a workspace: what authorization decides with (the workspaces module stores it)."""

from enum import StrEnum


class WorkspaceRole(StrEnum):
    VIEWER = "viewer"
    MEMBER = "member"
    ADMIN = "admin"
    OWNER = "owner"
