"""The background work against the real database and the Graph API simulator over loopback."""

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from devstack.meta_simulator import SimulatorControl, SimulatorServer
from devstack.meta_simulator.schemas import SeededBusiness
from server.accounts.models import Account, AccountStatus, MetaAccountStatus
from server.audit_logs.models import AuditLog
from server.auth.principal import Principal, PrincipalKind
from server.business_managers.models import (
    BusinessManager,
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.clients.meta import IMetaClient, MetaGraphClient
from server.composition import Infrastructure, UnitOfWork
from server.config import Settings
from server.pixels.models import Pixel
from server.requests.models import Request
from server.requests.schemas import RequestPayload, RequestResponseSchema
from server.requests.work import RequestWork
from server.workspaces.schemas import WorkspaceCreateRequestSchema

# Back-offs short enough for tests that run into Meta's limits on purpose.
FAST_BACKOFF_SECONDS = 0.02
MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


@pytest.fixture
def control(simulator: SimulatorServer) -> Iterator[SimulatorControl]:
    """The simulator's control API, on a simulator emptied for each test."""
    with SimulatorControl(simulator.base_url) as control:
        control.reset()
        yield control


@pytest.fixture
async def meta(simulator: SimulatorServer) -> AsyncIterator[IMetaClient]:
    async with httpx.AsyncClient(timeout=10.0) as http:
        client: IMetaClient = MetaGraphClient(http, base_url=simulator.base_url)
        yield client


@pytest.fixture
def work_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"task_max_backoff_seconds": FAST_BACKOFF_SECONDS, "task_max_attempts": MAX_ATTEMPTS}
    )


@pytest.fixture
def work(infrastructure: Infrastructure, meta: IMetaClient, work_settings: Settings) -> RequestWork[UnitOfWork]:
    return infrastructure.request_work(meta, work_settings)


@dataclass(frozen=True)
class World:
    """The agency's business on Meta (simulated), its platform business manager here, and a client
    workspace to carry requests out for."""

    business: SeededBusiness
    business_manager_id: uuid.UUID
    workspace_id: uuid.UUID

    @property
    def meta_business_id(self) -> str:
        return self.business.id


async def add_business_manager(
    infrastructure: Infrastructure,
    *,
    meta_business_id: str,
    token: str | None,
    ownership: BusinessManagerOwnership = BusinessManagerOwnership.PLATFORM,
    workspace_id: uuid.UUID | None = None,
    status: BusinessManagerStatus = BusinessManagerStatus.ACTIVE,
) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        row = BusinessManager(
            meta_business_id=meta_business_id,
            name=f"BM {meta_business_id}",
            ownership=ownership,
            workspace_id=workspace_id,
            status=status,
            verification_status=BusinessVerificationStatus.VERIFIED,
            encrypted_token=infrastructure.cipher.encrypt(token) if token is not None else None,
        )
        uow.session.add(row)
        await uow.session.flush()
    return row.id


@pytest.fixture
async def world(infrastructure: Infrastructure, control: SimulatorControl, workspace_id: uuid.UUID) -> World:
    business = control.add_business("Agency")
    business_manager_id = await add_business_manager(infrastructure, meta_business_id=business.id, token=business.token)
    return World(business=business, business_manager_id=business_manager_id, workspace_id=workspace_id)


@pytest.fixture
async def workspace_id(infrastructure: Infrastructure) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        workspace = await uow.workspaces.create_workspace(
            WorkspaceCreateRequestSchema(name=f"Client {uuid.uuid4().hex[:8]}")
        )
    return workspace.id


def staff() -> Principal:
    return Principal(kind=PrincipalKind.USER, id=uuid.uuid4(), superuser=True)


async def approved_request(
    infrastructure: Infrastructure, workspace_id: uuid.UUID, payload: RequestPayload
) -> uuid.UUID:
    """A request submitted and approved through the request service, as the RPCs do it."""
    async with infrastructure.unit_of_work() as uow:
        submitted = await uow.requests.submit(workspace_id, payload, actor=staff(), idempotency_key=None)
    async with infrastructure.unit_of_work() as uow:
        await uow.requests.approve_request(submitted.id, actor=staff(), idempotency_key=None)
    return submitted.id


async def stored_request(infrastructure: Infrastructure, request_id: uuid.UUID) -> RequestResponseSchema:
    async with infrastructure.unit_of_work() as uow:
        request = await uow.session.get(Request, request_id)
        assert request is not None
        return RequestResponseSchema.model_validate(request)


async def add_account(
    infrastructure: Infrastructure,
    *,
    workspace_id: uuid.UUID,
    business_manager_id: uuid.UUID,
    meta_account_id: str | None,
    **values: Any,
) -> uuid.UUID:
    fields: dict[str, Any] = {
        "name": "Account",
        "currency": "EUR",
        "timezone": "Europe/Berlin",
        "status": AccountStatus.ACTIVE,
        "meta_status": MetaAccountStatus.ACTIVE,
        **values,
    }
    async with infrastructure.unit_of_work() as uow:
        row = Account(
            workspace_id=workspace_id,
            business_manager_id=business_manager_id,
            meta_account_id=meta_account_id,
            **fields,
        )
        uow.session.add(row)
        await uow.session.flush()
    return row.id


async def add_pixel(
    infrastructure: Infrastructure,
    *,
    workspace_id: uuid.UUID,
    business_manager_id: uuid.UUID,
    meta_pixel_id: str | None,
    name: str = "Pixel",
) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        row = Pixel(
            workspace_id=workspace_id, business_manager_id=business_manager_id, meta_pixel_id=meta_pixel_id, name=name
        )
        uow.session.add(row)
        await uow.session.flush()
    return row.id


async def rows[M](infrastructure: Infrastructure, model: type[M], *criteria: Any) -> list[M]:
    async with infrastructure.unit_of_work() as uow:
        return list(await uow.session.scalars(select(model).where(*criteria)))


async def count(infrastructure: Infrastructure, model: Any, *criteria: Any) -> int:
    async with infrastructure.unit_of_work() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(model).where(*criteria)) or 0)


async def audit_entries(infrastructure: Infrastructure, entity_type: str, entity_id: uuid.UUID) -> list[AuditLog]:
    async with infrastructure.unit_of_work() as uow:
        statement = (
            select(AuditLog)
            .where(AuditLog.entity_type == entity_type, AuditLog.entity_id == entity_id)
            .order_by(AuditLog.id)
        )
        return list(await uow.session.scalars(statement))
