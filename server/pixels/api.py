"""PixelService servicer: proto -> schema, call the service, schema -> proto."""

from typing import Any, Protocol

import grpc

from adplane.v1 import pixel_service_pb2 as pb
from adplane.v1 import pixel_service_pb2_grpc
from server.api_helpers import parse_id, parse_idempotency_key
from server.auth.principal import current_principal
from server.pixels import converters
from server.pixels.service import IPixelService
from server.requests.converters import request_to_proto
from server.units import UnitOfWorkFactory

type Context = grpc.aio.ServicerContext[Any, Any]


class PixelUnit(Protocol):
    """What the servicer uses of a unit of work."""

    @property
    def pixels(self) -> IPixelService: ...


class PixelServicer(pixel_service_pb2_grpc.PixelServiceServicer):
    def __init__(self, units: UnitOfWorkFactory[PixelUnit]) -> None:
        self._units = units

    async def RequestPixel(self, request: pb.RequestPixelRequest, context: Context) -> pb.RequestPixelResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        payload = converters.creation_payload_from_proto(request)
        idempotency_key = parse_idempotency_key(request.request_id)
        async with self._units() as uow:
            queued = await uow.pixels.request_pixel(
                workspace_id, payload, actor=current_principal(), idempotency_key=idempotency_key
            )
        return pb.RequestPixelResponse(request=request_to_proto(queued))

    async def ListPixels(self, request: pb.ListPixelsRequest, context: Context) -> pb.ListPixelsResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        query = converters.list_request_from_proto(request)
        async with self._units(read_only=True) as uow:
            page = await uow.pixels.list_pixels(workspace_id, query)
        return pb.ListPixelsResponse(
            pixels=[converters.pixel_to_proto(p) for p in page.items], next_page_token=page.next_page_token
        )

    async def GetPixel(self, request: pb.GetPixelRequest, context: Context) -> pb.GetPixelResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        pixel_id = parse_id(request.pixel_id, field="pixel_id")
        async with self._units(read_only=True) as uow:
            pixel = await uow.pixels.get_pixel(pixel_id, workspace_id=workspace_id)
        return pb.GetPixelResponse(pixel=converters.pixel_to_proto(pixel))

    async def RequestPixelShare(
        self, request: pb.RequestPixelShareRequest, context: Context
    ) -> pb.RequestPixelShareResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        pixel_id = parse_id(request.pixel_id, field="pixel_id")
        payload = converters.share_payload_from_proto(request, pixel_id=pixel_id)
        idempotency_key = parse_idempotency_key(request.request_id)
        async with self._units() as uow:
            queued = await uow.pixels.request_pixel_share(
                workspace_id, payload, actor=current_principal(), idempotency_key=idempotency_key
            )
        return pb.RequestPixelShareResponse(request=request_to_proto(queued))

    async def UnsharePixel(self, request: pb.UnsharePixelRequest, context: Context) -> pb.UnsharePixelResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        pixel_id = parse_id(request.pixel_id, field="pixel_id")
        account_id = parse_id(request.account_id, field="account_id")
        async with self._units() as uow:
            pixel = await uow.pixels.unshare_pixel(pixel_id, account_id, workspace_id=workspace_id)
        return pb.UnsharePixelResponse(pixel=converters.pixel_to_proto(pixel))

    async def ListAllPixels(self, request: pb.ListAllPixelsRequest, context: Context) -> pb.ListAllPixelsResponse:
        query = converters.list_request_from_proto(request)
        async with self._units(read_only=True) as uow:
            page = await uow.pixels.list_all_pixels(query)
        return pb.ListAllPixelsResponse(
            pixels=[converters.pixel_to_proto(p) for p in page.items], next_page_token=page.next_page_token
        )
