"""RequestService servicer: proto -> schema, call the service, schema -> proto."""

from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc

from adplane.v1 import request_service_pb2 as pb
from adplane.v1 import request_service_pb2_grpc
from server.api_helpers import parse_id, parse_idempotency_key
from server.auth.principal import current_principal
from server.requests import converters
from server.requests.schemas import RequestListRequestSchema, RequestResponseSchema
from server.requests.service import IRequestService
from server.requests.watch import SNAPSHOT_LIMIT, Change, Heartbeat, RequestEventHub, SnapshotPart, matching, watch
from server.units import UnitOfWorkFactory

type Context = grpc.aio.ServicerContext[Any, Any]


class RequestUnit(Protocol):
    """What the servicer uses of a unit of work."""

    @property
    def requests(self) -> IRequestService: ...


class RequestServicer(request_service_pb2_grpc.RequestServiceServicer):
    def __init__(
        self, units: UnitOfWorkFactory[RequestUnit], *, events: RequestEventHub, heartbeat_seconds: float
    ) -> None:
        self._units = units
        self._events = events
        self._heartbeat_seconds = heartbeat_seconds

    async def ListWorkspaceRequests(
        self, request: pb.ListWorkspaceRequestsRequest, context: Context
    ) -> pb.ListWorkspaceRequestsResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        query = converters.list_request_from_proto(request)
        async with self._units(read_only=True) as uow:
            page = await uow.requests.list_workspace_requests(workspace_id, query)
        return pb.ListWorkspaceRequestsResponse(
            requests=[converters.request_to_proto(r) for r in page.items], next_page_token=page.next_page_token
        )

    async def GetRequest(self, request: pb.GetRequestRequest, context: Context) -> pb.GetRequestResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        request_id = parse_id(request.id, field="id")
        async with self._units(read_only=True) as uow:
            found = await uow.requests.get_request(request_id, workspace_id=workspace_id)
        return pb.GetRequestResponse(request=converters.request_to_proto(found))

    async def CancelRequest(self, request: pb.CancelRequestRequest, context: Context) -> pb.CancelRequestResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        request_id = parse_id(request.id, field="id")
        async with self._units() as uow:
            cancelled = await uow.requests.cancel_request(request_id, workspace_id=workspace_id)
        return pb.CancelRequestResponse(request=converters.request_to_proto(cancelled))

    async def ListRequests(self, request: pb.ListRequestsRequest, context: Context) -> pb.ListRequestsResponse:
        query = converters.list_request_from_proto(request)
        async with self._units(read_only=True) as uow:
            page = await uow.requests.list_requests(query)
        return pb.ListRequestsResponse(
            requests=[converters.request_to_proto(r) for r in page.items], next_page_token=page.next_page_token
        )

    async def ApproveRequest(self, request: pb.ApproveRequestRequest, context: Context) -> pb.ApproveRequestResponse:
        request_id = parse_id(request.id, field="id")
        idempotency_key = parse_idempotency_key(request.request_id)
        # A hot write: its transaction runs on asyncpg directly (server.composition).
        async with self._units(direct=True) as uow:
            approved = await uow.requests.approve_request(
                request_id, actor=current_principal(), idempotency_key=idempotency_key
            )
        return pb.ApproveRequestResponse(request=converters.request_to_proto(approved))

    async def RetryRequest(self, request: pb.RetryRequestRequest, context: Context) -> pb.RetryRequestResponse:
        request_id = parse_id(request.id, field="id")
        idempotency_key = parse_idempotency_key(request.request_id)
        async with self._units() as uow:
            retried = await uow.requests.retry_request(
                request_id, actor=current_principal(), idempotency_key=idempotency_key
            )
        return pb.RetryRequestResponse(request=converters.request_to_proto(retried))

    async def RejectRequest(self, request: pb.RejectRequestRequest, context: Context) -> pb.RejectRequestResponse:
        request_id = parse_id(request.id, field="id")
        rejection = converters.rejection_from_proto(request)
        async with self._units() as uow:
            rejected = await uow.requests.reject_request(request_id, rejection, actor=current_principal())
        return pb.RejectRequestResponse(request=converters.request_to_proto(rejected))

    async def WatchRequests(
        self, request: pb.WatchRequestsRequest, context: Context
    ) -> AsyncIterator[pb.WatchRequestsResponse]:
        query = converters.watch_query_from_proto(request)
        async for message in self._watch(query, request.resume_token, workspace=False):
            yield pb.WatchRequestsResponse(**message)

    async def WatchWorkspaceRequests(
        self, request: pb.WatchWorkspaceRequestsRequest, context: Context
    ) -> AsyncIterator[pb.WatchWorkspaceRequestsResponse]:
        query = converters.watch_query_from_proto(request)
        async for message in self._watch(query, request.resume_token, workspace=True):
            yield pb.WatchWorkspaceRequestsResponse(**message)

    async def _watch(
        self, query: RequestListRequestSchema, resume_token: str, *, workspace: bool
    ) -> AsyncIterator[dict[str, Any]]:
        """The fields of each message of a watch; both Watch responses have the same shape."""

        async def snapshot() -> tuple[list[RequestResponseSchema], bool]:
            found: list[RequestResponseSchema] = []
            page_query = query
            # On the primary: a change committed before the watch joined must be in the snapshot,
            # which a lagging replica might not have replayed yet.
            async with self._units(read_only=True, primary=True) as uow:
                while True:
                    if workspace and query.workspace_id is not None:
                        page = await uow.requests.list_workspace_requests(query.workspace_id, page_query)
                    else:
                        page = await uow.requests.list_requests(page_query)
                    found.extend(page.items)
                    if not page.next_page_token or len(found) > SNAPSHOT_LIMIT:
                        break
                    page_query = query.model_copy(update={"page_token": page.next_page_token})
            return found[:SNAPSHOT_LIMIT], len(found) > SNAPSHOT_LIMIT or bool(page.next_page_token)

        items = watch(
            self._events,
            matches=matching(query),
            snapshot=snapshot,
            resume_token=resume_token or None,
            heartbeat_seconds=self._heartbeat_seconds,
        )
        async for item in items:
            match item:
                case SnapshotPart():
                    yield {
                        "snapshot": pb.RequestSnapshot(
                            requests=[converters.request_to_proto(r) for r in item.requests],
                            complete=item.complete,
                            truncated=item.truncated,
                        ),
                        "resume_token": item.token,
                    }
                case Change():
                    converted = item.entry.converted
                    change = converted.get("proto")
                    if change is None:  # converted once per process, shared by every stream
                        change = converted["proto"] = converters.change_to_proto(item.entry.event)
                    yield {"change": change, "resume_token": item.token}
                case Heartbeat():
                    heartbeat = pb.WatchHeartbeat()
                    heartbeat.send_time.GetCurrentTime()
                    yield {"heartbeat": heartbeat, "resume_token": item.token}
