"""Tasks of the accounts module against the simulator: users' access to ad accounts carried over to
Meta, and the task shells taskiq calls."""

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import update
from taskiq import Context

from devstack.meta_simulator import FaultKind, SimulatorControl
from server.accounts.models import Account, AccountUser
from server.accounts.tasks import AccountUserOutcome, apply_account_user, meta_business_user_id
from server.business_managers.models import BusinessManager, BusinessManagerStatus
from server.clients.meta import IMetaClient
from server.clients.meta.models import MetaAccountTask
from server.composition import Infrastructure
from server.config import Settings
from tests.meta_work import (
    MetaWorld,
    add_account,
    audit_entries,
    give_access,
    new_user,
    on_meta_account,
    rows,
    shared_pixel,
    task,
)
from tests.waits import blocked_on_a_lock

# --- account access ------------------------------------------------------------------------------


async def test_the_users_access_here_is_given_on_meta_then_taken_away(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    account_id, meta_account_id = await on_meta_account(infrastructure, control, meta_world, meta_world.workspace_id)
    user_id = await new_user(infrastructure)
    await give_access(infrastructure, account_id, user_id, ["advertise", "analyze"])

    outcome = await apply_account_user(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        account_id=account_id,
        user_id=user_id,
    )

    assert outcome is AccountUserOutcome.ASSIGNED
    assigned = control.ad_account(meta_account_id)["assigned_users"]
    assert assigned == {meta_business_user_id(user_id): ["ADVERTISE", "ANALYZE"]}

    # Delivered twice: Meta ends the same.
    await apply_account_user(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        account_id=account_id,
        user_id=user_id,
    )
    assert control.ad_account(meta_account_id)["assigned_users"] == assigned

    async with infrastructure.unit_of_work() as uow:
        await uow.session.delete(await uow.session.get(AccountUser, (account_id, user_id)))
    outcome = await apply_account_user(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        account_id=account_id,
        user_id=user_id,
    )

    assert outcome is AccountUserOutcome.UNASSIGNED
    assert control.ad_account(meta_account_id)["assigned_users"] == {}


async def test_an_account_not_on_meta_yet_needs_nothing(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    account_id = await add_account(
        infrastructure,
        workspace_id=meta_world.workspace_id,
        business_manager_id=meta_world.business_manager_id,
        meta_account_id=None,
    )
    user_id = await new_user(infrastructure)
    await give_access(infrastructure, account_id, user_id, ["manage"])

    outcome = await apply_account_user(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        account_id=account_id,
        user_id=user_id,
    )

    assert outcome is AccountUserOutcome.SKIPPED
    assert control.counters().calls.http_calls == 0


async def test_a_revoked_token_flags_the_business_manager_of_the_account(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    account_id, _ = await on_meta_account(infrastructure, control, meta_world, meta_world.workspace_id)
    user_id = await new_user(infrastructure)
    await give_access(infrastructure, account_id, user_id, ["manage"])
    control.revoke_token(meta_world.business.token)

    outcome = await apply_account_user(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        account_id=account_id,
        user_id=user_id,
    )

    assert outcome is AccountUserOutcome.FAILED
    (business_manager,) = await rows(
        infrastructure, BusinessManager, BusinessManager.id == meta_world.business_manager_id
    )
    assert business_manager.status is BusinessManagerStatus.NEEDS_ATTENTION
    assert [
        entry.action
        for entry in await audit_entries(infrastructure, entity_type="business_manager", entity_id=business_manager.id)
    ] == ["token_refused"]
    assert control.counters().calls.http_calls == 1


async def test_transient_errors_are_retried_for_access_changes(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    account_id, meta_account_id = await on_meta_account(infrastructure, control, meta_world, meta_world.workspace_id)
    user_id = await new_user(infrastructure)
    await give_access(infrastructure, account_id, user_id, ["manage"])
    control.add_fault(FaultKind.SERVER_ERROR, count=2)

    outcome = await apply_account_user(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        account_id=account_id,
        user_id=user_id,
    )

    assert outcome is AccountUserOutcome.ASSIGNED
    assert control.ad_account(meta_account_id)["assigned_users"] == {meta_business_user_id(user_id): ["MANAGE"]}


class PausedAccess:
    """A Meta client whose first access change waits, once inside, until the test lets it go on;
    it records the order of the access calls that reach it."""

    def __init__(self, meta: IMetaClient) -> None:
        self._meta = meta
        self.entered = asyncio.Event()
        self.go_on = asyncio.Event()
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._meta, name)

    async def _pause_first(self, call: str) -> None:
        self.calls.append(call)
        if len(self.calls) == 1:
            self.entered.set()
            await self.go_on.wait()

    async def assign_user(self, account_id: str, *, user_id: str, tasks: Sequence[MetaAccountTask], token: str) -> None:
        await self._pause_first("assign")
        await self._meta.assign_user(account_id, user_id=user_id, tasks=tasks, token=token)

    async def unassign_user(self, account_id: str, *, user_id: str, token: str) -> None:
        await self._pause_first("unassign")
        await self._meta.unassign_user(account_id, user_id=user_id, token=token)


async def test_an_access_task_in_a_meta_call_blocks_neither_rpcs_nor_the_sync_but_the_next_task(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    """The task holds an advisory lock of the account, not its row: an unassignment (which locks
    the row) commits while Meta is being called, and its own task waits and then brings Meta up to
    date, so Meta ends as the database says."""
    account_id, meta_account_id = await on_meta_account(infrastructure, control, meta_world, meta_world.workspace_id)
    user_id = await new_user(infrastructure)
    await give_access(infrastructure, account_id, user_id, ["manage"])
    paused = PausedAccess(meta)
    client = cast(IMetaClient, paused)
    first = asyncio.create_task(
        apply_account_user(
            infrastructure.unit_of_work,
            infrastructure.meta_steps(client, work_settings),
            account_id=account_id,
            user_id=user_id,
        )
    )
    await asyncio.wait_for(paused.entered.wait(), timeout=5)

    async def unassign_and_sync() -> None:
        async with infrastructure.unit_of_work() as uow:
            await uow.accounts.unassign_account_user(account_id, user_id, workspace_id=meta_world.workspace_id)
        async with infrastructure.unit_of_work() as uow:  # what the sync writes
            await uow.session.execute(
                update(Account)
                .where(Account.id == account_id)
                .values(amount_spent_minor=Account.amount_spent_minor + 1)
            )

    await asyncio.wait_for(unassign_and_sync(), timeout=2)
    second = asyncio.create_task(
        apply_account_user(
            infrastructure.unit_of_work,
            infrastructure.meta_steps(client, work_settings),
            account_id=account_id,
            user_id=user_id,
        )
    )
    await blocked_on_a_lock(infrastructure)
    assert paused.calls == ["assign"]  # the second task waits for the first one's lock

    paused.go_on.set()
    assert await first is AccountUserOutcome.ASSIGNED
    assert await second is AccountUserOutcome.UNASSIGNED
    assert paused.calls == ["assign", "unassign"]
    assert control.ad_account(meta_account_id)["assigned_users"] == {}


# --- the task shells -----------------------------------------------------------------------------


async def test_the_access_and_unshare_tasks_read_their_messages(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    task_context: Context,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    pixel_id, meta_pixel_id, account_id, meta_account_id = await shared_pixel(
        infrastructure, meta, control, meta_world, meta_world.workspace_id
    )
    user_id = await new_user(infrastructure)
    await give_access(infrastructure, account_id, user_id, ["analyze"])
    assigned: dict[str, Any] = {
        "account_id": str(account_id),
        "user_id": str(user_id),
        "workspace_id": str(meta_world.workspace_id),
        "tasks": ["analyze"],
        "outbox_id": str(uuid.uuid4()),
    }

    assert await task("accounts.apply_user_change")(assigned, task_context) == "assigned"
    assert control.ad_account(meta_account_id)["assigned_users"] == {meta_business_user_id(user_id): ["ANALYZE"]}

    unshared = {"pixel_id": str(pixel_id), "account_id": str(account_id), "outbox_id": str(uuid.uuid4())}
    assert await task("pixels.apply_unshare")(unshared, task_context) == "unshared"
    assert control.pixel(meta_pixel_id)["shared_account_ids"] == []


async def test_after_a_move_the_access_and_the_shares_are_taken_away_on_meta(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    task_context: Context,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    pixel_id, meta_pixel_id, account_id, meta_account_id = await shared_pixel(
        infrastructure, meta, control, meta_world, meta_world.workspace_id
    )
    user_id = await new_user(infrastructure)
    await meta.assign_user(
        meta_account_id, user_id=meta_business_user_id(user_id), tasks=["MANAGE"], token=meta_world.business.token
    )
    moved = {
        "account_id": str(account_id),
        "unassigned_user_ids": [str(user_id)],
        "unshared_pixel_ids": [str(pixel_id)],
        "outbox_id": str(uuid.uuid4()),
    }

    outcomes = await task("accounts.apply_move")(moved, task_context)
    # The share the move removed goes through the pixels' own task (AccountService.move_account has
    # the pixels module queue a `pixel.unshared` per pixel).
    unshared = {"pixel_id": str(pixel_id), "account_id": str(account_id), "outbox_id": str(uuid.uuid4())}
    assert await task("pixels.apply_unshare")(unshared, task_context) == "unshared"

    assert outcomes == {f"user:{user_id}": "unassigned"}
    assert control.ad_account(meta_account_id)["assigned_users"] == {}
    assert control.pixel(meta_pixel_id)["shared_account_ids"] == []
