"""sync_pixels: when each pixel last fired, as Meta lists it."""

import datetime as dt
import uuid

from devstack.meta_simulator import SimulatorControl
from server.audit_logs.models import AuditLog
from server.business_managers.models import BusinessManagerStatus
from server.clients.meta import IMetaClient
from server.composition import Infrastructure
from server.config import Settings
from server.pixels.models import Pixel, PixelAccount
from server.pixels.sync import sync_pixels
from tests.meta_work import (
    LinkedBusiness,
    audit_entries,
    count,
    get_business_manager,
    get_pixel,
    link_accounts,
    link_business,
)

MAY_1 = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)


def _graph_time(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S+0000")


async def link_pixel(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    business: LinkedBusiness,
    workspace_id: uuid.UUID,
    *,
    fired: dt.datetime | None,
) -> tuple[uuid.UUID, str]:
    meta_pixel_id = control.add_pixel(
        business.meta.id, "Pixel", last_fired_time=_graph_time(fired) if fired is not None else None
    )
    async with infrastructure.unit_of_work() as uow:
        pixel = Pixel(
            workspace_id=workspace_id,
            business_manager_id=business.id,
            meta_pixel_id=meta_pixel_id,
            name="Pixel",
            last_fired_at=fired,
        )
        uow.session.add(pixel)
        await uow.session.flush()
    return pixel.id, meta_pixel_id


async def test_sync_writes_new_fire_times_and_audits_them(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    meta: IMetaClient,
    work_settings: Settings,
    workspace_id: uuid.UUID,
) -> None:
    business = await link_business(infrastructure, control)
    fired_id, fired_meta_id = await link_pixel(infrastructure, control, business, workspace_id, fired=MAY_1)
    never_id, never_meta_id = await link_pixel(infrastructure, control, business, workspace_id, fired=None)
    quiet_id, _ = await link_pixel(infrastructure, control, business, workspace_id, fired=MAY_1)
    [(account_id, _)] = await link_accounts(infrastructure, control, business, workspace_id, 1)
    async with infrastructure.unit_of_work() as uow:
        uow.session.add(PixelAccount(pixel_id=fired_id, account_id=account_id))
    later = MAY_1 + dt.timedelta(hours=5)
    control.change_pixel(fired_meta_id, last_fired_time=_graph_time(later))
    control.change_pixel(never_meta_id, last_fired_time=_graph_time(MAY_1))

    summary = await sync_pixels(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )

    assert (summary.business_managers.synced, summary.pixels_checked, summary.pixels_updated) == (1, 3, 2)
    fired = await get_pixel(infrastructure, fired_id)
    assert (fired.last_fired_at, fired.version) == (later, 2)
    never = await get_pixel(infrastructure, never_id)
    assert never.last_fired_at == MAY_1
    quiet = await get_pixel(infrastructure, quiet_id)
    assert (quiet.last_fired_at, quiet.version) == (MAY_1, 1)
    entries = await audit_entries(infrastructure, entity_type="pixel", action="sync")
    assert sorted(entry.entity_id for entry in entries) == sorted([fired_id, never_id])
    entry = next(entry for entry in entries if entry.entity_id == fired_id)
    assert entry.before is not None
    assert entry.after is not None
    assert dt.datetime.fromisoformat(entry.before["last_fired_at"]) == MAY_1
    assert dt.datetime.fromisoformat(entry.after["last_fired_at"]) == later
    assert entry.before["account_ids"] == entry.after["account_ids"] == [str(account_id)]
    assert entry.workspace_id == workspace_id

    again = await sync_pixels(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )
    assert (again.pixels_checked, again.pixels_updated) == (3, 0)
    assert await count(infrastructure, AuditLog, AuditLog.action == "sync") == 2


async def test_a_refused_token_flags_its_business_manager_and_the_others_still_sync(
    infrastructure: Infrastructure,
    control: SimulatorControl,
    meta: IMetaClient,
    work_settings: Settings,
    workspace_id: uuid.UUID,
) -> None:
    revoked = await link_business(infrastructure, control, "Revoked")
    healthy = await link_business(infrastructure, control, "Healthy")
    _, revoked_meta_id = await link_pixel(infrastructure, control, revoked, workspace_id, fired=None)
    healthy_id, healthy_meta_id = await link_pixel(infrastructure, control, healthy, workspace_id, fired=None)
    control.change_pixel(revoked_meta_id, last_fired_time=_graph_time(MAY_1))
    control.change_pixel(healthy_meta_id, last_fired_time=_graph_time(MAY_1))
    control.revoke_token(revoked.meta.token)

    summary = await sync_pixels(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        concurrency=work_settings.meta_max_concurrency,
    )

    assert (summary.business_managers.synced, summary.business_managers.token_refused) == (1, 1)
    assert (await get_business_manager(infrastructure, revoked.id)).status is BusinessManagerStatus.NEEDS_ATTENTION
    assert (await get_pixel(infrastructure, healthy_id)).last_fired_at == MAY_1
    [entry] = await audit_entries(infrastructure, entity_type="business_manager")
    assert (entry.entity_id, entry.action) == (revoked.id, "token_refused")
