"""proto <-> schema for business managers; the one place that knows both shapes."""

from typing import Any

from adplane.v1 import business_manager_pb2, business_manager_service_pb2
from server.api_helpers import enum_from_proto, enum_to_proto, to_timestamp, validated
from server.business_managers.schemas import (
    BusinessManagerCreateRequestSchema,
    BusinessManagerListRequestSchema,
    BusinessManagerResponseSchema,
    BusinessManagerUpdateRequestSchema,
    WorkspaceBusinessManagerListRequestSchema,
)
from server.requests.schemas import BusinessManagerConnectionPayload

_OWNERSHIP_NAMES = {int(number): name for name, number in business_manager_pb2.BusinessManagerOwnership.items()}
_OWNERSHIP_PREFIX = "BUSINESS_MANAGER_OWNERSHIP"
_STATUS_NAMES = {int(number): name for name, number in business_manager_pb2.BusinessManagerStatus.items()}
_STATUS_PREFIX = "BUSINESS_MANAGER_STATUS"
_VERIFICATION_PREFIX = "BUSINESS_VERIFICATION_STATUS"


def ownership_from_proto(number: int) -> str | None:
    return enum_from_proto(number, names=_OWNERSHIP_NAMES, prefix=_OWNERSHIP_PREFIX)


def status_from_proto(number: int) -> str | None:
    return enum_from_proto(number, names=_STATUS_NAMES, prefix=_STATUS_PREFIX)


def business_manager_to_proto(business_manager: BusinessManagerResponseSchema) -> business_manager_pb2.BusinessManager:
    """The resource as callers see it; `system_user_token` is write-only and stays empty."""
    return business_manager_pb2.BusinessManager(
        id=str(business_manager.id),
        meta_business_id=business_manager.meta_business_id,
        name=business_manager.name,
        ownership=business_manager_pb2.BusinessManagerOwnership.Value(
            enum_to_proto(business_manager.ownership, prefix=_OWNERSHIP_PREFIX)
        ),
        workspace_id=str(business_manager.workspace_id or ""),
        status=business_manager_pb2.BusinessManagerStatus.Value(
            enum_to_proto(business_manager.status, prefix=_STATUS_PREFIX)
        ),
        verification_status=business_manager_pb2.BusinessVerificationStatus.Value(
            enum_to_proto(business_manager.verification_status, prefix=_VERIFICATION_PREFIX)
        ),
        has_system_user_token=business_manager.has_system_user_token,
        create_time=to_timestamp(business_manager.created_at),
        update_time=to_timestamp(business_manager.updated_at),
        etag=business_manager.etag,
    )


def create_request_from_proto(
    request: business_manager_service_pb2.CreateBusinessManagerRequest,
) -> BusinessManagerCreateRequestSchema:
    # Output-only fields (ownership, status, ...) are ignored, as AIP-203 asks.
    business_manager = request.business_manager
    return validated(
        BusinessManagerCreateRequestSchema,
        {
            "meta_business_id": business_manager.meta_business_id,
            "name": business_manager.name,
            "system_user_token": business_manager.system_user_token,
        },
        fields={
            "meta_business_id": "business_manager.meta_business_id",
            "name": "business_manager.name",
            "system_user_token": "business_manager.system_user_token",
        },
    )


def list_request_from_proto(
    request: business_manager_service_pb2.ListBusinessManagersRequest,
) -> BusinessManagerListRequestSchema:
    return validated(
        BusinessManagerListRequestSchema,
        {
            "page_size": request.page_size,
            "page_token": request.page_token,
            "ownership": ownership_from_proto(request.ownership),
            "status": status_from_proto(request.status),
            "workspace_id": request.workspace_id or None,
        },
    )


def update_request_from_proto(
    request: business_manager_service_pb2.UpdateBusinessManagerRequest,
) -> BusinessManagerUpdateRequestSchema:
    paths = list(request.update_mask.paths)
    data: dict[str, Any] = {"update_mask": paths, "etag": request.business_manager.etag}
    # A field in the mask is read even when empty: an empty value is then a client error, not "leave it".
    if "name" in paths:
        data["name"] = request.business_manager.name
    if "system_user_token" in paths:
        data["system_user_token"] = request.business_manager.system_user_token
    return validated(
        BusinessManagerUpdateRequestSchema,
        data,
        fields={
            "name": "business_manager.name",
            "system_user_token": "business_manager.system_user_token",
            "etag": "business_manager.etag",
            "update_mask": "update_mask.paths",
        },
    )


def connection_from_proto(
    request: business_manager_service_pb2.RequestBusinessManagerConnectionRequest,
) -> BusinessManagerConnectionPayload:
    return validated(
        BusinessManagerConnectionPayload,
        {"meta_business_id": request.connection.meta_business_id, "name": request.connection.name},
        fields={"meta_business_id": "connection.meta_business_id", "name": "connection.name"},
    )


def workspace_list_request_from_proto(
    request: business_manager_service_pb2.ListWorkspaceBusinessManagersRequest,
) -> WorkspaceBusinessManagerListRequestSchema:
    return validated(
        WorkspaceBusinessManagerListRequestSchema, {"page_size": request.page_size, "page_token": request.page_token}
    )
