"""A removed member loses their access to the workspace's ad accounts, in the same transaction."""

import asyncio
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from server.accounts.models import Account, AccountStatus, AccountUser, AccountUserTask
from server.accounts.schemas import AccountUserAssignRequestSchema
from server.audit_logs.models import AuditLog
from server.auth.roles import WorkspaceRole
from server.business_managers.models import (
    BusinessManager,
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.composition import Infrastructure
from server.outbox.models import OutboxMessage
from server.workspaces.exceptions import LastOwnerException
from tests.waits import blocked_on_a_lock
from tests.workspaces.test_members import add, as_user, create_workspace, new_user, owned_workspace, remove, staff

UNASSIGNED = "account_user.unassigned"


async def new_account(
    infrastructure: Infrastructure, workspace_id: uuid.UUID, business_manager_id: uuid.UUID
) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        account = Account(
            workspace_id=workspace_id,
            business_manager_id=business_manager_id,
            meta_account_id=f"act_{uuid.uuid4().int % 10**15}",
            name="Account",
            currency="EUR",
            timezone="Europe/Berlin",
            status=AccountStatus.ACTIVE,
        )
        uow.session.add(account)
        await uow.session.flush()
    return account.id


async def give_access(
    infrastructure: Infrastructure, account_id: uuid.UUID, user_id: uuid.UUID, tasks: list[str]
) -> None:
    async with infrastructure.unit_of_work() as uow:
        uow.session.add(AccountUser(account_id=account_id, user_id=user_id, tasks=tasks))


async def access_of(infrastructure: Infrastructure, user_id: uuid.UUID) -> dict[uuid.UUID, list[str]]:
    async with infrastructure.unit_of_work() as uow:
        rows = await uow.session.scalars(select(AccountUser).where(AccountUser.user_id == user_id))
        return {row.account_id: list(row.tasks) for row in rows}


async def unassigned_messages(infrastructure: Infrastructure) -> list[dict[str, object]]:
    async with infrastructure.unit_of_work() as uow:
        rows = await uow.session.scalars(
            select(OutboxMessage).where(OutboxMessage.topic == UNASSIGNED).order_by(OutboxMessage.id)
        )
        return [dict(row.payload) for row in rows]


async def audit_of(infrastructure: Infrastructure, entity_type: str) -> list[AuditLog]:
    async with infrastructure.unit_of_work() as uow:
        rows = await uow.session.scalars(
            select(AuditLog).where(AuditLog.entity_type == entity_type).order_by(AuditLog.id)
        )
        return list(rows)


@dataclass(frozen=True)
class Agency:
    """Two client workspaces with ad accounts in one platform business manager, and a user who is a
    member of both with access to accounts of each."""

    workspace_id: uuid.UUID
    other_workspace_id: uuid.UUID
    business_manager_id: uuid.UUID
    user_id: uuid.UUID
    accounts: tuple[uuid.UUID, uuid.UUID]
    other_account: uuid.UUID


@pytest.fixture
async def agency(infrastructure: Infrastructure) -> Agency:
    workspace_id, _ = await owned_workspace(infrastructure, "Client A")
    other_workspace_id = await create_workspace(infrastructure, "Client B")
    async with infrastructure.unit_of_work() as uow:
        business_manager = BusinessManager(
            meta_business_id="100200300",
            name="Agency",
            ownership=BusinessManagerOwnership.PLATFORM,
            workspace_id=None,
            status=BusinessManagerStatus.ACTIVE,
            verification_status=BusinessVerificationStatus.VERIFIED,
            encrypted_token=None,
        )
        uow.session.add(business_manager)
        await uow.session.flush()
    user_id = await new_user(infrastructure)
    for workspace in (workspace_id, other_workspace_id):
        await add(infrastructure, workspace, user_id, WorkspaceRole.MEMBER, by=staff())
    first = await new_account(infrastructure, workspace_id, business_manager.id)
    second = await new_account(infrastructure, workspace_id, business_manager.id)
    other_account = await new_account(infrastructure, other_workspace_id, business_manager.id)
    await give_access(infrastructure, first, user_id, ["manage"])
    await give_access(infrastructure, second, user_id, ["advertise", "analyze"])
    await give_access(infrastructure, other_account, user_id, ["analyze"])
    return Agency(
        workspace_id=workspace_id,
        other_workspace_id=other_workspace_id,
        business_manager_id=business_manager.id,
        user_id=user_id,
        accounts=(first, second),
        other_account=other_account,
    )


async def test_removing_a_member_takes_away_their_access_to_the_workspaces_accounts(
    infrastructure: Infrastructure, agency: Agency
) -> None:
    colleague = await new_user(infrastructure)
    await add(infrastructure, agency.workspace_id, colleague, WorkspaceRole.MEMBER, by=staff())
    await give_access(infrastructure, agency.accounts[0], colleague, ["analyze"])

    await remove(infrastructure, agency.workspace_id, agency.user_id, by=staff())

    # Only this workspace's accounts, and only this user.
    assert await access_of(infrastructure, agency.user_id) == {agency.other_account: ["analyze"]}
    assert await access_of(infrastructure, colleague) == {agency.accounts[0]: ["analyze"]}
    messages = sorted(await unassigned_messages(infrastructure), key=lambda payload: str(payload["account_id"]))
    assert messages == sorted(
        [
            {
                "account_id": str(agency.accounts[0]),
                "user_id": str(agency.user_id),
                "workspace_id": str(agency.workspace_id),
                "tasks": ["manage"],
            },
            {
                "account_id": str(agency.accounts[1]),
                "user_id": str(agency.user_id),
                "workspace_id": str(agency.workspace_id),
                "tasks": ["advertise", "analyze"],
            },
        ],
        key=lambda payload: str(payload["account_id"]),
    )
    entries = await audit_of(infrastructure, "account_user")
    assert {(entry.entity_id, entry.action, entry.workspace_id) for entry in entries} == {
        (agency.accounts[0], "unassign", agency.workspace_id),
        (agency.accounts[1], "unassign", agency.workspace_id),
    }
    for entry in entries:
        assert entry.after is None
        assert entry.before is not None
        assert entry.before["user_id"] == str(agency.user_id)
        assert entry.before["email"].startswith("member-")
    assert {entry.action for entry in await audit_of(infrastructure, "workspace_member")} >= {"delete"}


async def test_a_member_without_access_is_removed_without_unassignments(
    infrastructure: Infrastructure, agency: Agency
) -> None:
    viewer = await new_user(infrastructure)
    await add(infrastructure, agency.workspace_id, viewer, WorkspaceRole.VIEWER, by=staff())

    await remove(infrastructure, agency.workspace_id, viewer, by=staff())

    assert await unassigned_messages(infrastructure) == []
    assert await audit_of(infrastructure, "account_user") == []
    assert len(await access_of(infrastructure, agency.user_id)) == 3


async def test_a_refused_removal_keeps_the_access(infrastructure: Infrastructure, agency: Agency) -> None:
    owner_id = await new_user(infrastructure)
    workspace_id = await create_workspace(infrastructure, "Sole owner", actor=as_user(owner_id))
    account_id = await new_account(infrastructure, workspace_id, agency.business_manager_id)
    await give_access(infrastructure, account_id, owner_id, ["manage"])

    with pytest.raises(LastOwnerException):
        await remove(infrastructure, workspace_id, owner_id, by=staff())

    assert await access_of(infrastructure, owner_id) == {account_id: ["manage"]}
    assert await unassigned_messages(infrastructure) == []


async def test_an_assignment_in_flight_is_taken_away_by_a_concurrent_removal(
    infrastructure: Infrastructure, agency: Agency
) -> None:
    """The assignment read the membership before the removal committed; the removal waits for it
    (the membership is held FOR KEY SHARE) and then takes the new access away too."""
    new_account_id = await new_account(infrastructure, agency.workspace_id, agency.business_manager_id)

    async with infrastructure.unit_of_work() as uow:
        await uow.accounts.assign_account_user(
            new_account_id,
            agency.user_id,
            AccountUserAssignRequestSchema(tasks=[AccountUserTask.ADVERTISE]),
            workspace_id=agency.workspace_id,
        )
        removal = asyncio.create_task(remove(infrastructure, agency.workspace_id, agency.user_id, by=staff()))
        await blocked_on_a_lock(infrastructure)
        assert not removal.done()
    await asyncio.wait_for(removal, timeout=5)

    assert await access_of(infrastructure, agency.user_id) == {agency.other_account: ["analyze"]}
    unassigned = {payload["account_id"] for payload in await unassigned_messages(infrastructure)}
    assert unassigned == {str(agency.accounts[0]), str(agency.accounts[1]), str(new_account_id)}
