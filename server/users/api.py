"""UserService servicer: proto -> schema, call the service, schema -> proto."""

from typing import Any, Protocol

import grpc

from adplane.v1 import user_service_pb2 as pb
from adplane.v1 import user_service_pb2_grpc
from server.api_helpers import parse_id, parse_idempotency_key
from server.auth.principal import current_principal
from server.units import UnitOfWorkFactory
from server.users import converters
from server.users.service import IUserService

type Context = grpc.aio.ServicerContext[Any, Any]


class UserUnit(Protocol):
    """What the servicer uses of a unit of work."""

    @property
    def users(self) -> IUserService: ...


class UserServicer(user_service_pb2_grpc.UserServiceServicer):
    def __init__(self, units: UnitOfWorkFactory[UserUnit]) -> None:
        self._units = units

    async def CreateUser(self, request: pb.CreateUserRequest, context: Context) -> pb.CreateUserResponse:
        data = converters.create_request_from_proto(request)
        idempotency_key = parse_idempotency_key(request.request_id)
        async with self._units() as uow:
            user = await uow.users.create_user(data, actor=current_principal(), idempotency_key=idempotency_key)
        return pb.CreateUserResponse(user=converters.user_to_proto(user))

    async def GetUser(self, request: pb.GetUserRequest, context: Context) -> pb.GetUserResponse:
        user_id = parse_id(request.user_id, field="user_id")
        async with self._units(read_only=True) as uow:
            user = await uow.users.get_user(user_id)
        return pb.GetUserResponse(user=converters.user_to_proto(user))

    async def ListUsers(self, request: pb.ListUsersRequest, context: Context) -> pb.ListUsersResponse:
        query = converters.list_request_from_proto(request)
        async with self._units(read_only=True) as uow:
            page = await uow.users.list_users(query)
        return pb.ListUsersResponse(
            users=[converters.user_to_proto(u) for u in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateUser(self, request: pb.UpdateUserRequest, context: Context) -> pb.UpdateUserResponse:
        user_id = parse_id(request.user_id, field="user_id")
        data = converters.update_request_from_proto(request)
        async with self._units() as uow:
            user = await uow.users.update_user(user_id, data)
        return pb.UpdateUserResponse(user=converters.user_to_proto(user))

    async def DeactivateUser(self, request: pb.DeactivateUserRequest, context: Context) -> pb.DeactivateUserResponse:
        user_id = parse_id(request.user_id, field="user_id")
        async with self._units() as uow:
            user = await uow.users.deactivate_user(user_id, actor=current_principal())
        return pb.DeactivateUserResponse(user=converters.user_to_proto(user))

    async def SetUserRoles(self, request: pb.SetUserRolesRequest, context: Context) -> pb.SetUserRolesResponse:
        user_id = parse_id(request.user_id, field="user_id")
        async with self._units() as uow:
            user = await uow.users.set_user_roles(user_id, list(request.role_names))
        return pb.SetUserRolesResponse(user=converters.user_to_proto(user))

    async def ListRoles(self, request: pb.ListRolesRequest, context: Context) -> pb.ListRolesResponse:
        async with self._units(read_only=True) as uow:
            roles = await uow.users.list_roles()
        return pb.ListRolesResponse(roles=[converters.role_to_proto(r) for r in roles])
