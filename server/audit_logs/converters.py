"""proto <-> schema for audit logs."""

import datetime as dt
from typing import Any

from google.protobuf import struct_pb2

from adplane.v1 import audit_log_pb2, audit_log_service_pb2
from server.api_helpers import to_timestamp, validated
from server.audit_logs.schemas import AuditLogListRequestSchema, AuditLogResponseSchema


def _struct(value: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def audit_log_to_proto(entry: AuditLogResponseSchema) -> audit_log_pb2.AuditLog:
    return audit_log_pb2.AuditLog(
        id=str(entry.id),
        actor_type=entry.actor_type or "",
        actor_id=str(entry.actor_id) if entry.actor_id else "",
        workspace_id=str(entry.workspace_id) if entry.workspace_id else "",
        entity_type=entry.entity_type,
        entity_id=str(entry.entity_id),
        action=entry.action,
        before=_struct(entry.before),
        after=_struct(entry.after),
        trace_id=entry.trace_id or "",
        create_time=to_timestamp(entry.created_at),
    )


def list_request_from_proto(
    request: audit_log_service_pb2.ListAuditLogsRequest | audit_log_service_pb2.ListWorkspaceAuditLogsRequest,
) -> AuditLogListRequestSchema:
    flt = request.filter
    data: dict[str, Any] = {
        "page_size": request.page_size,
        "page_token": request.page_token,
        "workspace_id": request.workspace_id or None,
        "entity_type": flt.entity_type or None,
        "entity_id": flt.entity_id or None,
        "actor_id": flt.actor_id or None,
        "start_time": flt.start_time.ToDatetime(tzinfo=dt.UTC) if flt.HasField("start_time") else None,
        "end_time": flt.end_time.ToDatetime(tzinfo=dt.UTC) if flt.HasField("end_time") else None,
    }
    return validated(
        AuditLogListRequestSchema,
        data,
        fields={name: f"filter.{name}" for name in ("entity_type", "entity_id", "actor_id", "start_time", "end_time")},
    )
