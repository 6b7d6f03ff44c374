"""Tenant scope: which workspaces a repository read of workspace-owned data may see.

Repositories of workspace-owned rows (accounts, pixels, requests, exports) take a scope on every read
and have no default for it, so a forgotten argument is a type error instead of a silent read across
workspaces. A call made in a workspace passes `WorkspaceScope(workspace_id)`; staff acting with a
system permission and background work (which acts for every workspace) pass `SYSTEM`, which says so
where it happens.
"""

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select
from sqlalchemy.orm import QueryableAttribute


@dataclass(frozen=True, slots=True)
class WorkspaceScope:
    """Rows of this workspace only."""

    workspace_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class SystemScope:
    """Rows of every workspace: staff holding a system permission, and background work."""


type TenantScope = WorkspaceScope | SystemScope

SYSTEM = SystemScope()


def narrowed[S: Select[Any]](
    statement: S, workspace_column: QueryableAttribute[uuid.UUID] | ColumnElement[uuid.UUID], scope: TenantScope
) -> S:
    """`statement` limited to the rows `scope` may see."""
    if isinstance(scope, WorkspaceScope):
        return statement.where(workspace_column == scope.workspace_id)
    return statement


def scope_filter(scope: TenantScope, workspace_filter: uuid.UUID | None) -> uuid.UUID | None:
    """The one workspace a list in `scope` filtered by `workspace_filter` (a staff filter) reads, or None
    for all of them. A workspace scope wins; a filter naming another workspace is the caller's mistake,
    caught by `conflicts`."""
    return scope.workspace_id if isinstance(scope, WorkspaceScope) else workspace_filter


def conflicts(scope: TenantScope, workspace_filter: uuid.UUID | None) -> bool:
    """A filter naming another workspace than the scope's: the list is empty."""
    return isinstance(scope, WorkspaceScope) and workspace_filter is not None and workspace_filter != scope.workspace_id
