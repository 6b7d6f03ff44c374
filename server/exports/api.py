"""ExportService servicer: proto -> schema, call the service, schema -> proto."""

from typing import Any, Protocol

import grpc

from adplane.v1 import export_service_pb2 as pb
from adplane.v1 import export_service_pb2_grpc
from server.api_helpers import parse_id
from server.exports import converters
from server.exports.service import IExportService
from server.tenancy import SYSTEM, WorkspaceScope
from server.units import UnitOfWorkFactory

type Context = grpc.aio.ServicerContext[Any, Any]


class ExportUnit(Protocol):
    """What the servicer uses of a unit of work."""

    @property
    def exports(self) -> IExportService: ...


class ExportServicer(export_service_pb2_grpc.ExportServiceServicer):
    def __init__(self, units: UnitOfWorkFactory[ExportUnit]) -> None:
        self._units = units

    async def ListExports(self, request: pb.ListExportsRequest, context: Context) -> pb.ListExportsResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        query = converters.list_request_from_proto(request)
        async with self._units(read_only=True) as uow:
            page = await uow.exports.list_workspace_exports(workspace_id, query)
        return pb.ListExportsResponse(
            exports=[converters.export_to_proto(e) for e in page.items], next_page_token=page.next_page_token
        )

    async def GetExportDownloadUrl(
        self, request: pb.GetExportDownloadUrlRequest, context: Context
    ) -> pb.GetExportDownloadUrlResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        export_id = parse_id(request.export_id, field="export_id")
        async with self._units(read_only=True) as uow:
            link = await uow.exports.get_download_url(export_id, scope=WorkspaceScope(workspace_id))
        return converters.download_url_to_proto(link)

    async def ListAllExports(self, request: pb.ListAllExportsRequest, context: Context) -> pb.ListAllExportsResponse:
        query = converters.list_request_from_proto(request)
        async with self._units(read_only=True) as uow:
            page = await uow.exports.list_exports(query)
        return pb.ListAllExportsResponse(
            exports=[converters.export_to_proto(e) for e in page.items], next_page_token=page.next_page_token
        )

    async def GetAnyExportDownloadUrl(
        self, request: pb.GetAnyExportDownloadUrlRequest, context: Context
    ) -> pb.GetAnyExportDownloadUrlResponse:
        export_id = parse_id(request.export_id, field="export_id")
        async with self._units(read_only=True) as uow:
            link = await uow.exports.get_download_url(export_id, scope=SYSTEM)
        return converters.any_download_url_to_proto(link)
