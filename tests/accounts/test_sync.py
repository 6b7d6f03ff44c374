"""sync_accounts: Meta's view of ad accounts, written in bulk and audited."""

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import update

from devstack.meta_simulator import FaultKind, SimulatorControl
from server.accounts.models import Account, MetaAccountStatus
from server.accounts.repository import AccountRepository
from server.accounts.sync import sync_accounts
from server.audit_logs.models import AuditLog
from server.business_managers.models import BusinessManager, BusinessManagerStatus
from server.clients.meta import IMetaClient
from server.clients.meta.models import MetaAdAccount
from server.composition import Infrastructure
from server.config import Settings
from server.statement_log import sent_statements
from tests.meta_work import (
    audit_entries,
    count,
    get_account,
    get_business_manager,
    link_accounts,
    link_business,
)


async def test_sync_writes_changed_accounts_only_and_audits_each(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    meta: IMetaClient,
    work_settings: Settings,
    workspace_id: uuid.UUID,
) -> None:
    business = await link_business(infrastructure, control)
    (disabled, disabled_act), (spent, spent_act), (same, _) = await link_accounts(
        infrastructure, control, business, workspace_id, 3, amount_spent=1_000, spend_cap=50_000
    )
    same_before = await get_account(infrastructure, same)
    control.change_ad_account(disabled_act, account_status=2, disable_reason=1)
    control.change_ad_account(spent_act, amount_spent=2_500, spend_cap=60_000)

    summary = await sync_accounts(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )

    assert (summary.business_managers.synced, summary.accounts_checked, summary.accounts_updated) == (1, 3, 2)
    account = await get_account(infrastructure, disabled)
    assert (account.meta_status, account.disable_reason, account.amount_spent_minor) == (
        MetaAccountStatus.DISABLED,
        "ADS_INTEGRITY_POLICY",
        1_000,
    )
    assert account.version == 2
    assert account.synced_at is not None
    account = await get_account(infrastructure, spent)
    assert (account.amount_spent_minor, account.spend_cap_minor, account.meta_status, account.version) == (
        2_500,
        60_000,
        MetaAccountStatus.ACTIVE,
        2,
    )
    # Unchanged: read from Meta (synced_at), but neither its version nor updated_at moved.
    account = await get_account(infrastructure, same)
    assert (account.version, account.updated_at) == (1, same_before.updated_at)
    assert account.synced_at is not None

    entries = await audit_entries(infrastructure, entity_type="account", action="sync")
    assert sorted(entry.entity_id for entry in entries) == sorted([disabled, spent])
    by_account = {entry.entity_id: entry for entry in entries}
    entry = by_account[disabled]
    assert entry.workspace_id == workspace_id
    assert entry.actor_id is None  # the platform's own work
    assert entry.before is not None
    assert entry.after is not None
    assert (entry.before["meta_status"], entry.after["meta_status"]) == ("active", "disabled")
    assert (entry.before["disable_reason"], entry.after["disable_reason"]) == ("", "ADS_INTEGRITY_POLICY")
    assert (entry.before["version"], entry.after["version"]) == (1, 2)
    entry = by_account[spent]
    assert entry.before is not None
    assert entry.after is not None
    assert (entry.before["amount_spent_minor"], entry.after["amount_spent_minor"]) == (1_000, 2_500)


async def test_a_sync_that_finds_nothing_new_writes_no_audit_entry(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    meta: IMetaClient,
    work_settings: Settings,
    workspace_id: uuid.UUID,
) -> None:
    business = await link_business(infrastructure, control)
    accounts = await link_accounts(infrastructure, control, business, workspace_id, 5, amount_spent=700)
    control.change_ad_account(accounts[0][1], amount_spent=900)
    first = await sync_accounts(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )
    assert first.accounts_updated == 1

    second = await sync_accounts(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )

    assert (second.accounts_checked, second.accounts_updated) == (5, 0)
    assert await count(infrastructure, AuditLog, AuditLog.action == "sync") == 1
    versions = [(await get_account(infrastructure, account_id)).version for account_id, _ in accounts]
    assert versions == [2, 1, 1, 1, 1]


async def test_a_refused_token_flags_its_business_manager_and_the_others_still_sync(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    meta: IMetaClient,
    work_settings: Settings,
    workspace_id: uuid.UUID,
) -> None:
    revoked = await link_business(infrastructure, control, "Revoked")
    healthy = await link_business(infrastructure, control, "Healthy")
    [(revoked_account, revoked_act)] = await link_accounts(infrastructure, control, revoked, workspace_id, 1)
    [(healthy_account, healthy_act)] = await link_accounts(infrastructure, control, healthy, workspace_id, 1)
    control.change_ad_account(revoked_act, amount_spent=111)
    control.change_ad_account(healthy_act, amount_spent=222)
    control.revoke_token(revoked.meta.token)

    summary = await sync_accounts(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )

    assert (summary.business_managers.synced, summary.business_managers.token_refused) == (1, 1)
    assert (await get_business_manager(infrastructure, revoked.id)).status is BusinessManagerStatus.NEEDS_ATTENTION
    assert (await get_business_manager(infrastructure, healthy.id)).status is BusinessManagerStatus.ACTIVE
    assert (await get_account(infrastructure, healthy_account)).amount_spent_minor == 222
    assert (await get_account(infrastructure, revoked_account)).amount_spent_minor == 0
    [entry] = await audit_entries(infrastructure, entity_type="business_manager", entity_id=revoked.id)
    assert entry.action == "token_refused"
    assert entry.before is not None
    assert entry.after is not None
    assert (entry.before["status"], entry.after["status"]) == ("active", "needs_attention")
    assert entry.after["has_system_user_token"] is True
    assert revoked.meta.token not in str(entry.after)

    # A business manager that needs attention is left alone until staff set a new token.
    calls = control.counters().calls.http_calls
    again = await sync_accounts(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )
    assert (again.business_managers.synced, again.business_managers.token_refused) == (1, 0)
    assert control.counters().calls.http_calls == calls + 1


async def test_sql_statements_do_not_grow_with_the_number_of_accounts(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    meta: IMetaClient,
    work_settings: Settings,
    workspace_id: uuid.UUID,
) -> None:
    async def statements_to_sync(count: int) -> int:
        business = await link_business(infrastructure, control, f"{count} accounts")
        accounts = await link_accounts(infrastructure, control, business, workspace_id, count)
        # Half change their spend, a tenth their status: all three kinds of writes happen.
        for n, (_, act_id) in enumerate(accounts):
            if n % 2 == 0:
                control.change_ad_account(act_id, amount_spent=1_000 + n)
            if n % 10 == 1:
                control.change_ad_account(act_id, account_status=3)
        with sent_statements(infrastructure) as seen:
            summary = await sync_accounts(
                infrastructure.unit_of_work,
                infrastructure.meta_steps(meta, work_settings),
                concurrency=work_settings.meta_max_concurrency,
            )
        assert summary.accounts_updated == count // 2 + count // 10
        # Out of the way of the next round.
        async with infrastructure.unit_of_work() as uow:
            await uow.session.execute(
                update(BusinessManager)
                .where(BusinessManager.id == business.id)
                .values(status=BusinessManagerStatus.ARCHIVED)
            )
        return len(seen)

    assert await statements_to_sync(10) == await statements_to_sync(100)
    assert await count(infrastructure, AuditLog, AuditLog.action == "sync") == 5 + 1 + 50 + 10


async def test_progress_counts_accounts_up_to_a_total_known_from_the_start(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    meta: IMetaClient,
    work_settings: Settings,
    workspace_id: uuid.UUID,
) -> None:
    for name, size in (("A", 3), ("B", 4)):
        business = await link_business(infrastructure, control, name)
        await link_accounts(infrastructure, control, business, workspace_id, size)
    reported: list[tuple[int, int]] = []

    await sync_accounts(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
        progress=lambda done, total: reported.append((done, total)),
    )

    assert reported[0] == (0, 7)
    assert reported[-1] == (7, 7)
    assert sorted(reported) == reported
    assert {total for _, total in reported} == {7}
    assert {done for done, _ in reported[1:]} <= {3, 4, 7}


async def test_a_rate_limit_is_waited_out(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    meta: IMetaClient,
    work_settings: Settings,
    workspace_id: uuid.UUID,
) -> None:
    business = await link_business(infrastructure, control)
    [(account_id, act_id)] = await link_accounts(infrastructure, control, business, workspace_id, 1)
    control.change_ad_account(act_id, amount_spent=5)
    # Meta asks for about 6 ms, under the test settings' longest back-off (a longer wait ends the
    # business manager's sync for this run, as server errors past the attempts do below).
    control.add_fault(
        FaultKind.RATE_LIMIT,
        count=2,
        path_prefix=f"/v26.0/{business.meta.id}/owned_ad_accounts",
        regain_minutes=0.0001,
    )

    summary = await sync_accounts(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )

    assert (summary.business_managers.synced, summary.business_managers.failed) == (1, 0)
    assert (await get_account(infrastructure, account_id)).amount_spent_minor == 5
    assert control.counters().calls.by_route["GET /{business_id}/owned_ad_accounts"] == 3


async def test_a_business_manager_meta_keeps_failing_for_is_left_for_the_next_run(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    meta: IMetaClient,
    work_settings: Settings,
    workspace_id: uuid.UUID,
) -> None:
    failing = await link_business(infrastructure, control, "Failing")
    healthy = await link_business(infrastructure, control, "Healthy")
    [(failing_account, failing_act)] = await link_accounts(infrastructure, control, failing, workspace_id, 1)
    [(healthy_account, healthy_act)] = await link_accounts(infrastructure, control, healthy, workspace_id, 1)
    control.change_ad_account(failing_act, amount_spent=1)
    control.change_ad_account(healthy_act, amount_spent=2)
    # More than task_max_attempts (3).
    control.add_fault(FaultKind.SERVER_ERROR, count=10, path_prefix=f"/v26.0/{failing.meta.id}/")

    summary = await sync_accounts(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )

    assert (summary.business_managers.synced, summary.business_managers.failed) == (1, 1)
    assert (await get_account(infrastructure, failing_account)).amount_spent_minor == 0
    assert (await get_account(infrastructure, healthy_account)).amount_spent_minor == 2
    assert (await get_business_manager(infrastructure, failing.id)).status is BusinessManagerStatus.ACTIVE


async def test_accounts_the_business_does_not_list_are_read_in_a_batch(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    meta: IMetaClient,
    work_settings: Settings,
    workspace_id: uuid.UUID,
) -> None:
    business = await link_business(infrastructure, control)
    [(listed, _)] = await link_accounts(infrastructure, control, business, workspace_id, 1)
    # Ours, but Meta does not know it (deleted there).
    [(gone, _)] = await link_accounts(infrastructure, control, business, workspace_id, 1)
    async with infrastructure.unit_of_work() as uow:
        await uow.session.execute(update(Account).where(Account.id == gone).values(meta_account_id="act_1"))
    gone_before = await get_account(infrastructure, gone)

    summary = await sync_accounts(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )

    assert (summary.accounts_checked, summary.accounts_not_found, summary.accounts_updated) == (1, 1, 0)
    calls = control.counters().calls
    assert (calls.batch_calls, calls.batched_requests) == (1, 1)
    gone_after = await get_account(infrastructure, gone)
    assert (gone_after.synced_at, gone_after.version) == (gone_before.synced_at, 1)
    assert (await get_account(infrastructure, listed)).synced_at is not None


async def test_a_new_cap_on_meta_restarts_spend_cap_alerts_and_unknown_statuses_are_kept(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    meta: IMetaClient,
    work_settings: Settings,
    workspace_id: uuid.UUID,
) -> None:
    business = await link_business(infrastructure, control)
    [(recapped, recapped_act), (spent, spent_act)] = await link_accounts(
        infrastructure, control, business, workspace_id, 2, spend_cap=10_000, amount_spent=9_000
    )
    async with infrastructure.unit_of_work() as uow:
        await uow.session.execute(update(Account).values(spend_cap_alert_percent=80))
    control.change_ad_account(recapped_act, spend_cap=20_000, account_status=999)
    control.change_ad_account(spent_act, amount_spent=9_500)

    await sync_accounts(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )

    account = await get_account(infrastructure, recapped)
    assert (account.spend_cap_minor, account.spend_cap_alert_percent, account.meta_status) == (
        20_000,
        0,
        MetaAccountStatus.ACTIVE,
    )
    account = await get_account(infrastructure, spent)
    assert (account.amount_spent_minor, account.spend_cap_alert_percent) == (9_500, 80)


async def test_an_account_changed_while_meta_is_read_is_not_overwritten(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    meta: IMetaClient,
    work_settings: Settings,
    workspace_id: uuid.UUID,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    business = await link_business(infrastructure, control)
    [(account_id, act_id)] = await link_accounts(
        infrastructure, control, business, workspace_id, 1, spend_cap=50_000, amount_spent=1_000
    )
    control.change_ad_account(act_id, amount_spent=2_000)
    read_owned = meta.list_owned_ad_accounts

    async def read_then_change_the_cap(business_id: str, *, token: str) -> AsyncIterator[MetaAdAccount]:
        async for account in read_owned(business_id, token=token):
            yield account
        # Meanwhile a spend-cap change lands: on Meta (too late for the read above), then here.
        control.change_ad_account(act_id, spend_cap=70_000)
        async with infrastructure.unit_of_work() as uow:
            changed = await AccountRepository(uow.session).update(
                account_id, expected_version=None, values={"spend_cap_minor": 70_000}
            )
            assert changed is not None
            assert changed.version == 2

    monkeypatch.setattr(meta, "list_owned_ad_accounts", read_then_change_the_cap)

    summary = await sync_accounts(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )

    # Meta's stale cap (50 000) is not written over the new one: the account is left for next time.
    assert (summary.accounts_updated, summary.accounts_changed_meanwhile) == (0, 1)
    account = await get_account(infrastructure, account_id)
    assert (account.spend_cap_minor, account.amount_spent_minor, account.version) == (70_000, 1_000, 2)
    assert await audit_entries(infrastructure, entity_type="account", action="sync") == []

    monkeypatch.setattr(meta, "list_owned_ad_accounts", read_owned)
    again = await sync_accounts(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )

    assert (again.accounts_updated, again.accounts_changed_meanwhile) == (1, 0)
    account = await get_account(infrastructure, account_id)
    assert (account.spend_cap_minor, account.amount_spent_minor, account.version) == (70_000, 2_000, 3)
