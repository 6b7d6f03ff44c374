"""The work of approved pixel requests against the simulator: creating a pixel, sharing it with ad
accounts (the lifecycle around it: tests/requests/test_request_work.py)."""

import uuid
from collections.abc import Sequence
from typing import cast

from devstack.meta_simulator import SimulatorControl
from server.accounts.models import Account, AccountStatus
from server.clients.meta import IMetaClient
from server.composition import Infrastructure, UnitOfWork
from server.config import Settings
from server.pixels.models import Pixel, PixelAccount
from server.requests.models import RequestStatus
from server.requests.schemas import PixelCreationPayload, PixelSharePayload
from server.requests.work import RequestWork
from tests.meta_work import (
    MetaWorld,
    add_account,
    add_pixel,
    approved_request,
    audit_entries,
    count,
    crash_on_create,
    rows,
    stored_request,
)

# --- pixel creation ----------------------------------------------------------------------------


async def test_pixel_creation_creates_the_pixel_on_meta_and_here(
    infrastructure: Infrastructure,
    work: RequestWork[UnitOfWork],
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    payload = PixelCreationPayload(name="Checkout", business_manager_id=meta_world.business_manager_id)
    request_id = await approved_request(infrastructure, meta_world.workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.pixel_id is not None
    assert result.meta_id is not None
    on_meta = control.pixel(result.meta_id)
    assert (on_meta["name"], on_meta["business_id"]) == ("Checkout", meta_world.meta_business_id)
    (pixel,) = await rows(infrastructure, Pixel, Pixel.id == result.pixel_id)
    assert (pixel.workspace_id, pixel.business_manager_id, pixel.meta_pixel_id, pixel.name) == (
        meta_world.workspace_id,
        meta_world.business_manager_id,
        result.meta_id,
        "Checkout",
    )
    (created,) = await audit_entries(infrastructure, entity_type="pixel", entity_id=pixel.id)
    assert created.action == "create"
    assert created.after is not None
    assert created.after["account_ids"] == []

    before = control.counters()
    assert await work.carry_out(request_id) is RequestStatus.COMPLETED
    assert control.counters().objects == before.objects


async def test_pixel_creation_does_not_adopt_a_same_name_pixel_on_a_first_attempt(
    infrastructure: Infrastructure,
    work: RequestWork[UnitOfWork],
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    someone_elses = control.add_pixel(meta_world.meta_business_id, "Checkout")
    payload = PixelCreationPayload(name="Checkout", business_manager_id=meta_world.business_manager_id)
    request_id = await approved_request(infrastructure, meta_world.workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.meta_id not in (None, someone_elses)
    assert control.counters().objects.pixels == 2


async def test_pixel_creation_rerun_adopts_the_pixel_its_first_attempt_created(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    known = control.add_pixel(meta_world.meta_business_id, "Checkout")
    await add_pixel(
        infrastructure,
        workspace_id=meta_world.workspace_id,
        business_manager_id=meta_world.business_manager_id,
        meta_pixel_id=known,
        name="Checkout",
    )
    someone_elses = control.add_pixel(meta_world.meta_business_id, "Checkout")
    control.add_pixel(meta_world.meta_business_id, "Another name")
    payload = PixelCreationPayload(name="Checkout", business_manager_id=meta_world.business_manager_id)
    request_id = await approved_request(infrastructure, meta_world.workspace_id, payload)
    await crash_on_create(infrastructure, meta, work_settings, request_id, created=True)
    assert control.counters().objects.pixels == 4

    assert await infrastructure.request_work(meta, work_settings).carry_out(request_id) is RequestStatus.COMPLETED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.meta_id not in (None, known, someone_elses)
    assert control.counters().objects.pixels == 4
    (pixel,) = await rows(infrastructure, Pixel, Pixel.meta_pixel_id == result.meta_id)
    assert pixel.id == result.pixel_id


# --- pixel share ---------------------------------------------------------------------------------


async def share_setup(
    infrastructure: Infrastructure, control: SimulatorControl, meta_world: MetaWorld, workspace_id: uuid.UUID
) -> tuple[uuid.UUID, str, Sequence[tuple[uuid.UUID, str]]]:
    meta_pixel_id = control.add_pixel(meta_world.meta_business_id, "Shop")
    pixel_id = await add_pixel(
        infrastructure,
        workspace_id=workspace_id,
        business_manager_id=meta_world.business_manager_id,
        meta_pixel_id=meta_pixel_id,
    )
    accounts = []
    for name in ("One", "Two"):
        meta_account_id = control.add_ad_account(meta_world.meta_business_id, name, currency="EUR")
        account_id = await add_account(
            infrastructure,
            workspace_id=workspace_id,
            business_manager_id=meta_world.business_manager_id,
            meta_account_id=meta_account_id,
            name=name,
        )
        accounts.append((account_id, meta_account_id))
    return pixel_id, meta_pixel_id, accounts


async def test_pixel_share_shares_on_meta_and_records_the_shares(
    infrastructure: Infrastructure,
    work: RequestWork[UnitOfWork],
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    pixel_id, meta_pixel_id, accounts = await share_setup(infrastructure, control, meta_world, meta_world.workspace_id)
    payload = PixelSharePayload(pixel_id=pixel_id, account_ids=[account_id for account_id, _ in accounts])
    request_id = await approved_request(infrastructure, meta_world.workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    shared = cast(list[str], control.pixel(meta_pixel_id)["shared_account_ids"])
    assert sorted(shared) == sorted(meta_id.removeprefix("act_") for _, meta_id in accounts)
    shares = await rows(infrastructure, PixelAccount, PixelAccount.pixel_id == pixel_id)
    assert {share.account_id for share in shares} == {account_id for account_id, _ in accounts}
    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.pixel_id == pixel_id
    (pixel,) = await rows(infrastructure, Pixel, Pixel.id == pixel_id)
    assert pixel.version == 2
    (entry,) = await audit_entries(infrastructure, entity_type="pixel", entity_id=pixel_id)
    assert entry.action == "share"
    assert entry.before is not None
    assert entry.before["account_ids"] == []
    assert entry.after is not None
    assert len(entry.after["account_ids"]) == 2


async def test_pixel_share_keeps_shares_that_exist_already(
    infrastructure: Infrastructure,
    work: RequestWork[UnitOfWork],
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    pixel_id, _, accounts = await share_setup(infrastructure, control, meta_world, meta_world.workspace_id)
    (first, _), (second, _) = accounts
    async with infrastructure.unit_of_work() as uow:
        uow.session.add(PixelAccount(pixel_id=pixel_id, account_id=first))
    request_id = await approved_request(
        infrastructure, meta_world.workspace_id, PixelSharePayload(pixel_id=pixel_id, account_ids=[first, second])
    )

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    shares = await rows(infrastructure, PixelAccount, PixelAccount.pixel_id == pixel_id)
    assert sorted(share.account_id for share in shares) == sorted([first, second])


async def test_pixel_share_with_an_account_gone_from_the_workspace_fails_without_calling_meta(
    infrastructure: Infrastructure,
    work: RequestWork[UnitOfWork],
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    pixel_id, meta_pixel_id, accounts = await share_setup(infrastructure, control, meta_world, meta_world.workspace_id)
    (first, _), (second, _) = accounts
    request_id = await approved_request(
        infrastructure, meta_world.workspace_id, PixelSharePayload(pixel_id=pixel_id, account_ids=[first, second])
    )
    async with infrastructure.unit_of_work() as uow:
        account = await uow.session.get(Account, second)
        assert account is not None
        account.status = AccountStatus.ARCHIVED
    calls = control.counters().calls.http_calls

    assert await work.carry_out(request_id) is RequestStatus.FAILED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.failure_reason is not None
    assert str(second) in result.failure_reason
    assert control.pixel(meta_pixel_id)["shared_account_ids"] == []
    assert control.counters().calls.http_calls == calls
    assert await count(infrastructure, PixelAccount) == 0
