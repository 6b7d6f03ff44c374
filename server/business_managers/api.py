"""BusinessManagerService servicer: proto -> schema, call the service, schema -> proto."""

from typing import Any, Protocol

import grpc

from adplane.v1 import business_manager_service_pb2 as pb
from adplane.v1 import business_manager_service_pb2_grpc
from server.api_helpers import parse_id, parse_idempotency_key
from server.auth.principal import current_principal
from server.business_managers import converters
from server.business_managers.service import IBusinessManagerService
from server.requests.converters import request_to_proto
from server.units import UnitOfWorkFactory

type Context = grpc.aio.ServicerContext[Any, Any]


class BusinessManagerUnit(Protocol):
    """What the servicer uses of a unit of work."""

    @property
    def business_managers(self) -> IBusinessManagerService: ...


class BusinessManagerServicer(business_manager_service_pb2_grpc.BusinessManagerServiceServicer):
    def __init__(self, units: UnitOfWorkFactory[BusinessManagerUnit]) -> None:
        self._units = units

    async def CreateBusinessManager(
        self, request: pb.CreateBusinessManagerRequest, context: Context
    ) -> pb.CreateBusinessManagerResponse:
        data = converters.create_request_from_proto(request)
        idempotency_key = parse_idempotency_key(request.request_id)
        async with self._units() as uow:
            created = await uow.business_managers.create_business_manager(
                data, actor=current_principal(), idempotency_key=idempotency_key
            )
        return pb.CreateBusinessManagerResponse(business_manager=converters.business_manager_to_proto(created))

    async def GetBusinessManager(
        self, request: pb.GetBusinessManagerRequest, context: Context
    ) -> pb.GetBusinessManagerResponse:
        business_manager_id = parse_id(request.business_manager_id, field="business_manager_id")
        async with self._units(read_only=True) as uow:
            found = await uow.business_managers.get_business_manager(business_manager_id)
        return pb.GetBusinessManagerResponse(business_manager=converters.business_manager_to_proto(found))

    async def ListBusinessManagers(
        self, request: pb.ListBusinessManagersRequest, context: Context
    ) -> pb.ListBusinessManagersResponse:
        query = converters.list_request_from_proto(request)
        async with self._units(read_only=True) as uow:
            page = await uow.business_managers.list_business_managers(query)
        return pb.ListBusinessManagersResponse(
            business_managers=[converters.business_manager_to_proto(b) for b in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateBusinessManager(
        self, request: pb.UpdateBusinessManagerRequest, context: Context
    ) -> pb.UpdateBusinessManagerResponse:
        business_manager_id = parse_id(request.business_manager_id, field="business_manager_id")
        data = converters.update_request_from_proto(request)
        async with self._units() as uow:
            updated = await uow.business_managers.update_business_manager(business_manager_id, data)
        return pb.UpdateBusinessManagerResponse(business_manager=converters.business_manager_to_proto(updated))

    async def DeleteBusinessManager(
        self, request: pb.DeleteBusinessManagerRequest, context: Context
    ) -> pb.DeleteBusinessManagerResponse:
        business_manager_id = parse_id(request.business_manager_id, field="business_manager_id")
        async with self._units() as uow:
            archived = await uow.business_managers.delete_business_manager(business_manager_id, etag=request.etag)
        return pb.DeleteBusinessManagerResponse(business_manager=converters.business_manager_to_proto(archived))

    async def RequestBusinessManagerConnection(
        self, request: pb.RequestBusinessManagerConnectionRequest, context: Context
    ) -> pb.RequestBusinessManagerConnectionResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        payload = converters.connection_from_proto(request)
        idempotency_key = parse_idempotency_key(request.request_id)
        async with self._units() as uow:
            queued = await uow.business_managers.request_connection(
                workspace_id, payload, actor=current_principal(), idempotency_key=idempotency_key
            )
        return pb.RequestBusinessManagerConnectionResponse(request=request_to_proto(queued))

    async def ListWorkspaceBusinessManagers(
        self, request: pb.ListWorkspaceBusinessManagersRequest, context: Context
    ) -> pb.ListWorkspaceBusinessManagersResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        query = converters.workspace_list_request_from_proto(request)
        async with self._units(read_only=True) as uow:
            page = await uow.business_managers.list_workspace_business_managers(workspace_id, query)
        return pb.ListWorkspaceBusinessManagersResponse(
            business_managers=[converters.business_manager_to_proto(b) for b in page.items],
            next_page_token=page.next_page_token,
        )
