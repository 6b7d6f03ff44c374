"""AccountService servicer: proto -> schema, call the service, schema -> proto."""

from typing import Any, Protocol

import grpc

from adplane.v1 import account_service_pb2 as pb
from adplane.v1 import account_service_pb2_grpc
from server.accounts import converters
from server.accounts.service import IAccountService
from server.api_helpers import message_with, parse_id, parse_idempotency_key
from server.auth.principal import current_principal
from server.requests.converters import request_to_proto
from server.units import UnitOfWorkFactory

type Context = grpc.aio.ServicerContext[Any, Any]


class AccountUnit(Protocol):
    """What the servicer uses of a unit of work."""

    @property
    def accounts(self) -> IAccountService: ...


class AccountServicer(account_service_pb2_grpc.AccountServiceServicer):
    def __init__(self, units: UnitOfWorkFactory[AccountUnit]) -> None:
        self._units = units

    async def RequestAccount(self, request: pb.RequestAccountRequest, context: Context) -> pb.RequestAccountResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        payload = converters.account_request_from_proto(request)
        idempotency_key = parse_idempotency_key(request.request_id)
        # A hot write: its transaction runs on asyncpg directly (server.composition).
        async with self._units(direct=True) as uow:
            submitted = await uow.accounts.request_account(
                workspace_id, payload, actor=current_principal(), idempotency_key=idempotency_key
            )
        return pb.RequestAccountResponse(request=request_to_proto(submitted))

    async def ListAccounts(self, request: pb.ListAccountsRequest, context: Context) -> pb.ListAccountsResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        query = converters.list_request_from_proto(request)
        async with self._units(read_only=True) as uow:
            page = await uow.accounts.list_workspace_accounts(workspace_id, query)
        return message_with(
            pb.ListAccountsResponse,
            accounts=[converters.account_fields(a) for a in page.items],
            next_page_token=page.next_page_token,
        )

    async def GetAccount(self, request: pb.GetAccountRequest, context: Context) -> pb.GetAccountResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        account_id = parse_id(request.account_id, field="account_id")
        async with self._units(read_only=True) as uow:
            account = await uow.accounts.get_account(account_id, workspace_id=workspace_id)
        return message_with(pb.GetAccountResponse, account=converters.account_fields(account))

    async def RequestSpendCapChange(
        self, request: pb.RequestSpendCapChangeRequest, context: Context
    ) -> pb.RequestSpendCapChangeResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        account_id = parse_id(request.account_id, field="account_id")
        payload = converters.spend_cap_request_from_proto(request, account_id=account_id)
        idempotency_key = parse_idempotency_key(request.request_id)
        async with self._units() as uow:
            submitted = await uow.accounts.request_spend_cap_change(
                workspace_id, payload, actor=current_principal(), idempotency_key=idempotency_key
            )
        return pb.RequestSpendCapChangeResponse(request=request_to_proto(submitted))

    async def ListAccountUsers(
        self, request: pb.ListAccountUsersRequest, context: Context
    ) -> pb.ListAccountUsersResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        account_id = parse_id(request.account_id, field="account_id")
        async with self._units(read_only=True) as uow:
            users = await uow.accounts.list_account_users(account_id, workspace_id=workspace_id)
        return pb.ListAccountUsersResponse(users=[converters.account_user_to_proto(u) for u in users])

    async def AssignAccountUser(
        self, request: pb.AssignAccountUserRequest, context: Context
    ) -> pb.AssignAccountUserResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        account_id = parse_id(request.account_id, field="account_id")
        user_id = parse_id(request.user_id, field="user_id")
        data = converters.assign_request_from_proto(request)
        async with self._units() as uow:
            user = await uow.accounts.assign_account_user(account_id, user_id, data, workspace_id=workspace_id)
        return pb.AssignAccountUserResponse(user=converters.account_user_to_proto(user))

    async def UnassignAccountUser(
        self, request: pb.UnassignAccountUserRequest, context: Context
    ) -> pb.UnassignAccountUserResponse:
        workspace_id = parse_id(request.workspace_id, field="workspace_id")
        account_id = parse_id(request.account_id, field="account_id")
        user_id = parse_id(request.user_id, field="user_id")
        async with self._units() as uow:
            await uow.accounts.unassign_account_user(account_id, user_id, workspace_id=workspace_id)
        return pb.UnassignAccountUserResponse()

    async def ListAllAccounts(self, request: pb.ListAllAccountsRequest, context: Context) -> pb.ListAllAccountsResponse:
        query = converters.list_request_from_proto(request)
        async with self._units(read_only=True) as uow:
            page = await uow.accounts.list_accounts(query)
        return message_with(
            pb.ListAllAccountsResponse,
            accounts=[converters.account_fields(a) for a in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateAccount(self, request: pb.UpdateAccountRequest, context: Context) -> pb.UpdateAccountResponse:
        account_id = parse_id(request.account_id, field="account_id")
        data = converters.update_request_from_proto(request)
        async with self._units() as uow:
            account = await uow.accounts.update_account(account_id, data)
        return message_with(pb.UpdateAccountResponse, account=converters.account_fields(account))

    async def MoveAccountToWorkspace(
        self, request: pb.MoveAccountToWorkspaceRequest, context: Context
    ) -> pb.MoveAccountToWorkspaceResponse:
        account_id = parse_id(request.account_id, field="account_id")
        data = converters.move_request_from_proto(request)
        async with self._units() as uow:
            account = await uow.accounts.move_account(account_id, data)
        return message_with(pb.MoveAccountToWorkspaceResponse, account=converters.account_fields(account))
