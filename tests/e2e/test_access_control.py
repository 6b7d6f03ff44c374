"""The permission matrix: every RPC called by every kind of caller, over a real gRPC channel.

The expected grants are written out by hand, not derived from the policy table, so a policy that
grants more than intended fails here. A new RPC must be added to MATRIX (the first test says so).
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import symbol_database
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from server.api_keys.schemas import ApiKeyCreateRequestSchema
from server.app import REGISTRATIONS
from server.auth.principal import Principal, PrincipalKind
from server.auth.roles import WorkspaceRole
from server.composition import Infrastructure
from server.workspaces.schemas import WorkspaceCreateRequestSchema
from tests.callers import make_caller
from tests.e2e.conftest import Stack

ANONYMOUS = "anonymous"
OUTSIDER = "outsider"  # signed in, no role anywhere
VIEWER, MEMBER, ADMIN, OWNER = "viewer", "member", "admin", "owner"  # roles in the workspace under test
OTHER_OWNER = "owner_of_another_workspace"
STAFF, APPROVER, ADMINISTRATOR, SUPERUSER = "staff", "approver", "administrator", "superuser"
KEY_STAFF, KEY_ADMINISTRATOR = "api_key_staff", "api_key_administrator"

EVERYONE = frozenset(
    {ANONYMOUS, OUTSIDER, VIEWER, MEMBER, ADMIN, OWNER, OTHER_OWNER, STAFF, APPROVER, ADMINISTRATOR, SUPERUSER}
    | {KEY_STAFF, KEY_ADMINISTRATOR}
)
SIGNED_IN = EVERYONE - {ANONYMOUS}
ADMINS = frozenset({SUPERUSER, ADMINISTRATOR, KEY_ADMINISTRATOR})
STAFF_READ = ADMINS | {STAFF, APPROVER, KEY_STAFF}
APPROVERS = ADMINS | {APPROVER}
WORKSPACE_READ = STAFF_READ | {VIEWER, MEMBER, ADMIN, OWNER}
WORKSPACE_ASK = ADMINS | {MEMBER, ADMIN, OWNER}  # request assets, cancel requests
WORKSPACE_MANAGE = ADMINS | {ADMIN, OWNER}  # members, account access, pixel sharing, connections

MATRIX: Mapping[str, frozenset[str]] = {
    "adplane.v1.AuthService/Login": EVERYONE,
    "adplane.v1.AuthService/RefreshToken": EVERYONE,
    "adplane.v1.AuthService/Logout": EVERYONE,
    "adplane.v1.AuthService/GetCurrentUser": SIGNED_IN,
    "adplane.v1.UserService/CreateUser": ADMINS,
    "adplane.v1.UserService/GetUser": STAFF_READ,
    "adplane.v1.UserService/ListUsers": STAFF_READ,
    "adplane.v1.UserService/UpdateUser": ADMINS,
    "adplane.v1.UserService/DeactivateUser": ADMINS,
    "adplane.v1.UserService/SetUserRoles": ADMINS,
    "adplane.v1.UserService/ListRoles": STAFF_READ,
    "adplane.v1.ApiKeyService/CreateApiKey": ADMINS,
    "adplane.v1.ApiKeyService/ListApiKeys": ADMINS,
    "adplane.v1.ApiKeyService/RevokeApiKey": ADMINS,
    "adplane.v1.WorkspaceService/CreateWorkspace": ADMINS,
    "adplane.v1.WorkspaceService/GetWorkspace": WORKSPACE_READ,
    "adplane.v1.WorkspaceService/ListWorkspaces": STAFF_READ,
    "adplane.v1.WorkspaceService/UpdateWorkspace": ADMINS,
    "adplane.v1.WorkspaceService/DeleteWorkspace": ADMINS,
    "adplane.v1.WorkspaceService/ListMyWorkspaces": SIGNED_IN,
    "adplane.v1.WorkspaceService/ListWorkspaceMembers": WORKSPACE_READ,
    "adplane.v1.WorkspaceService/AddWorkspaceMember": WORKSPACE_MANAGE,
    "adplane.v1.WorkspaceService/UpdateWorkspaceMember": WORKSPACE_MANAGE,
    "adplane.v1.WorkspaceService/RemoveWorkspaceMember": WORKSPACE_MANAGE,
    "adplane.v1.BusinessManagerService/CreateBusinessManager": ADMINS,
    "adplane.v1.BusinessManagerService/GetBusinessManager": STAFF_READ,
    "adplane.v1.BusinessManagerService/ListBusinessManagers": STAFF_READ,
    "adplane.v1.BusinessManagerService/UpdateBusinessManager": ADMINS,
    "adplane.v1.BusinessManagerService/DeleteBusinessManager": ADMINS,
    "adplane.v1.BusinessManagerService/RequestBusinessManagerConnection": WORKSPACE_MANAGE,
    "adplane.v1.BusinessManagerService/ListWorkspaceBusinessManagers": WORKSPACE_READ,
    "adplane.v1.AccountService/RequestAccount": WORKSPACE_ASK,
    "adplane.v1.AccountService/ListAccounts": WORKSPACE_READ,
    "adplane.v1.AccountService/GetAccount": WORKSPACE_READ,
    "adplane.v1.AccountService/RequestSpendCapChange": WORKSPACE_ASK,
    "adplane.v1.AccountService/ListAccountUsers": WORKSPACE_READ,
    "adplane.v1.AccountService/AssignAccountUser": WORKSPACE_MANAGE,
    "adplane.v1.AccountService/UnassignAccountUser": WORKSPACE_MANAGE,
    "adplane.v1.AccountService/ListAllAccounts": STAFF_READ,
    "adplane.v1.AccountService/UpdateAccount": ADMINS,
    "adplane.v1.AccountService/MoveAccountToWorkspace": ADMINS,
    "adplane.v1.PixelService/RequestPixel": WORKSPACE_ASK,
    "adplane.v1.PixelService/ListPixels": WORKSPACE_READ,
    "adplane.v1.PixelService/GetPixel": WORKSPACE_READ,
    "adplane.v1.PixelService/RequestPixelShare": WORKSPACE_ASK,
    "adplane.v1.PixelService/UnsharePixel": WORKSPACE_MANAGE,
    "adplane.v1.PixelService/ListAllPixels": STAFF_READ,
    "adplane.v1.RequestService/ListWorkspaceRequests": WORKSPACE_READ,
    "adplane.v1.RequestService/GetRequest": WORKSPACE_READ,
    "adplane.v1.RequestService/CancelRequest": WORKSPACE_ASK,
    "adplane.v1.RequestService/ListRequests": STAFF_READ,
    "adplane.v1.RequestService/ApproveRequest": APPROVERS,
    "adplane.v1.RequestService/RejectRequest": APPROVERS,
    "adplane.v1.RequestService/RetryRequest": APPROVERS,
    "adplane.v1.RequestService/WatchRequests": STAFF_READ,
    "adplane.v1.RequestService/WatchWorkspaceRequests": WORKSPACE_READ,
    "adplane.v1.ExportService/ListExports": WORKSPACE_READ,
    "adplane.v1.ExportService/GetExportDownloadUrl": WORKSPACE_READ,
    "adplane.v1.ExportService/ListAllExports": STAFF_READ,
    "adplane.v1.ExportService/GetAnyExportDownloadUrl": STAFF_READ,
    "adplane.v1.AuditLogService/ListAuditLogs": STAFF_READ,
    "adplane.v1.AuditLogService/ListWorkspaceAuditLogs": STAFF_READ | {ADMIN, OWNER},
}

METHODS = {
    f"{registration.name}/{method.name}": method
    for registration in REGISTRATIONS
    for method in registration.descriptor.methods
}


def test_the_matrix_covers_every_rpc() -> None:
    assert set(MATRIX) == set(METHODS), "add new RPCs to MATRIX with the callers they are meant for"


@dataclass(frozen=True)
class Callers:
    workspace_id: uuid.UUID
    metadata: Mapping[str, tuple[tuple[str, str], ...]]


@pytest.fixture
async def callers(infrastructure: Infrastructure) -> Callers:
    async with infrastructure.unit_of_work() as uow:
        workspace = await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name="Under Test"))
        other = await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name="Elsewhere"))
    metadata: dict[str, tuple[tuple[str, str], ...]] = {ANONYMOUS: ()}
    for name, kwargs in {
        OUTSIDER: {},
        VIEWER: {"memberships": {workspace.id: WorkspaceRole.VIEWER}},
        MEMBER: {"memberships": {workspace.id: WorkspaceRole.MEMBER}},
        ADMIN: {"memberships": {workspace.id: WorkspaceRole.ADMIN}},
        OWNER: {"memberships": {workspace.id: WorkspaceRole.OWNER}},
        OTHER_OWNER: {"memberships": {other.id: WorkspaceRole.OWNER}},
        STAFF: {"roles": ["staff"]},
        APPROVER: {"roles": ["approver"]},
        ADMINISTRATOR: {"roles": ["administrator"]},
        SUPERUSER: {"superuser": True},
    }.items():
        metadata[name] = (await make_caller(infrastructure, **kwargs)).metadata  # type: ignore[arg-type]
    creator = Principal(kind=PrincipalKind.API_KEY, id=uuid.uuid4())
    for name, role in {KEY_STAFF: "staff", KEY_ADMINISTRATOR: "administrator"}.items():
        async with infrastructure.unit_of_work() as uow:
            created = await uow.api_keys.create_api_key(
                ApiKeyCreateRequestSchema(name=name, role_names=[role]), actor=creator
            )
        assert created.secret is not None
        metadata[name] = (("x-api-key", created.secret),)
    assert set(metadata) == EVERYONE
    return Callers(workspace_id=workspace.id, metadata=metadata)


def _reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


async def _call(
    channel: grpc.aio.Channel, method: str, workspace_id: uuid.UUID, metadata: tuple[tuple[str, str], ...]
) -> grpc.StatusCode | tuple[grpc.StatusCode, str]:
    """Call `method` with an almost empty request naming the workspace under test; the code and
    ErrorInfo reason of a failure, or OK."""
    descriptor = METHODS[method]
    request_class = symbol_database.Default().GetSymbol(descriptor.input_type.full_name)
    response_class = symbol_database.Default().GetSymbol(descriptor.output_type.full_name)
    request = request_class()
    if "workspace_id" in descriptor.input_type.fields_by_name:
        setattr(request, "workspace_id", str(workspace_id))  # noqa: B010 - the message class is dynamic
    serialize, deserialize = request_class.SerializeToString, response_class.FromString
    try:
        if descriptor.server_streaming:
            # A stream is granted when its first message (the snapshot) arrives.
            open_stream = channel.unary_stream(
                f"/{method}", request_serializer=serialize, response_deserializer=deserialize
            )
            stream: grpc.aio.UnaryStreamCall[Any, Any] = open_stream(request, metadata=metadata or None, timeout=10)
            try:
                await stream.read()
            finally:
                stream.cancel()
        else:
            call = channel.unary_unary(f"/{method}", request_serializer=serialize, response_deserializer=deserialize)
            await call(request, metadata=metadata or None, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code(), _reason(error)
    return grpc.StatusCode.OK


DENIALS = {
    (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIALS_REQUIRED"),
    (grpc.StatusCode.PERMISSION_DENIED, "MISSING_PERMISSION"),
}


async def test_every_rpc_grants_exactly_the_intended_callers(
    stack: Stack, callers: Callers, anonymous_channel: grpc.aio.Channel
) -> None:
    unexpected: list[str] = []
    for method, allowed in MATRIX.items():
        for caller, metadata in callers.metadata.items():
            outcome = await _call(anonymous_channel, method, callers.workspace_id, metadata)
            code = outcome if isinstance(outcome, grpc.StatusCode) else outcome[0]
            if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                unexpected.append(f"{caller} CRASHED {method}: {outcome}")
            denied = outcome in DENIALS
            if caller in allowed and denied:
                unexpected.append(f"{caller} refused {method}: {outcome}")
            elif caller not in allowed and not denied:
                unexpected.append(f"{caller} GRANTED {method}: {outcome}")
            elif caller == ANONYMOUS and caller not in allowed:
                assert outcome == (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIALS_REQUIRED")
    assert unexpected == []
