"""AuthService servicer: proto -> schema, call the service, schema -> proto."""

from typing import Any

import grpc

from adplane.v1 import auth_service_pb2 as pb
from adplane.v1 import auth_service_pb2_grpc
from server.api_helpers import client_address, parse_networks
from server.auth.exceptions import RefreshTokenReusedException
from server.auth.principal import current_principal
from server.composition import Infrastructure
from server.signin import converters
from server.signin.service import RefreshTokenReplayed

type Context = grpc.aio.ServicerContext[Any, Any]


class AuthServicer(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(self, infrastructure: Infrastructure) -> None:
        self._infrastructure = infrastructure
        self._trusted_proxies = parse_networks(infrastructure.settings.trusted_proxy_cidrs)

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.LoginResponse:
        data = converters.login_request_from_proto(request)
        async with self._infrastructure.unit_of_work() as uow:
            address = client_address(context, trusted_proxies=self._trusted_proxies)
            tokens = await uow.auth.login(data, address=address)
        return pb.LoginResponse(tokens=converters.tokens_to_proto(tokens))

    async def RefreshToken(self, request: pb.RefreshTokenRequest, context: Context) -> pb.RefreshTokenResponse:
        data = converters.refresh_request_from_proto(request)
        async with self._infrastructure.unit_of_work() as uow:
            outcome = await uow.auth.refresh(data)
        # Raised after the transaction committed the revocation of the replayed token's family.
        if isinstance(outcome, RefreshTokenReplayed):
            raise RefreshTokenReusedException()
        return pb.RefreshTokenResponse(tokens=converters.tokens_to_proto(outcome))

    async def Logout(self, request: pb.LogoutRequest, context: Context) -> pb.LogoutResponse:
        data = converters.refresh_request_from_proto(request)
        async with self._infrastructure.unit_of_work() as uow:
            await uow.auth.logout(data)
        return pb.LogoutResponse()

    async def GetCurrentUser(self, request: pb.GetCurrentUserRequest, context: Context) -> pb.GetCurrentUserResponse:
        principal = current_principal()
        async with self._infrastructure.unit_of_work(read_only=True) as uow:
            current = await uow.auth.current_user(principal)
        return converters.current_user_to_proto(current)
