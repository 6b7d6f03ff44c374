"""proto <-> schema for API keys; the one place that knows both shapes."""

from adplane.v1 import api_key_service_pb2 as pb
from server.api_helpers import to_timestamp, validated
from server.api_keys.schemas import (
    ApiKeyCreatedSchema,
    ApiKeyCreateRequestSchema,
    ApiKeyListRequestSchema,
    ApiKeyResponseSchema,
)


def api_key_to_proto(api_key: ApiKeyResponseSchema) -> pb.ApiKey:
    message = pb.ApiKey(
        id=str(api_key.id),
        name=api_key.name,
        role_names=api_key.role_names,
        prefix=api_key.prefix,
        create_time=to_timestamp(api_key.created_at),
        created_by_user_id=str(api_key.created_by_user_id) if api_key.created_by_user_id else "",
    )
    if api_key.revoked_at is not None:
        message.revoke_time.CopyFrom(to_timestamp(api_key.revoked_at))
    return message


def create_response_to_proto(created: ApiKeyCreatedSchema) -> pb.CreateApiKeyResponse:
    return pb.CreateApiKeyResponse(api_key=api_key_to_proto(created.api_key), secret=created.secret or "")


def create_request_from_proto(request: pb.CreateApiKeyRequest) -> ApiKeyCreateRequestSchema:
    return validated(
        ApiKeyCreateRequestSchema,
        {"name": request.api_key.name, "role_names": list(request.api_key.role_names)},
        fields={"name": "api_key.name", "role_names": "api_key.role_names"},
    )


def list_request_from_proto(request: pb.ListApiKeysRequest) -> ApiKeyListRequestSchema:
    return validated(
        ApiKeyListRequestSchema,
        {
            "page_size": request.page_size,
            "page_token": request.page_token,
            "include_revoked": request.include_revoked,
        },
    )
