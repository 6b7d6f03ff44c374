"""WorkspaceService servicer: proto -> schema, call the service, schema -> proto."""

from typing import Any, Protocol

import grpc

from adplane.v1 import workspace_service_pb2 as pb
from adplane.v1 import workspace_service_pb2_grpc
from server.api_helpers import parse_id, parse_idempotency_key, validated
from server.auth.principal import current_principal
from server.units import UnitOfWorkFactory
from server.workspaces import converters
from server.workspaces.schemas import MemberListRequestSchema, MyWorkspacesRequestSchema
from server.workspaces.service import IWorkspaceService

type Context = grpc.aio.ServicerContext[Any, Any]


class WorkspaceUnit(Protocol):
    """What the servicer uses of a unit of work."""

    @property
    def workspaces(self) -> IWorkspaceService: ...


class WorkspaceServicer(workspace_service_pb2_grpc.WorkspaceServiceServicer):
    def __init__(self, units: UnitOfWorkFactory[WorkspaceUnit]) -> None:
        self._units = units

    async def CreateWorkspace(self, request: pb.CreateWorkspaceRequest, context: Context) -> pb.CreateWorkspaceResponse:
        data = converters.create_request_from_proto(request)
        idempotency_key = parse_idempotency_key(request.request_id)
        async with self._units() as uow:
            workspace = await uow.workspaces.create_workspace(
                data, actor=current_principal(), idempotency_key=idempotency_key
            )
        return pb.CreateWorkspaceResponse(workspace=converters.workspace_to_proto(workspace))

    async def GetWorkspace(self, request: pb.GetWorkspaceRequest, context: Context) -> pb.GetWorkspaceResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        async with self._units(read_only=True) as uow:
            workspace = await uow.workspaces.get_workspace(workspace_id)
        return pb.GetWorkspaceResponse(workspace=converters.workspace_to_proto(workspace))

    async def ListWorkspaces(self, request: pb.ListWorkspacesRequest, context: Context) -> pb.ListWorkspacesResponse:
        query = converters.list_request_from_proto(request)
        async with self._units(read_only=True) as uow:
            page = await uow.workspaces.list_workspaces(query)
        return pb.ListWorkspacesResponse(
            workspaces=[converters.workspace_to_proto(w) for w in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateWorkspace(self, request: pb.UpdateWorkspaceRequest, context: Context) -> pb.UpdateWorkspaceResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        data = converters.update_request_from_proto(request)
        async with self._units() as uow:
            workspace = await uow.workspaces.update_workspace(workspace_id, data)
        return pb.UpdateWorkspaceResponse(workspace=converters.workspace_to_proto(workspace))

    async def DeleteWorkspace(self, request: pb.DeleteWorkspaceRequest, context: Context) -> pb.DeleteWorkspaceResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        async with self._units() as uow:
            workspace = await uow.workspaces.delete_workspace(workspace_id, etag=request.etag)
        return pb.DeleteWorkspaceResponse(workspace=converters.workspace_to_proto(workspace))

    async def ListMyWorkspaces(
        self, request: pb.ListMyWorkspacesRequest, context: Context
    ) -> pb.ListMyWorkspacesResponse:
        principal = current_principal()
        query = validated(MyWorkspacesRequestSchema, converters.page_from_proto(request))
        if principal.user_id is None:  # an API key belongs to no workspace
            return pb.ListMyWorkspacesResponse()
        async with self._units(read_only=True) as uow:
            page = await uow.workspaces.list_my_workspaces(principal.user_id, query)
        return pb.ListMyWorkspacesResponse(
            workspaces=[converters.membership_to_proto(m) for m in page.items], next_page_token=page.next_page_token
        )

    async def ListWorkspaceMembers(
        self, request: pb.ListWorkspaceMembersRequest, context: Context
    ) -> pb.ListWorkspaceMembersResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        query = validated(MemberListRequestSchema, converters.page_from_proto(request))
        async with self._units(read_only=True) as uow:
            page = await uow.workspaces.list_members(workspace_id, query)
        return pb.ListWorkspaceMembersResponse(
            members=[converters.member_to_proto(m) for m in page.items], next_page_token=page.next_page_token
        )

    async def AddWorkspaceMember(
        self, request: pb.AddWorkspaceMemberRequest, context: Context
    ) -> pb.AddWorkspaceMemberResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        data = converters.add_member_request_from_proto(request)
        async with self._units() as uow:
            member = await uow.workspaces.add_member(workspace_id, data, actor=current_principal())
        return pb.AddWorkspaceMemberResponse(member=converters.member_to_proto(member))

    async def UpdateWorkspaceMember(
        self, request: pb.UpdateWorkspaceMemberRequest, context: Context
    ) -> pb.UpdateWorkspaceMemberResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        user_id = parse_id(request.user_id, field="user_id")
        data = converters.update_member_request_from_proto(request)
        async with self._units() as uow:
            member = await uow.workspaces.update_member(workspace_id, user_id, data, actor=current_principal())
        return pb.UpdateWorkspaceMemberResponse(member=converters.member_to_proto(member))

    async def RemoveWorkspaceMember(
        self, request: pb.RemoveWorkspaceMemberRequest, context: Context
    ) -> pb.RemoveWorkspaceMemberResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        user_id = parse_id(request.user_id, field="user_id")
        async with self._units() as uow:
            await uow.workspaces.remove_member(workspace_id, user_id, actor=current_principal())
        return pb.RemoveWorkspaceMemberResponse()
