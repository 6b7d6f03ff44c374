"""send_spend_cap_alerts: once per crossing of 80 % and 100 % of the cap."""

import asyncio
import uuid

from sqlalchemy import update

from devstack.meta_simulator import SimulatorControl
from server.accounts.models import Account, AccountStatus
from server.accounts.sync import SPEND_CAP_ALERT_TOPIC, send_spend_cap_alerts, sync_accounts
from server.audit_logs.models import AuditLog
from server.clients.meta import IMetaClient
from server.composition import Infrastructure
from server.config import Settings
from server.outbox.models import OutboxMessage
from tests.meta_work import (
    audit_entries,
    count,
    get_account,
    link_accounts,
    link_business,
    outbox_messages,
)


async def _spend(infrastructure: Infrastructure, account_id: uuid.UUID, amount: int) -> None:
    async with infrastructure.unit_of_work() as uow:
        await uow.session.execute(update(Account).where(Account.id == account_id).values(amount_spent_minor=amount))


async def _alerts(infrastructure: Infrastructure) -> list[tuple[uuid.UUID, int]]:
    return [(alert.account_id, alert.percent) for alert in await send_spend_cap_alerts(infrastructure.unit_of_work)]


async def test_alerts_fire_once_at_80_and_once_at_100(
    infrastructure: Infrastructure, control: SimulatorControl, workspace_id: uuid.UUID
) -> None:
    business = await link_business(infrastructure, control)
    [(account_id, act_id)] = await link_accounts(
        infrastructure, control, business, workspace_id, 1, spend_cap=10_000, amount_spent=7_999
    )
    assert await _alerts(infrastructure) == []

    await _spend(infrastructure, account_id, 8_050)
    assert await _alerts(infrastructure) == [(account_id, 80)]
    assert await _alerts(infrastructure) == []
    assert (await get_account(infrastructure, account_id)).spend_cap_alert_percent == 80

    await _spend(infrastructure, account_id, 9_999)
    assert await _alerts(infrastructure) == []
    await _spend(infrastructure, account_id, 10_000)
    assert await _alerts(infrastructure) == [(account_id, 100)]
    await _spend(infrastructure, account_id, 12_000)
    assert await _alerts(infrastructure) == []

    entries = await audit_entries(infrastructure, entity_type="account", action="spend_cap_alert")
    assert [entry.entity_id for entry in entries] == [account_id, account_id]
    first = entries[0].after
    assert first is not None
    assert (first["percent"], first["spent_percent"], first["spend_cap_minor"], first["amount_spent_minor"]) == (
        80,
        80.5,
        10_000,
        8_050,
    )
    assert entries[0].workspace_id == workspace_id
    messages = await outbox_messages(infrastructure, SPEND_CAP_ALERT_TOPIC)
    assert [message.payload["percent"] for message in messages] == [80, 100]
    assert messages[0].payload["account_id"] == str(account_id)
    assert messages[0].payload["workspace_id"] == str(workspace_id)
    assert messages[0].payload["meta_account_id"] == act_id
    # The marker is not part of what callers see: alerts leave the etag alone.
    assert (await get_account(infrastructure, account_id)).version == 1


async def test_past_both_thresholds_at_once_one_alert_is_raised(
    infrastructure: Infrastructure, control: SimulatorControl, workspace_id: uuid.UUID
) -> None:
    business = await link_business(infrastructure, control)
    [(account_id, _)] = await link_accounts(
        infrastructure, control, business, workspace_id, 1, spend_cap=1_000, amount_spent=1_500
    )

    assert await _alerts(infrastructure) == [(account_id, 100)]
    assert await _alerts(infrastructure) == []
    assert await count(infrastructure, OutboxMessage) == 1


async def test_uncapped_and_archived_accounts_raise_no_alert(
    infrastructure: Infrastructure, control: SimulatorControl, workspace_id: uuid.UUID
) -> None:
    business = await link_business(infrastructure, control)
    [(uncapped, _)] = await link_accounts(infrastructure, control, business, workspace_id, 1, amount_spent=50_000)
    [(archived, _)] = await link_accounts(
        infrastructure, control, business, workspace_id, 1, spend_cap=100, amount_spent=100
    )
    async with infrastructure.unit_of_work() as uow:
        await uow.session.execute(update(Account).where(Account.id == archived).values(status=AccountStatus.ARCHIVED))

    assert await _alerts(infrastructure) == []
    assert (await get_account(infrastructure, uncapped)).spend_cap_minor is None


async def test_runs_at_the_same_time_alert_once(
    infrastructure: Infrastructure, control: SimulatorControl, workspace_id: uuid.UUID
) -> None:
    business = await link_business(infrastructure, control)
    accounts = await link_accounts(
        infrastructure, control, business, workspace_id, 20, spend_cap=1_000, amount_spent=900
    )

    results = await asyncio.gather(*(send_spend_cap_alerts(infrastructure.unit_of_work) for _ in range(4)))

    assert sum(len(alerts) for alerts in results) == 20
    assert await count(infrastructure, OutboxMessage, OutboxMessage.topic == SPEND_CAP_ALERT_TOPIC) == 20
    assert await count(infrastructure, AuditLog, AuditLog.action == "spend_cap_alert") == 20
    assert {alert.account_id for alerts in results for alert in alerts} == {account_id for account_id, _ in accounts}


async def test_spend_synced_from_meta_raises_the_alert(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    meta: IMetaClient,
    work_settings: Settings,
    workspace_id: uuid.UUID,
) -> None:
    business = await link_business(infrastructure, control)
    [(account_id, act_id)] = await link_accounts(
        infrastructure, control, business, workspace_id, 1, spend_cap=5_000, amount_spent=100
    )
    control.change_ad_account(act_id, amount_spent=4_200)
    await sync_accounts(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )
    assert await _alerts(infrastructure) == [(account_id, 80)]

    # A new cap on Meta's side starts over.
    control.change_ad_account(act_id, spend_cap=5_200)
    await sync_accounts(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )
    assert await _alerts(infrastructure) == [(account_id, 80)]
    assert await _alerts(infrastructure) == []
