"""AuditLogService servicer: proto -> schema, call the service, schema -> proto."""

from typing import Any, Protocol

import grpc

from adplane.v1 import audit_log_service_pb2 as pb
from adplane.v1 import audit_log_service_pb2_grpc
from server.api_helpers import parse_id
from server.audit_logs import converters
from server.audit_logs.service import IAuditLogService
from server.units import UnitOfWorkFactory

type Context = grpc.aio.ServicerContext[Any, Any]


class AuditLogUnit(Protocol):
    """What the servicer uses of a unit of work."""

    @property
    def audit_logs(self) -> IAuditLogService: ...


class AuditLogServicer(audit_log_service_pb2_grpc.AuditLogServiceServicer):
    def __init__(self, units: UnitOfWorkFactory[AuditLogUnit]) -> None:
        self._units = units

    async def ListAuditLogs(self, request: pb.ListAuditLogsRequest, context: Context) -> pb.ListAuditLogsResponse:
        query = converters.list_request_from_proto(request)
        async with self._units(read_only=True) as uow:
            page = await uow.audit_logs.list_audit_logs(query)
        return pb.ListAuditLogsResponse(
            audit_logs=[converters.audit_log_to_proto(e) for e in page.items], next_page_token=page.next_page_token
        )

    async def ListWorkspaceAuditLogs(
        self, request: pb.ListWorkspaceAuditLogsRequest, context: Context
    ) -> pb.ListWorkspaceAuditLogsResponse:
        # Required here: an empty id would otherwise mean "every workspace".
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        query = converters.list_request_from_proto(request).model_copy(update={"workspace_id": workspace_id})
        async with self._units(read_only=True) as uow:
            page = await uow.audit_logs.list_audit_logs(query)
        return pb.ListWorkspaceAuditLogsResponse(
            audit_logs=[converters.audit_log_to_proto(e) for e in page.items], next_page_token=page.next_page_token
        )
