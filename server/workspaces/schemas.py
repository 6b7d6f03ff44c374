import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from server.auth.roles import WorkspaceRole
from server.etags import etag_of
from server.pagination import PageRequestSchema
from server.schema_types import Id, Name100
from server.workspaces.models import WorkspaceStatus

WorkspaceName = Name100
# Workspaces are archived through DeleteWorkspace only.
SettableStatus = Literal[WorkspaceStatus.ACTIVE, WorkspaceStatus.SUSPENDED]


class WorkspaceCreateRequestSchema(BaseModel):
    name: WorkspaceName
    status: SettableStatus = WorkspaceStatus.ACTIVE


class WorkspaceUpdateRequestSchema(BaseModel):
    """A partial update: only the fields in `update_mask` change."""

    update_mask: Annotated[frozenset[Literal["name", "status"]], Field(min_length=1)]
    name: WorkspaceName | None = None
    status: SettableStatus | None = None
    etag: str = ""


class WorkspaceListRequestSchema(PageRequestSchema):
    status: WorkspaceStatus | None = None

    def filters(self) -> dict[str, Any]:
        return {"status": self.status}


class WorkspaceResponseSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: uuid.UUID
    name: str
    status: WorkspaceStatus
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def etag(self) -> str:
        return etag_of(self.version)


class MemberAddRequestSchema(BaseModel):
    user_id: Id
    role: WorkspaceRole


class MemberUpdateRequestSchema(BaseModel):
    role: WorkspaceRole


class MemberListRequestSchema(PageRequestSchema):
    pass


class MyWorkspacesRequestSchema(PageRequestSchema):
    pass


class MemberResponseSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    workspace_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    full_name: str
    role: WorkspaceRole
    created_at: dt.datetime
    updated_at: dt.datetime


class MembershipResponseSchema(BaseModel):
    """A workspace as one of its members sees it."""

    model_config = ConfigDict(frozen=True)

    workspace: WorkspaceResponseSchema
    role: WorkspaceRole

    @property
    def id(self) -> uuid.UUID:
        """A membership of the caller's is known by its workspace (the order of their list)."""
        return self.workspace.id
