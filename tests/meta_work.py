"""What the tests of work done against Meta share (request work, the syncs, the asset tasks), against
the real database and the Graph API simulator over loopback: fixtures (a pytest plugin, see
tests/conftest.py) and the rows they stand on.

Meta's side is seeded and changed through the simulator's control API; our side is inserted
directly (accounts and pixels are created by the workers, not by an RPC).
"""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import func, select
from taskiq import Context

from devstack.meta_simulator import SimulatorControl
from devstack.meta_simulator.schemas import AdAccountSeed, SeededBusiness
from server.accounts.models import Account, AccountStatus, AccountUser, MetaAccountStatus
from server.audit_logs.models import AuditLog
from server.auth.principal import Principal, PrincipalKind
from server.background.registry import TASKS
from server.background.resources import WorkerResources
from server.business_managers.models import (
    BusinessManager,
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.clients.meta import IMetaClient
from server.clients.meta.models import MetaAdAccount, MetaPixel
from server.composition import Infrastructure, UnitOfWork
from server.config import Settings
from server.outbox.models import OutboxMessage
from server.pixels.models import Pixel
from server.requests.models import Request, RequestStatus
from server.requests.schemas import AccountCreationPayload, RequestPayload, RequestResponseSchema
from server.requests.work import RequestWork
from server.users.models import User
from server.workspaces.schemas import WorkspaceCreateRequestSchema

# Back-offs short enough for tests that run into Meta's limits on purpose.
FAST_BACKOFF_SECONDS = 0.02
MAX_ATTEMPTS = 3


@pytest.fixture
def work_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"task_max_backoff_seconds": FAST_BACKOFF_SECONDS, "task_max_attempts": MAX_ATTEMPTS}
    )


@pytest.fixture
def work(infrastructure: Infrastructure, meta: IMetaClient, work_settings: Settings) -> RequestWork[UnitOfWork]:
    return infrastructure.request_work(meta, work_settings)


@pytest.fixture
async def task_context(
    infrastructure: Infrastructure, meta: IMetaClient, work_settings: Settings
) -> AsyncIterator[Context]:
    """What taskiq hands a task: here only the worker resources in the broker's state."""
    async with httpx.AsyncClient() as unused_http:
        resources = WorkerResources(settings=work_settings, infrastructure=infrastructure, meta=meta, _http=unused_http)
        yield cast(Context, SimpleNamespace(state=SimpleNamespace(resources=resources)))


@pytest.fixture
async def workspace_id(infrastructure: Infrastructure) -> uuid.UUID:
    """A client workspace."""
    async with infrastructure.unit_of_work() as uow:
        workspace = await uow.workspaces.create_workspace(
            WorkspaceCreateRequestSchema(name=f"Client {uuid.uuid4().hex[:8]}")
        )
    return workspace.id


@dataclass(frozen=True)
class MetaWorld:
    """The agency's business on Meta (simulated), its platform business manager here, and a client
    workspace to carry requests out for."""

    business: SeededBusiness
    business_manager_id: uuid.UUID
    workspace_id: uuid.UUID

    @property
    def meta_business_id(self) -> str:
        return self.business.id


@pytest.fixture
async def meta_world(infrastructure: Infrastructure, control: SimulatorControl, workspace_id: uuid.UUID) -> MetaWorld:
    business = control.add_business("Agency")
    business_manager_id = await add_business_manager(infrastructure, meta_business_id=business.id, token=business.token)
    return MetaWorld(business=business, business_manager_id=business_manager_id, workspace_id=workspace_id)


def staff() -> Principal:
    return Principal(kind=PrincipalKind.USER, id=uuid.uuid4(), superuser=True)


# --- request work ------------------------------------------------------------------------------


CREATE_ACCOUNT_ROUTE = "POST /{business_id}/adaccount"


def account_payload(meta_world: MetaWorld, name: str = "Spring sale") -> AccountCreationPayload:
    return AccountCreationPayload(
        name=name, currency="EUR", timezone="Europe/Berlin", business_manager_id=meta_world.business_manager_id
    )


class CrashOnCreate:
    """The Meta client of a worker killed at its create call: right after Meta created the object
    (`created=True`), or just before the call reached Meta."""

    def __init__(self, meta: IMetaClient, *, created: bool) -> None:
        self._meta = meta
        self._created = created

    def __getattr__(self, name: str) -> object:
        return getattr(self._meta, name)

    async def create_ad_account(
        self, business_id: str, *, name: str, currency: str, timezone_name: str, token: str
    ) -> MetaAdAccount:
        if self._created:
            await self._meta.create_ad_account(
                business_id, name=name, currency=currency, timezone_name=timezone_name, token=token
            )
        raise SystemExit("worker killed")

    async def create_pixel(self, business_id: str, *, name: str, token: str) -> MetaPixel:
        if self._created:
            await self._meta.create_pixel(business_id, name=name, token=token)
        raise SystemExit("worker killed")


async def crash_on_create(
    infrastructure: Infrastructure, meta: IMetaClient, settings: Settings, request_id: uuid.UUID, *, created: bool
) -> None:
    crashing = infrastructure.request_work(cast(IMetaClient, CrashOnCreate(meta, created=created)), settings)
    with pytest.raises(SystemExit):
        await crashing.carry_out(request_id)
    assert (await stored_request(infrastructure, request_id)).status is RequestStatus.APPROVED


# --- our side ------------------------------------------------------------------------------------


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


async def new_user(infrastructure: Infrastructure) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        user = User(email=f"u-{uuid.uuid4().hex[:8]}@example.com", full_name="U", password_hash="x")
        uow.session.add(user)
        await uow.session.flush()
    return user.id


async def give_access(
    infrastructure: Infrastructure, account_id: uuid.UUID, user_id: uuid.UUID, tasks: list[str]
) -> None:
    async with infrastructure.unit_of_work() as uow:
        uow.session.add(AccountUser(account_id=account_id, user_id=user_id, tasks=tasks))


# --- both sides ----------------------------------------------------------------------------------


async def on_meta_account(
    infrastructure: Infrastructure, control: SimulatorControl, meta_world: MetaWorld, workspace_id: uuid.UUID
) -> tuple[uuid.UUID, str]:
    """An ad account on Meta and ours: (our id, act id)."""
    meta_account_id = control.add_ad_account(meta_world.meta_business_id, "Account", currency="EUR")
    account_id = await add_account(
        infrastructure,
        workspace_id=workspace_id,
        business_manager_id=meta_world.business_manager_id,
        meta_account_id=meta_account_id,
    )
    return account_id, meta_account_id


async def shared_pixel(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    control: SimulatorControl,
    meta_world: MetaWorld,
    workspace_id: uuid.UUID,
) -> tuple[uuid.UUID, str, uuid.UUID, str]:
    """A pixel shared with an ad account on Meta, both ours: pixel id, Meta's, account id, Meta's."""
    account_id, meta_account_id = await on_meta_account(infrastructure, control, meta_world, workspace_id)
    meta_pixel_id = control.add_pixel(meta_world.meta_business_id, "Shop")
    pixel_id = await add_pixel(
        infrastructure,
        workspace_id=workspace_id,
        business_manager_id=meta_world.business_manager_id,
        meta_pixel_id=meta_pixel_id,
    )
    await meta.share_pixel(
        meta_pixel_id,
        account_id=meta_account_id,
        business_id=meta_world.meta_business_id,
        token=meta_world.business.token,
    )
    return pixel_id, meta_pixel_id, account_id, meta_account_id


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


# --- reading back --------------------------------------------------------------------------------


async def rows[M](infrastructure: Infrastructure, model: type[M], *criteria: Any) -> list[M]:
    async with infrastructure.unit_of_work() as uow:
        return list(await uow.session.scalars(select(model).where(*criteria)))


async def count(infrastructure: Infrastructure, model: Any, *criteria: Any) -> int:
    async with infrastructure.unit_of_work() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(model).where(*criteria)) or 0)


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
    """The audit entries with these column values (entity_type=, entity_id=, action=...), oldest first."""
    async with infrastructure.unit_of_work() as uow:
        statement = select(AuditLog).filter_by(**criteria).order_by(AuditLog.id)
        return list(await uow.session.scalars(statement))


async def outbox_messages(infrastructure: Infrastructure, topic: str) -> list[OutboxMessage]:
    async with infrastructure.unit_of_work() as uow:
        statement = select(OutboxMessage).where(OutboxMessage.topic == topic).order_by(OutboxMessage.id)
        return list(await uow.session.scalars(statement))


def task(name: str) -> Callable[..., Awaitable[Any]]:
    """The registered task `name` as taskiq runs it (server/background/registry.py): called with the
    message's payload (event tasks) and a context like `task_context`."""
    [function] = [spec.function for spec in TASKS if spec.name == name]
    return function
