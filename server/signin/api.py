"""AuthService (the proto service) servicer: proto -> schema, call the sign-in service, schema -> proto."""

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Protocol

import grpc

from adplane.v1 import auth_service_pb2 as pb
from adplane.v1 import auth_service_pb2_grpc
from server.api_helpers import client_address
from server.auth.exceptions import RefreshTokenReusedException
from server.auth.principal import current_principal
from server.signin import converters
from server.signin.service import ISigninService, RefreshTokenReplayed
from server.units import UnitOfWorkFactory

type Context = grpc.aio.ServicerContext[Any, Any]


class SigninUnit(Protocol):
    """What the servicer uses of a unit of work."""

    @property
    def signin(self) -> ISigninService: ...


class AuthServicer(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(
        self, units: UnitOfWorkFactory[SigninUnit], *, trusted_proxies: Sequence[IPv4Network | IPv6Network]
    ) -> None:
        self._units = units
        # Envoy's addresses: the caller's address is then the one Envoy saw (see client_address).
        self._trusted_proxies = trusted_proxies

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.LoginResponse:
        data = converters.login_request_from_proto(request)
        async with self._units() as uow:
            address = client_address(context, trusted_proxies=self._trusted_proxies)
            tokens = await uow.signin.login(data, address=address)
        return pb.LoginResponse(tokens=converters.tokens_to_proto(tokens))

    async def RefreshToken(self, request: pb.RefreshTokenRequest, context: Context) -> pb.RefreshTokenResponse:
        data = converters.refresh_request_from_proto(request)
        async with self._units() as uow:
            outcome = await uow.signin.refresh(data)
        # Raised after the transaction committed the revocation of the replayed token's family.
        if isinstance(outcome, RefreshTokenReplayed):
            raise RefreshTokenReusedException()
        return pb.RefreshTokenResponse(tokens=converters.tokens_to_proto(outcome))

    async def Logout(self, request: pb.LogoutRequest, context: Context) -> pb.LogoutResponse:
        data = converters.refresh_request_from_proto(request)
        async with self._units() as uow:
            await uow.signin.logout(data)
        return pb.LogoutResponse()

    async def GetCurrentUser(self, request: pb.GetCurrentUserRequest, context: Context) -> pb.GetCurrentUserResponse:
        principal = current_principal()
        async with self._units(read_only=True) as uow:
            current = await uow.signin.current_user(principal)
        return converters.current_user_to_proto(current)
