"""BusinessManagerServicer: the translation between the contract and the service."""

import uuid
from collections.abc import Iterator
from typing import cast

import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import select

from adplane.v1 import business_manager_pb2 as bm_pb
from adplane.v1 import business_manager_service_pb2 as pb
from adplane.v1 import request_pb2
from server.audit_logs.models import AuditLog
from server.auth.principal import Principal, PrincipalKind, set_current_principal
from server.business_managers.api import BusinessManagerServicer, Context
from server.business_managers.exceptions import BusinessManagerExistsException
from server.business_managers.models import BusinessManager
from server.composition import Infrastructure
from server.exceptions import InvalidRequestException
from server.workspaces.schemas import WorkspaceCreateRequestSchema

# The servicer never touches its context: errors are raised for the interceptor to map.
NO_CONTEXT = cast(Context, None)
TOKEN = "EAAG-system-user-token-0123456789abcdef"
NEW_TOKEN = "EAAG-rotated-token-fedcba9876543210"


@pytest.fixture
def servicer(infrastructure: Infrastructure) -> BusinessManagerServicer:
    return BusinessManagerServicer(infrastructure.unit_of_work)


@pytest.fixture
def as_staff() -> Iterator[Principal]:
    principal = Principal(kind=PrincipalKind.USER, id=uuid.uuid4(), superuser=True)
    set_current_principal(principal)
    yield principal
    set_current_principal(None)


def new_bm(meta_business_id: str = "1234567890", name: str = "Agency BM", token: str = TOKEN) -> bm_pb.BusinessManager:
    return bm_pb.BusinessManager(meta_business_id=meta_business_id, name=name, system_user_token=token)


async def make_workspace(infrastructure: Infrastructure) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        return (await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name="Acme"))).id


async def test_create_get_update_delete_through_the_contract(
    servicer: BusinessManagerServicer, as_staff: Principal, infrastructure: Infrastructure
) -> None:
    created = (
        await servicer.CreateBusinessManager(
            pb.CreateBusinessManagerRequest(
                # Output-only fields sent by a client are ignored.
                business_manager=bm_pb.BusinessManager(
                    meta_business_id="1234567890",
                    name="Agency BM",
                    system_user_token=TOKEN,
                    ownership=bm_pb.BUSINESS_MANAGER_OWNERSHIP_CLIENT,
                    status=bm_pb.BUSINESS_MANAGER_STATUS_ARCHIVED,
                ),
                request_id="c1",
            ),
            NO_CONTEXT,
        )
    ).business_manager
    assert created.system_user_token == ""
    assert created.has_system_user_token is True
    assert created.ownership == bm_pb.BUSINESS_MANAGER_OWNERSHIP_PLATFORM
    assert created.status == bm_pb.BUSINESS_MANAGER_STATUS_ACTIVE
    assert created.verification_status == bm_pb.BUSINESS_VERIFICATION_STATUS_NOT_VERIFIED
    assert created.workspace_id == ""
    assert created.etag == 'W/"1"'
    assert created.HasField("create_time")
    assert created.HasField("update_time")
    assert TOKEN not in created.SerializeToString().decode(errors="ignore")
    uuid.UUID(created.id)

    replayed = await servicer.CreateBusinessManager(
        pb.CreateBusinessManagerRequest(business_manager=new_bm(), request_id="c1"), NO_CONTEXT
    )
    assert replayed.business_manager == created

    fetched = await servicer.GetBusinessManager(
        pb.GetBusinessManagerRequest(business_manager_id=created.id), NO_CONTEXT
    )
    assert fetched.business_manager == created

    updated = (
        await servicer.UpdateBusinessManager(
            pb.UpdateBusinessManagerRequest(
                business_manager_id=created.id,
                business_manager=bm_pb.BusinessManager(name="Renamed", system_user_token=NEW_TOKEN, etag=created.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["name", "system_user_token"]),
            ),
            NO_CONTEXT,
        )
    ).business_manager
    assert updated.name == "Renamed"
    assert updated.system_user_token == ""
    assert updated.etag == 'W/"2"'
    async with infrastructure.unit_of_work() as uow:
        row = await uow.session.get(BusinessManager, uuid.UUID(created.id))
    assert row is not None
    assert row.encrypted_token is not None
    assert infrastructure.cipher.decrypt(row.encrypted_token) == NEW_TOKEN

    deleted = (
        await servicer.DeleteBusinessManager(
            pb.DeleteBusinessManagerRequest(business_manager_id=created.id, etag=updated.etag), NO_CONTEXT
        )
    ).business_manager
    assert deleted.status == bm_pb.BUSINESS_MANAGER_STATUS_ARCHIVED
    assert deleted.has_system_user_token is False

    # The audit trail names the caller and never holds the token.
    async with infrastructure.unit_of_work() as uow:
        entries = list(await uow.session.scalars(select(AuditLog).order_by(AuditLog.id)))
    assert [(e.action, e.actor_id) for e in entries] == [
        ("create", as_staff.id),
        ("update", as_staff.id),
        ("delete", as_staff.id),
    ]
    assert all(TOKEN not in str(e.before) + str(e.after) and NEW_TOKEN not in str(e.after) for e in entries)


@pytest.mark.parametrize(
    ("business_manager", "field"),
    [
        (new_bm(meta_business_id="act_1"), "business_manager.meta_business_id"),
        (new_bm(name="   "), "business_manager.name"),
        (new_bm(token=""), "business_manager.system_user_token"),
        (new_bm(token="too-short-token"), "business_manager.system_user_token"),
    ],
)
async def test_invalid_create_names_the_request_field(
    servicer: BusinessManagerServicer, as_staff: Principal, business_manager: bm_pb.BusinessManager, field: str
) -> None:
    with pytest.raises(InvalidRequestException) as raised:
        await servicer.CreateBusinessManager(
            pb.CreateBusinessManagerRequest(business_manager=business_manager), NO_CONTEXT
        )
    assert [v.field for v in raised.value.violations] == [field]
    token = business_manager.system_user_token
    if token:
        assert token not in raised.value.message
        assert all(token not in v.description for v in raised.value.violations)


@pytest.mark.parametrize(
    ("paths", "business_manager", "field"),
    [
        ([], bm_pb.BusinessManager(name="x"), "update_mask.paths"),
        (["name", "status"], bm_pb.BusinessManager(name="x"), "update_mask.paths[1]"),
        (["name"], bm_pb.BusinessManager(name=""), "business_manager.name"),
        (["system_user_token"], bm_pb.BusinessManager(), "business_manager.system_user_token"),
    ],
)
async def test_invalid_update_names_the_request_field(
    servicer: BusinessManagerServicer,
    as_staff: Principal,
    paths: list[str],
    business_manager: bm_pb.BusinessManager,
    field: str,
) -> None:
    with pytest.raises(InvalidRequestException) as raised:
        await servicer.UpdateBusinessManager(
            pb.UpdateBusinessManagerRequest(
                business_manager_id=str(uuid.uuid4()),
                business_manager=business_manager,
                update_mask=field_mask_pb2.FieldMask(paths=paths),
            ),
            NO_CONTEXT,
        )
    assert [v.field for v in raised.value.violations] == [field]


async def test_malformed_ids_and_filters_are_invalid(servicer: BusinessManagerServicer, as_staff: Principal) -> None:
    with pytest.raises(InvalidRequestException) as raised:
        await servicer.GetBusinessManager(pb.GetBusinessManagerRequest(business_manager_id="bm-1"), NO_CONTEXT)
    assert raised.value.violations[0].reason == "INVALID_ID"
    assert raised.value.violations[0].field == "business_manager_id"
    with pytest.raises(InvalidRequestException) as raised:
        await servicer.ListBusinessManagers(pb.ListBusinessManagersRequest(workspace_id="nope"), NO_CONTEXT)
    assert raised.value.violations[0].field == "workspace_id"
    with pytest.raises(InvalidRequestException) as raised:
        await servicer.ListBusinessManagers(pb.ListBusinessManagersRequest(page_size=-1), NO_CONTEXT)
    assert raised.value.violations[0].field == "page_size"
    with pytest.raises(InvalidRequestException) as raised:
        await servicer.ListBusinessManagers(
            pb.ListBusinessManagersRequest(status=cast(bm_pb.BusinessManagerStatus.ValueType, 99)), NO_CONTEXT
        )
    assert raised.value.violations[0].field == "status"


async def test_list_filters_by_enum_through_the_contract(
    servicer: BusinessManagerServicer, as_staff: Principal
) -> None:
    first = (
        await servicer.CreateBusinessManager(pb.CreateBusinessManagerRequest(business_manager=new_bm("1")), NO_CONTEXT)
    ).business_manager
    second = (
        await servicer.CreateBusinessManager(pb.CreateBusinessManagerRequest(business_manager=new_bm("2")), NO_CONTEXT)
    ).business_manager
    await servicer.DeleteBusinessManager(pb.DeleteBusinessManagerRequest(business_manager_id=second.id), NO_CONTEXT)

    active = await servicer.ListBusinessManagers(
        pb.ListBusinessManagersRequest(status=bm_pb.BUSINESS_MANAGER_STATUS_ACTIVE), NO_CONTEXT
    )
    assert [b.id for b in active.business_managers] == [first.id]
    clients = await servicer.ListBusinessManagers(
        pb.ListBusinessManagersRequest(ownership=bm_pb.BUSINESS_MANAGER_OWNERSHIP_CLIENT), NO_CONTEXT
    )
    assert list(clients.business_managers) == []
    page = await servicer.ListBusinessManagers(pb.ListBusinessManagersRequest(page_size=1), NO_CONTEXT)
    assert [b.id for b in page.business_managers] == [first.id]
    rest = await servicer.ListBusinessManagers(
        pb.ListBusinessManagersRequest(page_size=1, page_token=page.next_page_token), NO_CONTEXT
    )
    assert [b.id for b in rest.business_managers] == [second.id]
    assert rest.next_page_token == ""


async def test_connection_request_through_the_contract(
    servicer: BusinessManagerServicer, as_staff: Principal, infrastructure: Infrastructure
) -> None:
    workspace_id = await make_workspace(infrastructure)
    response = await servicer.RequestBusinessManagerConnection(
        pb.RequestBusinessManagerConnectionRequest(
            workspace_id=str(workspace_id),
            connection=request_pb2.BusinessManagerConnectionPayload(meta_business_id=" 4242 ", name=" Acme Business "),
        ),
        NO_CONTEXT,
    )
    queued = response.request
    assert queued.status == request_pb2.REQUEST_STATUS_WAITING_FOR_APPROVAL
    assert queued.type == request_pb2.REQUEST_TYPE_BUSINESS_MANAGER_CONNECTION
    assert queued.workspace_id == str(workspace_id)
    assert queued.requester_id == str(as_staff.id)
    assert queued.WhichOneof("payload") == "business_manager_connection"
    assert queued.business_manager_connection.meta_business_id == "4242"
    assert queued.business_manager_connection.name == "Acme Business"

    await servicer.CreateBusinessManager(pb.CreateBusinessManagerRequest(business_manager=new_bm("77")), NO_CONTEXT)
    with pytest.raises(BusinessManagerExistsException):
        await servicer.RequestBusinessManagerConnection(
            pb.RequestBusinessManagerConnectionRequest(
                workspace_id=str(workspace_id),
                connection=request_pb2.BusinessManagerConnectionPayload(meta_business_id="77", name="Taken"),
            ),
            NO_CONTEXT,
        )


@pytest.mark.parametrize(
    ("connection", "field"),
    [
        (request_pb2.BusinessManagerConnectionPayload(meta_business_id="", name="Acme"), "connection.meta_business_id"),
        (request_pb2.BusinessManagerConnectionPayload(meta_business_id="12", name=""), "connection.name"),
    ],
)
async def test_invalid_connection_names_the_request_field(
    servicer: BusinessManagerServicer,
    as_staff: Principal,
    connection: request_pb2.BusinessManagerConnectionPayload,
    field: str,
) -> None:
    with pytest.raises(InvalidRequestException) as raised:
        await servicer.RequestBusinessManagerConnection(
            pb.RequestBusinessManagerConnectionRequest(workspace_id=str(uuid.uuid4()), connection=connection),
            NO_CONTEXT,
        )
    assert [v.field for v in raised.value.violations] == [field]


async def test_workspace_list_through_the_contract(
    servicer: BusinessManagerServicer, as_staff: Principal, infrastructure: Infrastructure
) -> None:
    workspace_id = await make_workspace(infrastructure)
    platform = (
        await servicer.CreateBusinessManager(pb.CreateBusinessManagerRequest(business_manager=new_bm("1")), NO_CONTEXT)
    ).business_manager
    listed = await servicer.ListWorkspaceBusinessManagers(
        pb.ListWorkspaceBusinessManagersRequest(workspace_id=str(workspace_id)), NO_CONTEXT
    )
    assert list(listed.business_managers) == [platform]
    assert listed.next_page_token == ""
