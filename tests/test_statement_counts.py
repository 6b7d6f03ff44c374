"""No N+1: every List RPC issues the same small number of SQL statements at page size 1 and 200.

The RPCs are found by walking the registered services, so a new List RPC is counted unasked; the
data is seeded with more than 200 rows of everything a list can return.
"""

import datetime as dt
import uuid
from typing import Any

import pytest
from google.api import annotations_pb2
from google.protobuf import symbol_database
from google.protobuf.descriptor import MethodDescriptor

from adplane.v1 import account_service_pb2, request_pb2, request_service_pb2
from server.accounts.models import Account, AccountStatus, AccountUser, MetaAccountStatus
from server.api_keys.models import ApiKey
from server.app import REGISTRATIONS
from server.audit_logs.models import AuditLog
from server.auth.principal import Principal, PrincipalKind, set_current_principal
from server.auth.roles import WorkspaceRole
from server.business_managers.models import (
    BusinessManager,
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.composition import Infrastructure
from server.db import new_id
from server.exports.models import Export
from server.pixels.models import Pixel, PixelAccount
from server.requests.models import Request, RequestStatus, RequestType
from server.statement_log import sent_statements
from server.users.models import User
from server.workspaces.models import Workspace, WorkspaceStatus, WorkspaceUser

ROWS = 201
LISTS = [
    (registration, method)
    for registration in REGISTRATIONS
    for method in registration.descriptor.methods
    if method.name.startswith("List")
]
# Statements a List may spend: the page, plus one per relationship loaded for the whole page.
MAX_STATEMENTS = 3


class _Context:
    def invocation_metadata(self) -> tuple[()]:
        return ()


@pytest.fixture
async def seeded(infrastructure: Infrastructure) -> dict[str, uuid.UUID]:
    """More than a page of every kind of row, all reachable from one workspace and one user."""
    async with infrastructure.unit_of_work() as uow:
        session = uow.session
        workspaces = [Workspace(id=new_id(), name=f"W{i}", status=WorkspaceStatus.ACTIVE) for i in range(ROWS)]
        users = [User(id=new_id(), email=f"u{i}@example.com", full_name="", password_hash="x") for i in range(ROWS)]
        session.add_all([*workspaces, *users])
        await session.flush()
        workspace, me = workspaces[0], users[0]
        session.add_all(
            WorkspaceUser(workspace_id=workspace.id, user_id=u.id, role=WorkspaceRole.MEMBER) for u in users
        )
        session.add_all(
            WorkspaceUser(workspace_id=w.id, user_id=me.id, role=WorkspaceRole.OWNER) for w in workspaces[1:]
        )
        session.add_all(ApiKey(name=f"k{i}", prefix=f"adp_{i:08d}", secret_hash="x") for i in range(ROWS))
        managers = [
            BusinessManager(
                id=new_id(),
                meta_business_id=str(10_000 + i),
                name=f"BM{i}",
                ownership=BusinessManagerOwnership.PLATFORM,
                status=BusinessManagerStatus.ACTIVE,
                verification_status=BusinessVerificationStatus.VERIFIED,
            )
            for i in range(ROWS)
        ]
        session.add_all(managers)
        await session.flush()
        accounts = [
            Account(
                id=new_id(),
                workspace_id=workspace.id,
                business_manager_id=managers[0].id,
                name=f"A{i}",
                currency="EUR",
                timezone="Europe/Berlin",
                status=AccountStatus.ACTIVE,
                meta_status=MetaAccountStatus.ACTIVE,
            )
            for i in range(ROWS)
        ]
        pixels = [
            Pixel(id=new_id(), workspace_id=workspace.id, business_manager_id=managers[0].id, name=f"P{i}")
            for i in range(ROWS)
        ]
        session.add_all([*accounts, *pixels])
        await session.flush()
        session.add_all(PixelAccount(pixel_id=p.id, account_id=accounts[0].id) for p in pixels)
        session.add_all(PixelAccount(pixel_id=p.id, account_id=accounts[1].id) for p in pixels)
        session.add_all(AccountUser(account_id=accounts[0].id, user_id=u.id, tasks=["analyze"]) for u in users[:25])
        session.add_all(
            Request(
                type=RequestType.PIXEL_CREATION,
                status=RequestStatus.WAITING_FOR_APPROVAL,
                workspace_id=workspace.id,
                requester_type="user",
                requester_id=me.id,
                payload={"type": "pixel_creation", "name": "p", "business_manager_id": str(managers[0].id)},
                expires_at=workspace.created_at,
            )
            for _ in range(ROWS)
        )
        session.add_all(
            AuditLog(id=new_id(), workspace_id=workspace.id, entity_type="x", entity_id=me.id, action="test")
            for _ in range(ROWS)
        )
        session.add_all(
            Export(
                workspace_id=workspace.id,
                export_date=dt.date(2026, 1, 1) + dt.timedelta(days=i),
                object_key=f"exports/{workspace.id}/spend-{i}.csv",
                row_count=1,
                size_bytes=100,
            )
            for i in range(ROWS)
        )
    return {"workspace_id": workspace.id, "user_id": me.id, "account_id": accounts[0].id}


async def _call(
    infrastructure: Infrastructure, registration: Any, method: MethodDescriptor, ids: dict[str, uuid.UUID], size: int
) -> tuple[int, int]:
    """(statements issued, items returned) for one call of a List RPC."""
    request = symbol_database.Default().GetSymbol(method.input_type.full_name)()
    # Path parameters only: a system list's `workspace_id` is an optional filter.
    route = method.GetOptions().Extensions[annotations_pb2.http].get
    for field in ("workspace_id", "account_id"):
        if f"{{{field}}}" in route:
            setattr(request, field, str(ids[field]))
    if "page_size" in method.input_type.fields_by_name:
        setattr(request, "page_size", size)  # noqa: B010 - the message class is dynamic
    servicer = registration.servicer(infrastructure)
    with sent_statements(infrastructure) as seen:
        response = await getattr(servicer, method.name)(request, _Context())
    items = next(len(getattr(response, f.name)) for f in method.output_type.fields if f.is_repeated)
    # Transaction control (BEGIN is implicit; COMMIT/ROLLBACK are not statements of the list).
    return len([s for s in seen if not s.lstrip().upper().startswith(("COMMIT", "ROLLBACK"))]), items


@pytest.mark.parametrize(("registration", "method"), LISTS, ids=[m.full_name for _, m in LISTS])
async def test_list_cost_does_not_grow_with_the_page(
    infrastructure: Infrastructure, seeded: dict[str, uuid.UUID], registration: Any, method: MethodDescriptor
) -> None:
    set_current_principal(Principal(kind=PrincipalKind.USER, id=seeded["user_id"], superuser=True))
    try:
        if "page_size" not in method.input_type.fields_by_name:
            cost, items = await _call(infrastructure, registration, method, seeded, 0)
            assert items > 1
            assert cost <= MAX_STATEMENTS
            return
        small, one = await _call(infrastructure, registration, method, seeded, 1)
        large, many = await _call(infrastructure, registration, method, seeded, 200)
    finally:
        set_current_principal(None)
    assert (one, many) == (1, 200), "seed more rows for this list"
    assert small == large, f"{method.full_name}: {small} statements for 1 row, {large} for 200"
    assert large <= MAX_STATEMENTS


# The statements of the two hot writes (transaction control left out: BEGIN is implicit, COMMIT one
# round trip whatever the statements). Each is a round trip on the call's connection while its
# transaction holds it: one more here is one more wait per write (bench/README.md, the write path).
REQUEST_ACCOUNT_STATEMENTS = 6
APPROVE_REQUEST_STATEMENTS = 6


def _servicer(infrastructure: Infrastructure, service: str) -> Any:
    registration = next(r for r in REGISTRATIONS if r.descriptor.name == service)
    return registration.servicer(infrastructure)


async def _counted(infrastructure: Infrastructure, call: Any) -> tuple[list[str], Any]:
    with sent_statements(infrastructure) as seen:
        response = await call
    # The start of each statement: what a failing count prints.
    return [s[:70] for s in seen if not s.lstrip().upper().startswith(("COMMIT", "ROLLBACK"))], response


@pytest.fixture
async def requester(infrastructure: Infrastructure) -> dict[str, uuid.UUID]:
    """An active workspace, a member of it and an active platform business manager."""
    async with infrastructure.unit_of_work() as uow:
        session = uow.session
        workspace = Workspace(id=new_id(), name="W", status=WorkspaceStatus.ACTIVE)
        user = User(id=new_id(), email="writer@example.com", full_name="", password_hash="x")
        manager = BusinessManager(
            id=new_id(),
            meta_business_id="20000",
            name="BM",
            ownership=BusinessManagerOwnership.PLATFORM,
            status=BusinessManagerStatus.ACTIVE,
            verification_status=BusinessVerificationStatus.VERIFIED,
        )
        session.add_all([workspace, user, manager])
        await session.flush()
        session.add(WorkspaceUser(workspace_id=workspace.id, user_id=user.id, role=WorkspaceRole.MEMBER))
    return {"workspace_id": workspace.id, "user_id": user.id, "business_manager_id": manager.id}


def _account_request(ids: dict[str, uuid.UUID], name: str) -> account_service_pb2.RequestAccountRequest:
    return account_service_pb2.RequestAccountRequest(
        workspace_id=str(ids["workspace_id"]),
        account=account_service_pb2.AccountDraft(
            name=name, currency="EUR", timezone="Europe/Berlin", business_manager_id=str(ids["business_manager_id"])
        ),
        request_id=str(uuid.uuid4()),
    )


async def test_request_account_statements(infrastructure: Infrastructure, requester: dict[str, uuid.UUID]) -> None:
    """RequestAccount with a request_id: the business manager and workspace checks, the idempotency
    claim, the request, its event and audit entry. A replay of the same request_id costs no more."""
    accounts = _servicer(infrastructure, "AccountService")
    asked = _account_request(requester, "first")
    set_current_principal(Principal(kind=PrincipalKind.USER, id=requester["user_id"]))
    try:
        seen, response = await _counted(infrastructure, accounts.RequestAccount(asked, _Context()))
        replayed_seen, replayed = await _counted(infrastructure, accounts.RequestAccount(asked, _Context()))
    finally:
        set_current_principal(None)
    assert len(seen) == REQUEST_ACCOUNT_STATEMENTS, seen
    assert replayed.request.id == response.request.id
    assert len(replayed_seen) <= REQUEST_ACCOUNT_STATEMENTS, replayed_seen


async def test_approve_request_statements(infrastructure: Infrastructure, requester: dict[str, uuid.UUID]) -> None:
    """ApproveRequest with a request_id: the idempotency claim, the request, the workspace check,
    the conditional UPDATE, the audit entry, and the event and the approved work in the outbox
    (one executemany just before the commit)."""
    accounts = _servicer(infrastructure, "AccountService")
    requests = _servicer(infrastructure, "RequestService")
    set_current_principal(Principal(kind=PrincipalKind.USER, id=requester["user_id"]))
    try:
        submitted = await accounts.RequestAccount(_account_request(requester, "to approve"), _Context())
    finally:
        set_current_principal(None)
    approval = request_service_pb2.ApproveRequestRequest(id=submitted.request.id, request_id=str(uuid.uuid4()))
    set_current_principal(Principal(kind=PrincipalKind.USER, id=requester["user_id"], superuser=True))
    try:
        seen, response = await _counted(infrastructure, requests.ApproveRequest(approval, _Context()))
    finally:
        set_current_principal(None)
    assert response.request.status == request_pb2.REQUEST_STATUS_APPROVED
    assert len(seen) == APPROVE_REQUEST_STATEMENTS, seen
