"""Tasks of the pixels module against the simulator: an unshare carried over to Meta."""

from devstack.meta_simulator import SimulatorControl
from server.clients.meta import IMetaClient
from server.composition import Infrastructure
from server.config import Settings
from server.pixels.models import PixelAccount
from server.pixels.tasks import PixelUnshareOutcome, apply_pixel_unshare
from tests.meta_work import (
    MetaWorld,
    shared_pixel,
)


async def test_an_unshare_is_carried_over_to_meta(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    pixel_id, meta_pixel_id, account_id, _ = await shared_pixel(
        infrastructure, meta, control, meta_world, meta_world.workspace_id
    )

    outcome = await apply_pixel_unshare(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        pixel_id=pixel_id,
        account_id=account_id,
    )

    assert outcome is PixelUnshareOutcome.UNSHARED
    assert control.pixel(meta_pixel_id)["shared_account_ids"] == []


async def test_an_unshare_is_not_carried_over_when_the_pixel_was_shared_again(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    pixel_id, meta_pixel_id, account_id, meta_account_id = await shared_pixel(
        infrastructure, meta, control, meta_world, meta_world.workspace_id
    )
    async with infrastructure.unit_of_work() as uow:
        uow.session.add(PixelAccount(pixel_id=pixel_id, account_id=account_id))

    outcome = await apply_pixel_unshare(
        infrastructure.unit_of_work,
        infrastructure.meta_steps(meta, work_settings),
        pixel_id=pixel_id,
        account_id=account_id,
    )

    assert outcome is PixelUnshareOutcome.SKIPPED
    assert control.pixel(meta_pixel_id)["shared_account_ids"] == [meta_account_id.removeprefix("act_")]
