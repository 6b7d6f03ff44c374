"""The sync jobs against the real database and the Graph API simulator over loopback HTTP.

Meta's side is seeded and changed through the simulator's control API; our side is inserted
directly (accounts and pixels are created by the workers, not by an RPC).
"""

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select

from devstack.meta_simulator import SimulatorControl, SimulatorServer
from devstack.meta_simulator.schemas import AdAccountSeed, SeededBusiness
from server.accounts.models import Account, AccountStatus, MetaAccountStatus
from server.audit_logs.models import AuditLog
from server.business_managers.models import (
    BusinessManager,
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.clients.meta import IMetaClient, MetaGraphClient
from server.composition import Infrastructure
from server.config import Settings
from server.outbox.models import OutboxMessage
from server.pixels.models import Pixel
from server.workspaces.schemas import WorkspaceCreateRequestSchema


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


@pytest.fixture
def control(simulator: SimulatorServer) -> Iterator[SimulatorControl]:
    """The control API of a simulator emptied for each test."""
    with SimulatorControl(simulator.base_url) as control:
        control.reset()
        yield control


@pytest.fixture
async def meta(simulator: SimulatorServer) -> AsyncIterator[IMetaClient]:
    async with httpx.AsyncClient(timeout=10.0) as http:
        yield MetaGraphClient(http, base_url=simulator.base_url)


@pytest.fixture
def sync_settings(settings: Settings) -> Settings:
    """Back-offs short enough for tests that run into Meta's limits on purpose."""
    return settings.model_copy(update={"task_max_attempts": 3, "task_max_backoff_seconds": 0.01})


@pytest.fixture
async def workspace_id(infrastructure: Infrastructure) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        workspace = await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name="Sync tests"))
    return workspace.id


@dataclass(frozen=True)
class LinkedBusiness:
    """A business on both sides: in the simulator (with its token) and as our business manager."""

    meta: SeededBusiness
    id: uuid.UUID


async def link_business(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    name: str = "Agency",
    *,
    status: BusinessManagerStatus = BusinessManagerStatus.ACTIVE,
    verification_status: BusinessVerificationStatus = BusinessVerificationStatus.VERIFIED,
    meta_verification_status: str = "verified",
) -> LinkedBusiness:
    seeded = control.add_business(name, verification_status=meta_verification_status)
    async with infrastructure.unit_of_work() as uow:
        business_manager = BusinessManager(
            meta_business_id=seeded.id,
            name=name,
            ownership=BusinessManagerOwnership.PLATFORM,
            status=status,
            verification_status=verification_status,
            encrypted_token=infrastructure.cipher.encrypt(seeded.token),
        )
        uow.session.add(business_manager)
        await uow.session.flush()
    return LinkedBusiness(seeded, business_manager.id)


async def link_accounts(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    business: LinkedBusiness,
    workspace_id: uuid.UUID,
    count: int,
    **meta_fields: Any,
) -> list[tuple[uuid.UUID, str]]:
    """`count` ad accounts in the simulator and the same as ours, in sync: (our id, act id) each."""
    seeds = [
        AdAccountSeed.model_validate({"business_id": business.meta.id, "name": f"Account {n}", **meta_fields})
        for n in range(count)
    ]
    act_ids = control.add_ad_accounts(seeds)
    async with infrastructure.unit_of_work() as uow:
        accounts = [
            Account(
                workspace_id=workspace_id,
                business_manager_id=business.id,
                meta_account_id=act_id,
                name=seed.name,
                currency=seed.currency,
                timezone=seed.timezone_name,
                spend_cap_minor=seed.spend_cap or None,
                amount_spent_minor=seed.amount_spent,
                status=AccountStatus.ACTIVE,
                meta_status=MetaAccountStatus.ACTIVE,
                disable_reason="",
            )
            for seed, act_id in zip(seeds, act_ids, strict=True)
        ]
        uow.session.add_all(accounts)
        await uow.session.flush()
    return [(account.id, account.meta_account_id or "") for account in accounts]


async def get_account(infrastructure: Infrastructure, account_id: uuid.UUID) -> Account:
    async with infrastructure.unit_of_work() as uow:
        account = await uow.session.get(Account, account_id)
        assert account is not None
        return account


async def get_business_manager(infrastructure: Infrastructure, business_manager_id: uuid.UUID) -> BusinessManager:
    async with infrastructure.unit_of_work() as uow:
        business_manager = await uow.session.get(BusinessManager, business_manager_id)
        assert business_manager is not None
        return business_manager


async def get_pixel(infrastructure: Infrastructure, pixel_id: uuid.UUID) -> Pixel:
    async with infrastructure.unit_of_work() as uow:
        pixel = await uow.session.get(Pixel, pixel_id)
        assert pixel is not None
        return pixel


async def audit_entries(infrastructure: Infrastructure, **criteria: Any) -> list[AuditLog]:
    async with infrastructure.unit_of_work() as uow:
        statement = select(AuditLog).filter_by(**criteria).order_by(AuditLog.id)
        return list(await uow.session.scalars(statement))


async def outbox_messages(infrastructure: Infrastructure, topic: str) -> list[OutboxMessage]:
    async with infrastructure.unit_of_work() as uow:
        statement = select(OutboxMessage).where(OutboxMessage.topic == topic).order_by(OutboxMessage.id)
        return list(await uow.session.scalars(statement))


async def count_rows(infrastructure: Infrastructure, model: Any, *criteria: Any) -> int:
    async with infrastructure.unit_of_work() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(model).where(*criteria)) or 0)


@contextmanager
def statements(infrastructure: Infrastructure) -> Iterator[list[str]]:
    """The SQL statements sent while the block runs (transaction control left out)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            seen.append(statement)

    event.listen(infrastructure.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(infrastructure.engine.sync_engine, "before_cursor_execute", record)
