"""RequestService servicer: proto -> schema, call the service, schema -> proto."""

from typing import Any

import grpc

from adplane.v1 import request_service_pb2 as pb
from adplane.v1 import request_service_pb2_grpc
from server.api_helpers import parse_id, parse_idempotency_key
from server.auth.principal import current_principal
from server.composition import Infrastructure
from server.requests import converters

type Context = grpc.aio.ServicerContext[Any, Any]


class RequestServicer(request_service_pb2_grpc.RequestServiceServicer):
    def __init__(self, infrastructure: Infrastructure) -> None:
        self._infrastructure = infrastructure

    async def ListWorkspaceRequests(
        self, request: pb.ListWorkspaceRequestsRequest, context: Context
    ) -> pb.ListWorkspaceRequestsResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        query = converters.list_request_from_proto(request)
        async with self._infrastructure.unit_of_work(read_only=True) as uow:
            page = await uow.requests.list_workspace_requests(workspace_id, query)
        return pb.ListWorkspaceRequestsResponse(
            requests=[converters.request_to_proto(r) for r in page.items], next_page_token=page.next_page_token
        )

    async def GetRequest(self, request: pb.GetRequestRequest, context: Context) -> pb.GetRequestResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        request_id = parse_id(request.id, field="id")
        async with self._infrastructure.unit_of_work(read_only=True) as uow:
            found = await uow.requests.get_request(request_id, workspace_id=workspace_id)
        return pb.GetRequestResponse(request=converters.request_to_proto(found))

    async def CancelRequest(self, request: pb.CancelRequestRequest, context: Context) -> pb.CancelRequestResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        request_id = parse_id(request.id, field="id")
        async with self._infrastructure.unit_of_work() as uow:
            cancelled = await uow.requests.cancel_request(request_id, workspace_id=workspace_id)
        return pb.CancelRequestResponse(request=converters.request_to_proto(cancelled))

    async def ListRequests(self, request: pb.ListRequestsRequest, context: Context) -> pb.ListRequestsResponse:
        query = converters.list_request_from_proto(request)
        async with self._infrastructure.unit_of_work(read_only=True) as uow:
            page = await uow.requests.list_requests(query)
        return pb.ListRequestsResponse(
            requests=[converters.request_to_proto(r) for r in page.items], next_page_token=page.next_page_token
        )

    async def ApproveRequest(self, request: pb.ApproveRequestRequest, context: Context) -> pb.ApproveRequestResponse:
        request_id = parse_id(request.id, field="id")
        idempotency_key = parse_idempotency_key(request.request_id)
        async with self._infrastructure.unit_of_work() as uow:
            approved = await uow.requests.approve_request(
                request_id, actor=current_principal(), idempotency_key=idempotency_key
            )
        return pb.ApproveRequestResponse(request=converters.request_to_proto(approved))

    async def RetryRequest(self, request: pb.RetryRequestRequest, context: Context) -> pb.RetryRequestResponse:
        request_id = parse_id(request.id, field="id")
        idempotency_key = parse_idempotency_key(request.request_id)
        async with self._infrastructure.unit_of_work() as uow:
            retried = await uow.requests.retry_request(
                request_id, actor=current_principal(), idempotency_key=idempotency_key
            )
        return pb.RetryRequestResponse(request=converters.request_to_proto(retried))

    async def RejectRequest(self, request: pb.RejectRequestRequest, context: Context) -> pb.RejectRequestResponse:
        request_id = parse_id(request.id, field="id")
        rejection = converters.rejection_from_proto(request)
        async with self._infrastructure.unit_of_work() as uow:
            rejected = await uow.requests.reject_request(request_id, rejection, actor=current_principal())
        return pb.RejectRequestResponse(request=converters.request_to_proto(rejected))
