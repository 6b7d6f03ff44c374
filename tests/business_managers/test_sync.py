"""refresh_business_managers: verification status, refused tokens, and recovery."""

import pytest
from sqlalchemy import update

from devstack.meta_simulator import SimulatorControl
from server.business_managers.meta_sync import BusinessManagerCounts
from server.business_managers.models import BusinessManager, BusinessManagerStatus, BusinessVerificationStatus
from server.business_managers.sync import sync_business_managers
from server.clients.meta import IMetaClient
from server.clients.meta.models import MetaBusiness
from server.composition import Infrastructure
from server.config import Settings
from tests.meta_work import audit_entries, get_business_manager, link_business


async def test_verification_status_follows_meta_and_changes_are_audited(
    infrastructure: Infrastructure, control: SimulatorControl, meta: IMetaClient, work_settings: Settings
) -> None:
    pending = await link_business(infrastructure, control, "Pending", meta_verification_status="pending")
    unchanged = await link_business(infrastructure, control, "Unchanged")
    before = await get_business_manager(infrastructure, unchanged.id)

    summary = await sync_business_managers(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )

    assert (summary.business_managers.synced, summary.changed) == (2, 1)
    business_manager = await get_business_manager(infrastructure, pending.id)
    assert business_manager.verification_status is BusinessVerificationStatus.PENDING
    assert business_manager.version == 2
    assert business_manager.synced_at is not None
    # Nothing new: synced_at moves, the version does not, and nothing is audited.
    business_manager = await get_business_manager(infrastructure, unchanged.id)
    assert (business_manager.version, business_manager.updated_at) == (1, before.updated_at)
    assert business_manager.synced_at is not None
    [entry] = await audit_entries(infrastructure, entity_type="business_manager")
    assert (entry.entity_id, entry.action) == (pending.id, "sync")
    assert entry.before is not None
    assert entry.after is not None
    assert (entry.before["verification_status"], entry.after["verification_status"]) == ("verified", "pending")

    again = await sync_business_managers(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )
    assert (again.business_managers.synced, again.changed) == (2, 0)
    assert len(await audit_entries(infrastructure, entity_type="business_manager")) == 1


async def test_a_refused_token_needs_attention_and_a_working_one_recovers(
    infrastructure: Infrastructure, control: SimulatorControl, meta: IMetaClient, work_settings: Settings
) -> None:
    revoked = await link_business(infrastructure, control, "Revoked")
    recovering = await link_business(
        infrastructure, control, "Recovering", status=BusinessManagerStatus.NEEDS_ATTENTION
    )
    control.revoke_token(revoked.meta.token)

    summary = await sync_business_managers(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )

    assert (summary.business_managers.token_refused, summary.recovered, summary.business_managers.synced) == (1, 1, 1)
    assert (await get_business_manager(infrastructure, revoked.id)).status is BusinessManagerStatus.NEEDS_ATTENTION
    assert (await get_business_manager(infrastructure, recovering.id)).status is BusinessManagerStatus.ACTIVE
    entries = {entry.entity_id: entry for entry in await audit_entries(infrastructure, entity_type="business_manager")}
    assert set(entries) == {revoked.id, recovering.id}
    for business_manager_id, (action, was, now) in (
        (revoked.id, ("token_refused", "active", "needs_attention")),
        (recovering.id, ("sync", "needs_attention", "active")),
    ):
        entry = entries[business_manager_id]
        assert entry.before is not None
        assert entry.after is not None
        assert (entry.action, entry.before["status"], entry.after["status"]) == (action, was, now)

    # Still refused: it stays flagged, with no new audit entry, and the run counts the refusal it
    # saw, as the account and pixel syncs count theirs (it used to count only what it flagged).
    again = await sync_business_managers(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )
    assert (again.business_managers.token_refused, again.recovered) == (1, 0)
    assert len(await audit_entries(infrastructure, entity_type="business_manager")) == 2


async def test_a_token_replaced_while_meta_refused_the_old_one_is_not_flagged(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    meta: IMetaClient,
    work_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    business = await link_business(infrastructure, control)
    control.revoke_token(business.meta.token)
    get_business = meta.get_business

    async def refused_after_staff_set_a_new_token(business_id: str, *, token: str) -> MetaBusiness:
        async with infrastructure.unit_of_work() as uow:
            await uow.session.execute(
                update(BusinessManager)
                .where(BusinessManager.id == business.id)
                .values(encrypted_token=infrastructure.cipher.encrypt("a-new-token-not-tried-yet-0123456789"))
            )
        return await get_business(business_id, token=token)

    monkeypatch.setattr(meta, "get_business", refused_after_staff_set_a_new_token)

    summary = await sync_business_managers(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )

    # Meta refused the token the run read with (counted), but the new one is not flagged.
    assert (summary.business_managers.token_refused, summary.business_managers.synced) == (1, 0)
    assert (await get_business_manager(infrastructure, business.id)).status is BusinessManagerStatus.ACTIVE
    assert await audit_entries(infrastructure, entity_type="business_manager") == []


async def test_archived_and_tokenless_business_managers_are_not_read(
    infrastructure: Infrastructure, control: SimulatorControl, meta: IMetaClient, work_settings: Settings
) -> None:
    archived = await link_business(infrastructure, control, "Archived")
    tokenless = await link_business(infrastructure, control, "Tokenless")
    async with infrastructure.unit_of_work() as uow:
        await uow.session.execute(
            update(BusinessManager)
            .where(BusinessManager.id == archived.id)
            .values(status=BusinessManagerStatus.ARCHIVED, encrypted_token=None)
        )
        await uow.session.execute(
            update(BusinessManager).where(BusinessManager.id == tokenless.id).values(encrypted_token=None)
        )

    summary = await sync_business_managers(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )

    assert summary.business_managers == BusinessManagerCounts()
    assert control.counters().calls.http_calls == 0
