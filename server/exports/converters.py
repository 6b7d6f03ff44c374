"""proto <-> schema for exports; the one place that knows both shapes."""

from typing import Any

from adplane.v1 import export_pb2, export_service_pb2
from server.api_helpers import to_timestamp, validated
from server.exports.schemas import ExportDownloadUrlSchema, ExportListRequestSchema, ExportResponseSchema


def export_to_proto(export: ExportResponseSchema) -> export_pb2.Export:
    return export_pb2.Export(
        id=str(export.id),
        workspace_id=str(export.workspace_id),
        export_date=export.export_date.isoformat(),
        row_count=export.row_count,
        size_bytes=export.size_bytes,
        create_time=to_timestamp(export.created_at),
    )


def download_url_to_proto(
    link: ExportDownloadUrlSchema,
) -> export_service_pb2.GetExportDownloadUrlResponse:
    return export_service_pb2.GetExportDownloadUrlResponse(url=link.url, expire_time=to_timestamp(link.expires_at))


def any_download_url_to_proto(
    link: ExportDownloadUrlSchema,
) -> export_service_pb2.GetAnyExportDownloadUrlResponse:
    return export_service_pb2.GetAnyExportDownloadUrlResponse(url=link.url, expire_time=to_timestamp(link.expires_at))


def list_request_from_proto(
    request: export_service_pb2.ListExportsRequest | export_service_pb2.ListAllExportsRequest,
) -> ExportListRequestSchema:
    data: dict[str, Any] = {"page_size": request.page_size, "page_token": request.page_token}
    if isinstance(request, export_service_pb2.ListAllExportsRequest):
        data["workspace_id"] = request.workspace_id or None
    return validated(ExportListRequestSchema, data)
