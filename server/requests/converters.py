"""proto <-> schema for requests; the request payload converters are shared with the asset modules."""

import datetime as dt
from typing import Any

from adplane.v1 import money_pb2, request_pb2, request_service_pb2
from server.api_helpers import enum_from_proto, enum_to_proto, to_timestamp, validated
from server.requests.events import RequestChanged
from server.requests.models import RequestStatus
from server.requests.schemas import (
    AccountCreationPayload,
    BusinessManagerConnectionPayload,
    PixelCreationPayload,
    PixelSharePayload,
    RejectionSchema,
    RequestListRequestSchema,
    RequestPayload,
    RequestResponseSchema,
    RequestResultSchema,
    SpendCapChangePayload,
)

_FINISHED_WORK = (RequestStatus.COMPLETED, RequestStatus.FAILED)
_TYPE_NAMES = {int(number): name for name, number in request_pb2.RequestType.items()}
_STATUS_NAMES = {int(number): name for name, number in request_pb2.RequestStatus.items()}


def type_from_proto(number: int) -> str | None:
    return enum_from_proto(number, names=_TYPE_NAMES, prefix="REQUEST_TYPE")


def status_from_proto(number: int) -> str | None:
    return enum_from_proto(number, names=_STATUS_NAMES, prefix="REQUEST_STATUS")


def _payload_to_proto(payload: RequestPayload) -> dict[str, Any]:
    match payload:
        case AccountCreationPayload():
            return {
                "account_creation": request_pb2.AccountCreationPayload(
                    name=payload.name,
                    currency=payload.currency,
                    timezone=payload.timezone,
                    business_manager_id=str(payload.business_manager_id),
                )
            }
        case PixelCreationPayload():
            return {
                "pixel_creation": request_pb2.PixelCreationPayload(
                    name=payload.name, business_manager_id=str(payload.business_manager_id)
                )
            }
        case SpendCapChangePayload():
            return {
                "spend_cap_change": request_pb2.SpendCapChangePayload(
                    account_id=str(payload.account_id),
                    spend_cap=money_pb2.Money(currency=payload.currency, amount_minor=payload.amount_minor),
                )
            }
        case PixelSharePayload():
            return {
                "pixel_share": request_pb2.PixelSharePayload(
                    pixel_id=str(payload.pixel_id), account_ids=[str(a) for a in payload.account_ids]
                )
            }
        case BusinessManagerConnectionPayload():
            return {
                "business_manager_connection": request_pb2.BusinessManagerConnectionPayload(
                    meta_business_id=payload.meta_business_id, name=payload.name
                )
            }


def _result_to_proto(result: RequestResultSchema | None) -> request_pb2.RequestResult | None:
    if result is None:
        return None
    return request_pb2.RequestResult(
        account_id=str(result.account_id or ""),
        pixel_id=str(result.pixel_id or ""),
        business_manager_id=str(result.business_manager_id or ""),
        meta_id=result.meta_id or "",
        failure_reason=result.failure_reason or "",
        retryable=result.retryable,
    )


def _optional_time(value: dt.datetime | None) -> Any:
    return to_timestamp(value) if value is not None else None


def request_to_proto(request: RequestResponseSchema) -> request_pb2.Request:
    return request_pb2.Request(
        id=str(request.id),
        workspace_id=str(request.workspace_id),
        type=request_pb2.RequestType.Value(enum_to_proto(request.type, prefix="REQUEST_TYPE")),
        status=request_pb2.RequestStatus.Value(enum_to_proto(request.status, prefix="REQUEST_STATUS")),
        requester_id=str(request.requester_id),
        reviewer_id=str(request.reviewer_id or ""),
        rejection_reason=request.rejection_reason or "",
        # An approved request's result holds the workers' bookkeeping until the work is done.
        result=_result_to_proto(request.result) if request.status in _FINISHED_WORK else None,
        create_time=to_timestamp(request.created_at),
        review_time=_optional_time(request.reviewed_at),
        finish_time=_optional_time(request.finished_at),
        expire_time=to_timestamp(request.expires_at),
        etag=request.etag,
        **_payload_to_proto(request.payload),
    )


def list_request_from_proto(
    request: request_service_pb2.ListRequestsRequest | request_service_pb2.ListWorkspaceRequestsRequest,
) -> RequestListRequestSchema:
    data: dict[str, Any] = {
        "page_size": request.page_size,
        "page_token": request.page_token,
        "type": type_from_proto(request.type),
        "status": status_from_proto(request.status),
    }
    if isinstance(request, request_service_pb2.ListRequestsRequest):
        data["workspace_id"] = request.workspace_id or None
        if request.HasField("created_before"):
            data["created_before"] = request.created_before.ToDatetime(tzinfo=dt.UTC)
        if request.HasField("created_after"):
            data["created_after"] = request.created_after.ToDatetime(tzinfo=dt.UTC)
    return validated(RequestListRequestSchema, data)


def rejection_from_proto(request: request_service_pb2.RejectRequestRequest) -> RejectionSchema:
    return validated(RejectionSchema, {"reason": request.rejection.reason}, fields={"reason": "rejection.reason"})


def watch_query_from_proto(
    request: request_service_pb2.WatchRequestsRequest | request_service_pb2.WatchWorkspaceRequestsRequest,
) -> RequestListRequestSchema:
    """The filters of a watch, as the List query its snapshot pages through."""
    data: dict[str, Any] = {
        "page_size": 500,
        "type": type_from_proto(request.type),
        "status": status_from_proto(request.status),
        "workspace_id": request.workspace_id or None,
    }
    return validated(RequestListRequestSchema, data)


def change_to_proto(event: RequestChanged) -> request_service_pb2.RequestChange:
    return request_service_pb2.RequestChange(
        kind=request_service_pb2.RequestChangeKind.Value(enum_to_proto(event.kind, prefix="REQUEST_CHANGE_KIND")),
        request=request_to_proto(event.request),
        previous_status=(
            request_pb2.RequestStatus.Value(enum_to_proto(event.previous_status, prefix="REQUEST_STATUS"))
            if event.previous_status is not None
            else request_pb2.REQUEST_STATUS_UNSPECIFIED
        ),
    )
