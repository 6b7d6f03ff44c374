"""proto <-> schema for pixels; the one place that knows both shapes."""

import uuid

from adplane.v1 import pixel_pb2, pixel_service_pb2
from server.api_helpers import to_timestamp, validated
from server.pixels.schemas import PixelListRequestSchema, PixelResponseSchema
from server.requests.schemas import PixelCreationPayload, PixelSharePayload


def pixel_to_proto(pixel: PixelResponseSchema) -> pixel_pb2.Pixel:
    return pixel_pb2.Pixel(
        id=str(pixel.id),
        workspace_id=str(pixel.workspace_id),
        business_manager_id=str(pixel.business_manager_id),
        meta_pixel_id=pixel.meta_pixel_id or "",
        name=pixel.name,
        last_fired_time=to_timestamp(pixel.last_fired_at) if pixel.last_fired_at is not None else None,
        account_ids=[str(account_id) for account_id in pixel.account_ids],
        create_time=to_timestamp(pixel.created_at),
        update_time=to_timestamp(pixel.updated_at),
    )


def creation_payload_from_proto(request: pixel_service_pb2.RequestPixelRequest) -> PixelCreationPayload:
    return validated(
        PixelCreationPayload,
        {"name": request.pixel.name, "business_manager_id": request.pixel.business_manager_id},
        fields={"name": "pixel.name", "business_manager_id": "pixel.business_manager_id"},
    )


def share_payload_from_proto(
    request: pixel_service_pb2.RequestPixelShareRequest, *, pixel_id: uuid.UUID
) -> PixelSharePayload:
    return validated(PixelSharePayload, {"pixel_id": pixel_id, "account_ids": list(request.account_ids)})


def list_request_from_proto(
    request: pixel_service_pb2.ListPixelsRequest | pixel_service_pb2.ListAllPixelsRequest,
) -> PixelListRequestSchema:
    data: dict[str, object] = {
        "page_size": request.page_size,
        "page_token": request.page_token,
        "business_manager_id": request.business_manager_id or None,
    }
    if isinstance(request, pixel_service_pb2.ListAllPixelsRequest):
        data["workspace_id"] = request.workspace_id or None
    return validated(PixelListRequestSchema, data)
