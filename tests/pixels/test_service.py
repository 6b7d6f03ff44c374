"""PixelService against the real database."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, select

from server.accounts.exceptions import BusinessManagerNotUsableException
from server.accounts.models import AccountStatus
from server.audit_logs.models import AuditLog
from server.business_managers.models import BusinessManagerStatus
from server.composition import Infrastructure
from server.exceptions import InvalidRequestException
from server.outbox.models import OutboxMessage
from server.pixels.exceptions import (
    AlreadySharedException,
    PixelNotFoundException,
    PixelShareNotFoundException,
    ShareAccountNotActiveException,
    ShareAccountNotFoundException,
)
from server.pixels.models import PixelAccount
from server.pixels.schemas import PixelListRequestSchema
from server.requests.models import Request, RequestStatus, RequestType
from server.requests.schemas import PixelCreationPayload, PixelSharePayload
from tests.pixels import seed

# --- RequestPixel


async def test_request_pixel_queues_a_pixel_creation_request(infrastructure: Infrastructure) -> None:
    workspace_id = await seed.workspace(infrastructure)
    bm_id = await seed.business_manager(infrastructure)
    actor = seed.user_actor()
    async with infrastructure.unit_of_work() as uow:
        queued = await uow.pixels.request_pixel(
            workspace_id,
            PixelCreationPayload(name="  Checkout pixel ", business_manager_id=bm_id),
            actor=actor,
            idempotency_key=None,
        )
    assert queued.type is RequestType.PIXEL_CREATION
    assert queued.status is RequestStatus.WAITING_FOR_APPROVAL
    assert queued.workspace_id == workspace_id
    assert queued.requester_id == actor.id
    assert queued.payload == PixelCreationPayload(name="Checkout pixel", business_manager_id=bm_id)

    async with infrastructure.unit_of_work() as uow:
        stored = (await uow.session.scalars(select(Request))).all()
    assert [r.id for r in stored] == [queued.id]
    assert stored[0].payload == {
        "type": "pixel_creation",
        "name": "Checkout pixel",
        "business_manager_id": str(bm_id),
    }


async def test_request_pixel_accepts_a_client_business_manager_of_the_workspace(
    infrastructure: Infrastructure,
) -> None:
    workspace_id = await seed.workspace(infrastructure)
    own_bm = await seed.business_manager(infrastructure, workspace_id=workspace_id)
    async with infrastructure.unit_of_work() as uow:
        queued = await uow.pixels.request_pixel(
            workspace_id,
            PixelCreationPayload(name="Own", business_manager_id=own_bm),
            actor=seed.user_actor(),
            idempotency_key=None,
        )
    assert isinstance(queued.payload, PixelCreationPayload)
    assert queued.payload.business_manager_id == own_bm


async def test_request_pixel_replays_with_the_same_request_id(infrastructure: Infrastructure) -> None:
    workspace_id = await seed.workspace(infrastructure)
    bm_id = await seed.business_manager(infrastructure)
    actor = seed.user_actor()
    payload = PixelCreationPayload(name="Once", business_manager_id=bm_id)
    results = []
    for _ in range(2):
        async with infrastructure.unit_of_work() as uow:
            results.append(await uow.pixels.request_pixel(workspace_id, payload, actor=actor, idempotency_key="k1"))
    assert results[0] == results[1]
    async with infrastructure.unit_of_work() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Request)) == 1


@pytest.mark.parametrize("case", ["unknown", "archived", "needs_attention", "client_of_another_workspace"])
async def test_request_pixel_in_an_unusable_business_manager_fails(infrastructure: Infrastructure, case: str) -> None:
    workspace_id = await seed.workspace(infrastructure)
    match case:
        case "unknown":
            bm_id = uuid.uuid4()
        case "archived":
            bm_id = await seed.business_manager(infrastructure, status=BusinessManagerStatus.ARCHIVED)
        case "needs_attention":
            bm_id = await seed.business_manager(infrastructure, status=BusinessManagerStatus.NEEDS_ATTENTION)
        case _:
            other = await seed.workspace(infrastructure)
            bm_id = await seed.business_manager(infrastructure, workspace_id=other)
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(BusinessManagerNotUsableException) as raised:
            await uow.pixels.request_pixel(
                workspace_id,
                PixelCreationPayload(name="P", business_manager_id=bm_id),
                actor=seed.user_actor(),
                idempotency_key=None,
            )
    assert raised.value.reason == "BUSINESS_MANAGER_NOT_USABLE"
    assert raised.value.metadata == {"business_manager_id": str(bm_id)}
    async with infrastructure.unit_of_work() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Request)) == 0


async def test_unusable_business_managers_are_not_told_apart(infrastructure: Infrastructure) -> None:
    """An unknown id and another workspace's business manager get the same message."""
    workspace_id = await seed.workspace(infrastructure)
    foreign = await seed.business_manager(infrastructure, workspace_id=await seed.workspace(infrastructure))
    unknown = uuid.uuid4()
    messages = []
    for bm_id in (foreign, unknown):
        async with infrastructure.unit_of_work() as uow:
            with pytest.raises(BusinessManagerNotUsableException) as raised:
                await uow.pixels.request_pixel(
                    workspace_id,
                    PixelCreationPayload(name="P", business_manager_id=bm_id),
                    actor=seed.user_actor(),
                    idempotency_key=None,
                )
        messages.append(raised.value.message.replace(str(bm_id), "<id>"))
    assert messages[0] == messages[1]


# --- GetPixel / ListPixels / ListAllPixels


async def test_get_pixel_returns_it_with_its_shares(infrastructure: Infrastructure) -> None:
    workspace_id = await seed.workspace(infrastructure)
    bm_id = await seed.business_manager(infrastructure)
    first = await seed.account(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)
    second = await seed.account(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)
    pixel_id = await seed.pixel(
        infrastructure, workspace_id=workspace_id, business_manager_id=bm_id, name="Main", shared_with=[first, second]
    )
    async with infrastructure.unit_of_work() as uow:
        pixel = await uow.pixels.get_pixel(pixel_id, workspace_id=workspace_id)
    assert pixel.id == pixel_id
    assert pixel.name == "Main"
    assert pixel.business_manager_id == bm_id
    assert sorted(pixel.account_ids) == sorted([first, second])


async def test_a_pixel_of_another_workspace_is_not_found(infrastructure: Infrastructure) -> None:
    mine = await seed.workspace(infrastructure)
    theirs = await seed.workspace(infrastructure)
    bm_id = await seed.business_manager(infrastructure)
    their_pixel = await seed.pixel(infrastructure, workspace_id=theirs, business_manager_id=bm_id)
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(PixelNotFoundException) as raised:
            await uow.pixels.get_pixel(their_pixel, workspace_id=mine)
        assert raised.value.reason == "PIXEL_NOT_FOUND"
        with pytest.raises(PixelNotFoundException):
            await uow.pixels.get_pixel(uuid.uuid4(), workspace_id=mine)
        # Their own workspace sees it.
        assert (await uow.pixels.get_pixel(their_pixel, workspace_id=theirs)).id == their_pixel


async def test_list_pixels_is_scoped_filtered_and_paginated(infrastructure: Infrastructure) -> None:
    mine = await seed.workspace(infrastructure)
    theirs = await seed.workspace(infrastructure)
    bm_a = await seed.business_manager(infrastructure)
    bm_b = await seed.business_manager(infrastructure)
    account_id = await seed.account(infrastructure, workspace_id=mine, business_manager_id=bm_a)
    in_a = [
        await seed.pixel(infrastructure, workspace_id=mine, business_manager_id=bm_a, shared_with=[account_id])
        for _ in range(3)
    ]
    in_b = await seed.pixel(infrastructure, workspace_id=mine, business_manager_id=bm_b)
    await seed.pixel(infrastructure, workspace_id=theirs, business_manager_id=bm_a)

    async with infrastructure.unit_of_work() as uow:
        everything = await uow.pixels.list_pixels(mine, PixelListRequestSchema())
        assert [p.id for p in everything.items] == [*in_a, in_b]
        assert everything.next_page_token == ""
        assert [p.account_ids for p in everything.items] == [[account_id]] * 3 + [[]]

        only_a = PixelListRequestSchema(business_manager_id=bm_a, page_size=2)
        first = await uow.pixels.list_pixels(mine, only_a)
        assert [p.id for p in first.items] == in_a[:2]
        assert first.next_page_token
        second = await uow.pixels.list_pixels(mine, only_a.model_copy(update={"page_token": first.next_page_token}))
        assert [p.id for p in second.items] == in_a[2:]
        assert second.next_page_token == ""

        # The token is bound to the workspace and the filters.
        with pytest.raises(InvalidRequestException):
            await uow.pixels.list_pixels(theirs, only_a.model_copy(update={"page_token": first.next_page_token}))
        with pytest.raises(InvalidRequestException):
            await uow.pixels.list_pixels(
                mine, PixelListRequestSchema(business_manager_id=bm_b, page_size=2, page_token=first.next_page_token)
            )


async def test_list_all_pixels_filters_by_workspace_and_business_manager(infrastructure: Infrastructure) -> None:
    one = await seed.workspace(infrastructure)
    two = await seed.workspace(infrastructure)
    bm_a = await seed.business_manager(infrastructure)
    bm_b = await seed.business_manager(infrastructure)
    one_a = await seed.pixel(infrastructure, workspace_id=one, business_manager_id=bm_a)
    two_a = await seed.pixel(infrastructure, workspace_id=two, business_manager_id=bm_a)
    two_b = await seed.pixel(infrastructure, workspace_id=two, business_manager_id=bm_b)

    async with infrastructure.unit_of_work() as uow:

        async def ids(**filters: Any) -> list[uuid.UUID]:
            page = await uow.pixels.list_all_pixels(PixelListRequestSchema(**filters))
            return [p.id for p in page.items]

        assert await ids() == [one_a, two_a, two_b]
        assert await ids(workspace_id=two) == [two_a, two_b]
        assert await ids(business_manager_id=bm_a) == [one_a, two_a]
        assert await ids(workspace_id=two, business_manager_id=bm_b) == [two_b]
        assert await ids(workspace_id=uuid.uuid4()) == []

        page = await uow.pixels.list_all_pixels(PixelListRequestSchema(page_size=1))
        assert [p.id for p in page.items] == [one_a]
        rest = await uow.pixels.list_all_pixels(PixelListRequestSchema(page_size=5, page_token=page.next_page_token))
        assert [p.id for p in rest.items] == [two_a, two_b]


@contextmanager
def counting_statements(infrastructure: Infrastructure) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    engine = infrastructure.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_lists_issue_the_same_statements_at_any_page_size(infrastructure: Infrastructure) -> None:
    workspace_id = await seed.workspace(infrastructure)
    bm_id = await seed.business_manager(infrastructure)
    accounts = [await seed.account(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id) for _ in "ab"]
    for _ in range(6):
        await seed.pixel(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id, shared_with=accounts)

    counts = []
    for page_size in (1, 200):
        for list_call in ("workspace", "all"):
            with counting_statements(infrastructure) as statements:
                async with infrastructure.unit_of_work() as uow:
                    query = PixelListRequestSchema(page_size=page_size)
                    if list_call == "workspace":
                        page = await uow.pixels.list_pixels(workspace_id, query)
                    else:
                        page = await uow.pixels.list_all_pixels(query)
            assert all(sorted(p.account_ids) == sorted(accounts) for p in page.items)
            assert len(page.items) == min(page_size, 6)
            counts.append(len(statements))
    # The page, and the shares of the whole page.
    assert counts == [2, 2, 2, 2]


# --- RequestPixelShare


async def _share_setup(infrastructure: Infrastructure) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    workspace_id = await seed.workspace(infrastructure)
    bm_id = await seed.business_manager(infrastructure)
    pixel_id = await seed.pixel(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)
    return workspace_id, bm_id, pixel_id


async def test_request_pixel_share_queues_a_share_request(infrastructure: Infrastructure) -> None:
    workspace_id, bm_id, pixel_id = await _share_setup(infrastructure)
    accounts = [await seed.account(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id) for _ in "ab"]
    actor = seed.user_actor()
    async with infrastructure.unit_of_work() as uow:
        queued = await uow.pixels.request_pixel_share(
            workspace_id, PixelSharePayload(pixel_id=pixel_id, account_ids=accounts), actor=actor, idempotency_key=None
        )
    assert queued.type is RequestType.PIXEL_SHARE
    assert queued.status is RequestStatus.WAITING_FOR_APPROVAL
    assert queued.payload == PixelSharePayload(pixel_id=pixel_id, account_ids=accounts)
    async with infrastructure.unit_of_work() as uow:
        stored = await uow.session.scalar(select(Request).where(Request.id == queued.id))
        assert stored is not None
        assert stored.payload == {
            "type": "pixel_share",
            "pixel_id": str(pixel_id),
            "account_ids": [str(a) for a in accounts],
        }
        # Only a request: nothing is shared before approval.
        assert (await uow.session.scalars(select(PixelAccount))).all() == []


async def test_sharing_with_an_account_of_another_workspace_is_not_found(infrastructure: Infrastructure) -> None:
    workspace_id, bm_id, pixel_id = await _share_setup(infrastructure)
    mine = await seed.account(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)
    foreign = await seed.account(
        infrastructure, workspace_id=await seed.workspace(infrastructure), business_manager_id=bm_id
    )
    unknown = uuid.uuid4()
    messages = []
    for other in (foreign, unknown):
        async with infrastructure.unit_of_work() as uow:
            with pytest.raises(ShareAccountNotFoundException) as raised:
                await uow.pixels.request_pixel_share(
                    workspace_id,
                    PixelSharePayload(pixel_id=pixel_id, account_ids=[mine, other]),
                    actor=seed.user_actor(),
                    idempotency_key=None,
                )
        assert raised.value.reason == "ACCOUNT_NOT_FOUND"
        assert raised.value.metadata == {"account_id": str(other)}
        messages.append(raised.value.message.replace(str(other), "<id>"))
    # Existing elsewhere and not existing at all read the same.
    assert messages[0] == messages[1]
    async with infrastructure.unit_of_work() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Request)) == 0


async def test_sharing_with_an_inactive_account_fails(infrastructure: Infrastructure) -> None:
    workspace_id, bm_id, pixel_id = await _share_setup(infrastructure)
    archived = await seed.account(
        infrastructure, workspace_id=workspace_id, business_manager_id=bm_id, status=AccountStatus.ARCHIVED
    )
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(ShareAccountNotActiveException) as raised:
            await uow.pixels.request_pixel_share(
                workspace_id,
                PixelSharePayload(pixel_id=pixel_id, account_ids=[archived]),
                actor=seed.user_actor(),
                idempotency_key=None,
            )
    assert raised.value.metadata == {"account_ids": str(archived)}


async def test_sharing_with_accounts_already_shared_names_them(infrastructure: Infrastructure) -> None:
    workspace_id, bm_id, _ = await _share_setup(infrastructure)
    shared = [await seed.account(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id) for _ in "ab"]
    fresh = await seed.account(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)
    pixel_id = await seed.pixel(
        infrastructure, workspace_id=workspace_id, business_manager_id=bm_id, shared_with=shared
    )
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(AlreadySharedException) as raised:
            await uow.pixels.request_pixel_share(
                workspace_id,
                PixelSharePayload(pixel_id=pixel_id, account_ids=[shared[1], fresh, shared[0]]),
                actor=seed.user_actor(),
                idempotency_key=None,
            )
    assert raised.value.reason == "ALREADY_SHARED"
    assert raised.value.metadata == {"pixel_id": str(pixel_id), "account_ids": f"{shared[1]},{shared[0]}"}


async def test_sharing_a_pixel_of_another_workspace_is_not_found(infrastructure: Infrastructure) -> None:
    workspace_id, bm_id, _ = await _share_setup(infrastructure)
    theirs = await seed.workspace(infrastructure)
    their_pixel = await seed.pixel(infrastructure, workspace_id=theirs, business_manager_id=bm_id)
    their_account = await seed.account(infrastructure, workspace_id=theirs, business_manager_id=bm_id)
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(PixelNotFoundException):
            await uow.pixels.request_pixel_share(
                workspace_id,
                PixelSharePayload(pixel_id=their_pixel, account_ids=[their_account]),
                actor=seed.user_actor(),
                idempotency_key=None,
            )


# --- UnsharePixel


async def test_unshare_removes_the_share_and_records_outbox_and_audit(infrastructure: Infrastructure) -> None:
    workspace_id, bm_id, _ = await _share_setup(infrastructure)
    keep = await seed.account(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)
    drop = await seed.account(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)
    pixel_id = await seed.pixel(
        infrastructure, workspace_id=workspace_id, business_manager_id=bm_id, shared_with=[keep, drop]
    )
    async with infrastructure.unit_of_work() as uow:
        before = await uow.pixels.get_pixel(pixel_id, workspace_id=workspace_id)
    async with infrastructure.unit_of_work() as uow:
        after = await uow.pixels.unshare_pixel(pixel_id, drop, workspace_id=workspace_id)
    assert after.account_ids == [keep]
    assert after.updated_at > before.updated_at

    async with infrastructure.unit_of_work() as uow:
        shares = (await uow.session.scalars(select(PixelAccount))).all()
        assert [(s.pixel_id, s.account_id) for s in shares] == [(pixel_id, keep)]

        outbox = (await uow.session.scalars(select(OutboxMessage))).all()
        assert [(m.topic, m.payload) for m in outbox] == [
            ("pixel.unshared", {"pixel_id": str(pixel_id), "account_id": str(drop)})
        ]

        audit = (await uow.session.scalars(select(AuditLog).where(AuditLog.entity_type == "pixel"))).all()
        assert len(audit) == 1
        assert audit[0].entity_id == pixel_id
        assert audit[0].action == "unshare"
        assert audit[0].workspace_id == workspace_id
        assert audit[0].before is not None
        assert audit[0].after is not None
        assert sorted(audit[0].before["account_ids"]) == sorted([str(keep), str(drop)])
        assert audit[0].after["account_ids"] == [str(keep)]

        # The next read sees the change too.
        assert (await uow.pixels.get_pixel(pixel_id, workspace_id=workspace_id)).account_ids == [keep]


async def test_unsharing_an_account_the_pixel_is_not_shared_with_is_not_found(infrastructure: Infrastructure) -> None:
    workspace_id, bm_id, pixel_id = await _share_setup(infrastructure)
    account_id = await seed.account(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(PixelShareNotFoundException) as raised:
            await uow.pixels.unshare_pixel(pixel_id, account_id, workspace_id=workspace_id)
    assert raised.value.reason == "PIXEL_SHARE_NOT_FOUND"
    async with infrastructure.unit_of_work() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        assert (
            await uow.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.entity_type == "pixel"))
            == 0
        )


async def test_unsharing_twice_fails_the_second_time(infrastructure: Infrastructure) -> None:
    workspace_id, bm_id, _ = await _share_setup(infrastructure)
    account_id = await seed.account(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)
    pixel_id = await seed.pixel(
        infrastructure, workspace_id=workspace_id, business_manager_id=bm_id, shared_with=[account_id]
    )
    async with infrastructure.unit_of_work() as uow:
        assert (await uow.pixels.unshare_pixel(pixel_id, account_id, workspace_id=workspace_id)).account_ids == []
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(PixelShareNotFoundException):
            await uow.pixels.unshare_pixel(pixel_id, account_id, workspace_id=workspace_id)


async def test_unsharing_a_pixel_of_another_workspace_is_not_found(infrastructure: Infrastructure) -> None:
    workspace_id, bm_id, _ = await _share_setup(infrastructure)
    theirs = await seed.workspace(infrastructure)
    their_account = await seed.account(infrastructure, workspace_id=theirs, business_manager_id=bm_id)
    their_pixel = await seed.pixel(
        infrastructure, workspace_id=theirs, business_manager_id=bm_id, shared_with=[their_account]
    )
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(PixelNotFoundException):
            await uow.pixels.unshare_pixel(their_pixel, their_account, workspace_id=workspace_id)
    async with infrastructure.unit_of_work() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(PixelAccount)) == 1
