"""proto <-> schema for workspaces; the one place that knows both shapes."""

from typing import Any

from adplane.v1 import workspace_member_pb2, workspace_pb2, workspace_service_pb2
from server.api_helpers import enum_from_proto, enum_to_proto, to_timestamp, validated
from server.auth.roles import WorkspaceRole
from server.workspaces.schemas import (
    MemberAddRequestSchema,
    MemberResponseSchema,
    MembershipResponseSchema,
    MemberUpdateRequestSchema,
    WorkspaceCreateRequestSchema,
    WorkspaceListRequestSchema,
    WorkspaceResponseSchema,
    WorkspaceUpdateRequestSchema,
)

_STATUS_NAMES_BY_NUMBER = {int(number): name for name, number in workspace_pb2.WorkspaceStatus.items()}
_STATUS_PREFIX = "WORKSPACE_STATUS"


def status_from_proto(number: int) -> str | None:
    return enum_from_proto(number, names=_STATUS_NAMES_BY_NUMBER, prefix=_STATUS_PREFIX)


def workspace_to_proto(workspace: WorkspaceResponseSchema) -> workspace_pb2.Workspace:
    return workspace_pb2.Workspace(
        id=str(workspace.id),
        name=workspace.name,
        status=workspace_pb2.WorkspaceStatus.Value(enum_to_proto(workspace.status, prefix=_STATUS_PREFIX)),
        create_time=to_timestamp(workspace.created_at),
        update_time=to_timestamp(workspace.updated_at),
        etag=workspace.etag,
    )


def create_request_from_proto(
    request: workspace_service_pb2.CreateWorkspaceRequest,
) -> WorkspaceCreateRequestSchema:
    data: dict[str, Any] = {"name": request.workspace.name}
    if request.workspace.status:
        data["status"] = status_from_proto(request.workspace.status)
    return validated(
        WorkspaceCreateRequestSchema, data, fields={"name": "workspace.name", "status": "workspace.status"}
    )


def list_request_from_proto(request: workspace_service_pb2.ListWorkspacesRequest) -> WorkspaceListRequestSchema:
    return validated(
        WorkspaceListRequestSchema,
        {
            "page_size": request.page_size,
            "page_token": request.page_token,
            "status": status_from_proto(request.status),
        },
    )


def update_request_from_proto(
    request: workspace_service_pb2.UpdateWorkspaceRequest,
) -> WorkspaceUpdateRequestSchema:
    data: dict[str, Any] = {"update_mask": list(request.update_mask.paths), "etag": request.workspace.etag}
    if "name" in request.update_mask.paths:
        data["name"] = request.workspace.name
    if "status" in request.update_mask.paths:
        # An unset status in the mask is a client error, not "leave it": the schema rejects it.
        data["status"] = status_from_proto(request.workspace.status) or "unspecified"
    return validated(
        WorkspaceUpdateRequestSchema,
        data,
        fields={
            "name": "workspace.name",
            "status": "workspace.status",
            "etag": "workspace.etag",
            "update_mask": "update_mask.paths",
        },
    )


_ROLE_NAMES_BY_NUMBER = {int(number): name for name, number in workspace_member_pb2.WorkspaceRole.items()}
_ROLE_PREFIX = "WORKSPACE_ROLE"


def role_to_proto(role: WorkspaceRole) -> workspace_member_pb2.WorkspaceRole.ValueType:
    return workspace_member_pb2.WorkspaceRole.Value(enum_to_proto(role, prefix=_ROLE_PREFIX))


def role_from_proto(number: int) -> str | None:
    return enum_from_proto(number, names=_ROLE_NAMES_BY_NUMBER, prefix=_ROLE_PREFIX)


def member_to_proto(member: MemberResponseSchema) -> workspace_member_pb2.WorkspaceMember:
    return workspace_member_pb2.WorkspaceMember(
        user_id=str(member.user_id),
        email=member.email,
        full_name=member.full_name,
        role=role_to_proto(member.role),
        create_time=to_timestamp(member.created_at),
        update_time=to_timestamp(member.updated_at),
    )


def membership_to_proto(membership: MembershipResponseSchema) -> workspace_member_pb2.WorkspaceMembership:
    return workspace_member_pb2.WorkspaceMembership(
        workspace=workspace_to_proto(membership.workspace), role=role_to_proto(membership.role)
    )


def add_member_request_from_proto(request: workspace_service_pb2.AddWorkspaceMemberRequest) -> MemberAddRequestSchema:
    return validated(
        MemberAddRequestSchema,
        {"user_id": request.member.user_id, "role": role_from_proto(request.member.role)},
        fields={"user_id": "member.user_id", "role": "member.role"},
    )


def update_member_request_from_proto(
    request: workspace_service_pb2.UpdateWorkspaceMemberRequest,
) -> MemberUpdateRequestSchema:
    return validated(
        MemberUpdateRequestSchema, {"role": role_from_proto(request.member.role)}, fields={"role": "member.role"}
    )


def page_from_proto(
    request: workspace_service_pb2.ListWorkspaceMembersRequest | workspace_service_pb2.ListMyWorkspacesRequest,
) -> dict[str, Any]:
    return {"page_size": request.page_size, "page_token": request.page_token}
