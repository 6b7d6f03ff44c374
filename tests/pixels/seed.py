"""Rows the pixel tests stand on, written straight through the ORM."""

import datetime as dt
import uuid
from collections.abc import Iterable

from server.accounts.models import Account, AccountStatus, MetaAccountStatus
from server.auth.principal import Principal, PrincipalKind
from server.business_managers.models import (
    BusinessManager,
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.composition import Infrastructure
from server.pixels.models import Pixel, PixelAccount
from server.workspaces.schemas import WorkspaceCreateRequestSchema


def user_actor() -> Principal:
    return Principal(kind=PrincipalKind.USER, id=uuid.uuid4())


async def workspace(infrastructure: Infrastructure, name: str | None = None) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        created = await uow.workspaces.create_workspace(
            WorkspaceCreateRequestSchema(name=name or f"Workspace {uuid.uuid4().hex[:8]}")
        )
    return created.id


async def business_manager(
    infrastructure: Infrastructure,
    *,
    workspace_id: uuid.UUID | None = None,
    status: BusinessManagerStatus = BusinessManagerStatus.ACTIVE,
) -> uuid.UUID:
    """A platform business manager, or a client one of `workspace_id` when given."""
    row = BusinessManager(
        meta_business_id=str(uuid.uuid4().int % 10**15),
        name="BM",
        ownership=BusinessManagerOwnership.PLATFORM if workspace_id is None else BusinessManagerOwnership.CLIENT,
        workspace_id=workspace_id,
        status=status,
        verification_status=BusinessVerificationStatus.VERIFIED,
    )
    async with infrastructure.unit_of_work() as uow:
        uow.session.add(row)
    return row.id


async def account(
    infrastructure: Infrastructure,
    *,
    workspace_id: uuid.UUID,
    business_manager_id: uuid.UUID,
    status: AccountStatus = AccountStatus.ACTIVE,
) -> uuid.UUID:
    row = Account(
        workspace_id=workspace_id,
        business_manager_id=business_manager_id,
        meta_account_id=f"act_{uuid.uuid4().int % 10**15}",
        name="Account",
        currency="EUR",
        timezone="Europe/Berlin",
        status=status,
        meta_status=MetaAccountStatus.ACTIVE,
    )
    async with infrastructure.unit_of_work() as uow:
        uow.session.add(row)
    return row.id


async def pixel(
    infrastructure: Infrastructure,
    *,
    workspace_id: uuid.UUID,
    business_manager_id: uuid.UUID,
    name: str = "Pixel",
    shared_with: Iterable[uuid.UUID] = (),
    last_fired_at: dt.datetime | None = None,
) -> uuid.UUID:
    row = Pixel(
        workspace_id=workspace_id,
        business_manager_id=business_manager_id,
        meta_pixel_id=str(uuid.uuid4().int % 10**15),
        name=name,
        last_fired_at=last_fired_at,
    )
    async with infrastructure.unit_of_work() as uow:
        uow.session.add(row)
        await uow.session.flush()
        for account_id in shared_with:
            uow.session.add(PixelAccount(pixel_id=row.id, account_id=account_id))
    return row.id
