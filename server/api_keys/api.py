"""ApiKeyService servicer: proto -> schema, call the service, schema -> proto."""

from typing import Any, Protocol

import grpc

from adplane.v1 import api_key_service_pb2 as pb
from adplane.v1 import api_key_service_pb2_grpc
from server.api_helpers import parse_id, parse_idempotency_key
from server.api_keys import converters
from server.api_keys.service import IApiKeyService
from server.auth.principal import current_principal
from server.units import UnitOfWorkFactory

type Context = grpc.aio.ServicerContext[Any, Any]


class ApiKeyUnit(Protocol):
    """What the servicer uses of a unit of work."""

    @property
    def api_keys(self) -> IApiKeyService: ...


class ApiKeyServicer(api_key_service_pb2_grpc.ApiKeyServiceServicer):
    def __init__(self, units: UnitOfWorkFactory[ApiKeyUnit]) -> None:
        self._units = units

    async def CreateApiKey(self, request: pb.CreateApiKeyRequest, context: Context) -> pb.CreateApiKeyResponse:
        data = converters.create_request_from_proto(request)
        idempotency_key = parse_idempotency_key(request.request_id)
        actor = current_principal()
        async with self._units() as uow:
            created = await uow.api_keys.create_api_key(data, actor=actor, idempotency_key=idempotency_key)
        return converters.create_response_to_proto(created)

    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context: Context) -> pb.ListApiKeysResponse:
        query = converters.list_request_from_proto(request)
        async with self._units(read_only=True) as uow:
            page = await uow.api_keys.list_api_keys(query)
        return pb.ListApiKeysResponse(
            api_keys=[converters.api_key_to_proto(k) for k in page.items],
            next_page_token=page.next_page_token,
        )

    async def RevokeApiKey(self, request: pb.RevokeApiKeyRequest, context: Context) -> pb.RevokeApiKeyResponse:
        api_key_id = parse_id(request.api_key_id, field="api_key_id")
        async with self._units() as uow:
            api_key = await uow.api_keys.revoke_api_key(api_key_id)
        return pb.RevokeApiKeyResponse(api_key=converters.api_key_to_proto(api_key))
