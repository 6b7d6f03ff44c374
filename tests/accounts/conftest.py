"""Seeds for the account tests: accounts are created by the workers, so tests insert them directly."""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from server.accounts.models import Account, AccountStatus, AccountUser, MetaAccountStatus
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
from server.outbox.models import OutboxMessage
from server.pixels.models import Pixel, PixelAccount
from server.users.models import User
from server.workspaces.models import WorkspaceStatus, WorkspaceUser
from server.workspaces.schemas import WorkspaceCreateRequestSchema, WorkspaceUpdateRequestSchema


def _digits(length: int) -> str:
    return str(uuid.uuid4().int)[:length]


async def new_workspace(
    infrastructure: Infrastructure, *, status: WorkspaceStatus = WorkspaceStatus.ACTIVE
) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        workspace = await uow.workspaces.create_workspace(
            WorkspaceCreateRequestSchema(name=f"Workspace {uuid.uuid4().hex[:8]}")
        )
        if status is WorkspaceStatus.SUSPENDED:
            await uow.workspaces.update_workspace(
                workspace.id, WorkspaceUpdateRequestSchema(update_mask=frozenset({"status"}), status=status)
            )
        elif status is WorkspaceStatus.ARCHIVED:
            await uow.workspaces.delete_workspace(workspace.id)
    return workspace.id


async def new_business_manager(
    infrastructure: Infrastructure,
    *,
    ownership: BusinessManagerOwnership = BusinessManagerOwnership.PLATFORM,
    workspace_id: uuid.UUID | None = None,
    status: BusinessManagerStatus = BusinessManagerStatus.ACTIVE,
) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        business_manager = BusinessManager(
            meta_business_id=_digits(15),
            name=f"BM {ownership.value}",
            ownership=ownership,
            workspace_id=workspace_id,
            status=status,
            verification_status=BusinessVerificationStatus.VERIFIED,
        )
        uow.session.add(business_manager)
        await uow.session.flush()
    return business_manager.id


async def new_account(
    infrastructure: Infrastructure, *, workspace_id: uuid.UUID, business_manager_id: uuid.UUID, **values: Any
) -> uuid.UUID:
    fields: dict[str, Any] = {
        "meta_account_id": f"act_{_digits(15)}",
        "name": "Account",
        "currency": "EUR",
        "timezone": "Europe/Berlin",
        "status": AccountStatus.ACTIVE,
        "meta_status": MetaAccountStatus.ACTIVE,
        **values,
    }
    async with infrastructure.unit_of_work() as uow:
        account = Account(workspace_id=workspace_id, business_manager_id=business_manager_id, **fields)
        uow.session.add(account)
        await uow.session.flush()
    return account.id


async def new_user(infrastructure: Infrastructure, *, member_of: uuid.UUID | None = None) -> uuid.UUID:
    """A user row (never signed in: the password hash is a placeholder), optionally a member."""
    async with infrastructure.unit_of_work() as uow:
        user = User(email=f"user-{uuid.uuid4().hex[:10]}@example.com", full_name="User", password_hash="x")
        uow.session.add(user)
        await uow.session.flush()
        if member_of is not None:
            uow.session.add(WorkspaceUser(workspace_id=member_of, user_id=user.id, role=WorkspaceRole.MEMBER))
    return user.id


async def new_pixel(
    infrastructure: Infrastructure,
    *,
    workspace_id: uuid.UUID,
    business_manager_id: uuid.UUID,
    shared_with: list[uuid.UUID],
) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        pixel = Pixel(
            workspace_id=workspace_id, business_manager_id=business_manager_id, meta_pixel_id=_digits(15), name="Px"
        )
        uow.session.add(pixel)
        await uow.session.flush()
        for account_id in shared_with:
            uow.session.add(PixelAccount(pixel_id=pixel.id, account_id=account_id))
    return pixel.id


async def count(infrastructure: Infrastructure, model: Any, *criteria: Any) -> int:
    async with infrastructure.unit_of_work() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(model).where(*criteria)) or 0)


async def outbox_messages(infrastructure: Infrastructure, topic: str) -> list[dict[str, Any]]:
    async with infrastructure.unit_of_work() as uow:
        statement = select(OutboxMessage.payload).where(OutboxMessage.topic == topic).order_by(OutboxMessage.id)
        return list(await uow.session.scalars(statement))


async def audit_entries(infrastructure: Infrastructure, entity_type: str, entity_id: uuid.UUID) -> list[AuditLog]:
    async with infrastructure.unit_of_work() as uow:
        statement = (
            select(AuditLog)
            .where(AuditLog.entity_type == entity_type, AuditLog.entity_id == entity_id)
            .order_by(AuditLog.id)
        )
        return list(await uow.session.scalars(statement))


async def account_users(infrastructure: Infrastructure, account_id: uuid.UUID) -> list[AccountUser]:
    async with infrastructure.unit_of_work() as uow:
        return list(await uow.session.scalars(select(AccountUser).where(AccountUser.account_id == account_id)))


@dataclass(frozen=True)
class World:
    """Two workspaces with a platform business manager, each with a member and an account."""

    workspace_id: uuid.UUID
    other_workspace_id: uuid.UUID
    platform_bm_id: uuid.UUID
    account_id: uuid.UUID
    other_account_id: uuid.UUID
    member_id: uuid.UUID
    other_member_id: uuid.UUID


@pytest.fixture
async def world(infrastructure: Infrastructure) -> World:
    workspace_id = await new_workspace(infrastructure)
    other_workspace_id = await new_workspace(infrastructure)
    platform_bm_id = await new_business_manager(infrastructure)
    return World(
        workspace_id=workspace_id,
        other_workspace_id=other_workspace_id,
        platform_bm_id=platform_bm_id,
        account_id=await new_account(
            infrastructure, workspace_id=workspace_id, business_manager_id=platform_bm_id, name="Mine"
        ),
        other_account_id=await new_account(
            infrastructure, workspace_id=other_workspace_id, business_manager_id=platform_bm_id, name="Theirs"
        ),
        member_id=await new_user(infrastructure, member_of=workspace_id),
        other_member_id=await new_user(infrastructure, member_of=other_workspace_id),
    )


@pytest.fixture
def actor(world: World) -> Iterator[Principal]:
    """A member of the first workspace, as the caller of the running RPC (audit entries name it)."""
    principal = Principal(
        kind=PrincipalKind.USER, id=world.member_id, workspace_id=world.workspace_id, workspace_role=WorkspaceRole.ADMIN
    )
    set_current_principal(principal)
    yield principal
    set_current_principal(None)
