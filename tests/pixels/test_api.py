"""PixelServicer: the translation between the contract and the service."""

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import cast

import pytest

from adplane.v1 import pixel_service_pb2 as pb
from adplane.v1 import request_pb2
from server.accounts.exceptions import BusinessManagerNotUsableException
from server.auth.principal import Principal, PrincipalKind, set_current_principal
from server.composition import Infrastructure
from server.exceptions import InvalidRequestException
from server.pixels.api import Context, PixelServicer
from server.pixels.exceptions import PixelNotFoundException
from tests.pixels import seed

# The servicer never touches its context: errors are raised for the interceptor to map.
NO_CONTEXT = cast(Context, None)


@pytest.fixture
def servicer(infrastructure: Infrastructure) -> PixelServicer:
    return PixelServicer(infrastructure.unit_of_work)


@pytest.fixture
def as_user() -> Iterator[Principal]:
    principal = Principal(kind=PrincipalKind.USER, id=uuid.uuid4(), superuser=True)
    set_current_principal(principal)
    yield principal
    set_current_principal(None)


async def test_get_pixel_converts_every_field(infrastructure: Infrastructure, servicer: PixelServicer) -> None:
    workspace_id = await seed.workspace(infrastructure)
    bm_id = await seed.business_manager(infrastructure)
    account_id = await seed.account(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)
    fired = dt.datetime(2025, 3, 1, 12, 30, tzinfo=dt.UTC)
    pixel_id = await seed.pixel(
        infrastructure,
        workspace_id=workspace_id,
        business_manager_id=bm_id,
        name="Checkout",
        shared_with=[account_id],
        last_fired_at=fired,
    )
    never_fired = await seed.pixel(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)

    got = (
        await servicer.GetPixel(pb.GetPixelRequest(workspace_id=str(workspace_id), pixel_id=str(pixel_id)), NO_CONTEXT)
    ).pixel
    assert got.id == str(pixel_id)
    assert got.workspace_id == str(workspace_id)
    assert got.business_manager_id == str(bm_id)
    assert got.meta_pixel_id.isdigit()
    assert got.name == "Checkout"
    assert got.last_fired_time.ToDatetime(tzinfo=dt.UTC) == fired
    assert list(got.account_ids) == [str(account_id)]
    assert got.HasField("create_time")
    assert got.HasField("update_time")

    other = (
        await servicer.GetPixel(
            pb.GetPixelRequest(workspace_id=str(workspace_id), pixel_id=str(never_fired)), NO_CONTEXT
        )
    ).pixel
    assert not other.HasField("last_fired_time")
    assert list(other.account_ids) == []


async def test_get_pixel_of_another_workspace_is_not_found(
    infrastructure: Infrastructure, servicer: PixelServicer
) -> None:
    bm_id = await seed.business_manager(infrastructure)
    pixel_id = await seed.pixel(
        infrastructure, workspace_id=await seed.workspace(infrastructure), business_manager_id=bm_id
    )
    mine = await seed.workspace(infrastructure)
    with pytest.raises(PixelNotFoundException):
        await servicer.GetPixel(pb.GetPixelRequest(workspace_id=str(mine), pixel_id=str(pixel_id)), NO_CONTEXT)


async def test_request_pixel_returns_the_queued_request(
    infrastructure: Infrastructure, servicer: PixelServicer, as_user: Principal
) -> None:
    workspace_id = await seed.workspace(infrastructure)
    bm_id = await seed.business_manager(infrastructure)
    request = pb.RequestPixelRequest(
        workspace_id=str(workspace_id),
        pixel=pb.PixelDraft(name=" Shop ", business_manager_id=str(bm_id)),
        request_id="r1",
    )
    response = await servicer.RequestPixel(request, NO_CONTEXT)
    queued = response.request
    assert queued.type == request_pb2.REQUEST_TYPE_PIXEL_CREATION
    assert queued.status == request_pb2.REQUEST_STATUS_WAITING_FOR_APPROVAL
    assert queued.workspace_id == str(workspace_id)
    assert queued.requester_id == str(as_user.id)
    assert queued.WhichOneof("payload") == "pixel_creation"
    assert queued.pixel_creation == request_pb2.PixelCreationPayload(name="Shop", business_manager_id=str(bm_id))
    # The idempotency key makes a retry return the first request.
    assert (await servicer.RequestPixel(request, NO_CONTEXT)).request == queued


async def test_request_pixel_in_an_unusable_business_manager_fails(
    infrastructure: Infrastructure, servicer: PixelServicer, as_user: Principal
) -> None:
    workspace_id = await seed.workspace(infrastructure)
    with pytest.raises(BusinessManagerNotUsableException):
        await servicer.RequestPixel(
            pb.RequestPixelRequest(
                workspace_id=str(workspace_id), pixel=pb.PixelDraft(name="P", business_manager_id=str(uuid.uuid4()))
            ),
            NO_CONTEXT,
        )


@pytest.mark.parametrize(
    ("draft", "fields"),
    [
        (pb.PixelDraft(name="", business_manager_id=str(uuid.uuid4())), ["pixel.name"]),
        (pb.PixelDraft(name="x" * 101, business_manager_id=str(uuid.uuid4())), ["pixel.name"]),
        (pb.PixelDraft(name="a\x00b", business_manager_id=str(uuid.uuid4())), ["pixel.name"]),
        (pb.PixelDraft(name="ok", business_manager_id="nope"), ["pixel.business_manager_id"]),
        (pb.PixelDraft(), ["pixel.name", "pixel.business_manager_id"]),
    ],
)
async def test_invalid_pixel_draft_names_the_request_field(
    servicer: PixelServicer, as_user: Principal, draft: pb.PixelDraft, fields: list[str]
) -> None:
    with pytest.raises(InvalidRequestException) as raised:
        await servicer.RequestPixel(pb.RequestPixelRequest(workspace_id=str(uuid.uuid4()), pixel=draft), NO_CONTEXT)
    assert [v.field for v in raised.value.violations] == fields


async def test_request_pixel_share_returns_the_queued_request(
    infrastructure: Infrastructure, servicer: PixelServicer, as_user: Principal
) -> None:
    workspace_id = await seed.workspace(infrastructure)
    bm_id = await seed.business_manager(infrastructure)
    pixel_id = await seed.pixel(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)
    accounts = [
        str(await seed.account(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)) for _ in "ab"
    ]
    response = await servicer.RequestPixelShare(
        pb.RequestPixelShareRequest(workspace_id=str(workspace_id), pixel_id=str(pixel_id), account_ids=accounts),
        NO_CONTEXT,
    )
    assert response.request.type == request_pb2.REQUEST_TYPE_PIXEL_SHARE
    assert response.request.pixel_share == request_pb2.PixelSharePayload(pixel_id=str(pixel_id), account_ids=accounts)


_ONE = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("account_ids", "field"),
    [
        ([], "account_ids"),
        ([str(uuid.uuid4()) for _ in range(51)], "account_ids"),
        ([_ONE, _ONE], "account_ids"),
        ([str(uuid.uuid4()), "act_123"], "account_ids[1]"),
    ],
)
async def test_invalid_share_account_ids_name_the_field(
    servicer: PixelServicer, as_user: Principal, account_ids: list[str], field: str
) -> None:
    with pytest.raises(InvalidRequestException) as raised:
        await servicer.RequestPixelShare(
            pb.RequestPixelShareRequest(
                workspace_id=str(uuid.uuid4()), pixel_id=str(uuid.uuid4()), account_ids=account_ids
            ),
            NO_CONTEXT,
        )
    assert [v.field for v in raised.value.violations] == [field]


async def test_fifty_accounts_pass_validation(servicer: PixelServicer, as_user: Principal) -> None:
    """The limit is inclusive: 50 distinct ids reach the service (which then finds no such pixel)."""
    with pytest.raises(PixelNotFoundException):
        await servicer.RequestPixelShare(
            pb.RequestPixelShareRequest(
                workspace_id=str(uuid.uuid4()),
                pixel_id=str(uuid.uuid4()),
                account_ids=[str(uuid.uuid4()) for _ in range(50)],
            ),
            NO_CONTEXT,
        )


@pytest.mark.parametrize(
    ("rpc", "request_message", "field"),
    [
        ("GetPixel", pb.GetPixelRequest(workspace_id="w", pixel_id=str(uuid.uuid4())), "workspace_id"),
        ("GetPixel", pb.GetPixelRequest(workspace_id=str(uuid.uuid4()), pixel_id="p"), "pixel_id"),
        (
            "UnsharePixel",
            pb.UnsharePixelRequest(workspace_id=str(uuid.uuid4()), pixel_id=str(uuid.uuid4())),
            "account_id",
        ),
        (
            "RequestPixelShare",
            pb.RequestPixelShareRequest(workspace_id=str(uuid.uuid4()), pixel_id="", account_ids=[_ONE]),
            "pixel_id",
        ),
    ],
)
async def test_malformed_ids_are_invalid(
    servicer: PixelServicer, as_user: Principal, rpc: str, request_message: object, field: str
) -> None:
    call = getattr(servicer, rpc)
    with pytest.raises(InvalidRequestException) as raised:
        await call(request_message, NO_CONTEXT)
    assert [(v.field, v.reason) for v in raised.value.violations] == [(field, "INVALID_ID")]


async def test_unshare_returns_the_pixel_after_the_change(
    infrastructure: Infrastructure, servicer: PixelServicer, as_user: Principal
) -> None:
    workspace_id = await seed.workspace(infrastructure)
    bm_id = await seed.business_manager(infrastructure)
    account_id = await seed.account(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)
    pixel_id = await seed.pixel(
        infrastructure, workspace_id=workspace_id, business_manager_id=bm_id, shared_with=[account_id]
    )
    response = await servicer.UnsharePixel(
        pb.UnsharePixelRequest(workspace_id=str(workspace_id), pixel_id=str(pixel_id), account_id=str(account_id)),
        NO_CONTEXT,
    )
    assert response.pixel.id == str(pixel_id)
    assert list(response.pixel.account_ids) == []


async def test_lists_through_the_contract(infrastructure: Infrastructure, servicer: PixelServicer) -> None:
    one = await seed.workspace(infrastructure)
    two = await seed.workspace(infrastructure)
    bm_a = await seed.business_manager(infrastructure)
    bm_b = await seed.business_manager(infrastructure)
    account_id = await seed.account(infrastructure, workspace_id=one, business_manager_id=bm_a)
    one_a = await seed.pixel(infrastructure, workspace_id=one, business_manager_id=bm_a, shared_with=[account_id])
    one_b = await seed.pixel(infrastructure, workspace_id=one, business_manager_id=bm_b)
    two_a = await seed.pixel(infrastructure, workspace_id=two, business_manager_id=bm_a)

    first = await servicer.ListPixels(pb.ListPixelsRequest(workspace_id=str(one), page_size=1), NO_CONTEXT)
    assert [p.id for p in first.pixels] == [str(one_a)]
    assert list(first.pixels[0].account_ids) == [str(account_id)]
    second = await servicer.ListPixels(
        pb.ListPixelsRequest(workspace_id=str(one), page_size=1, page_token=first.next_page_token), NO_CONTEXT
    )
    assert [p.id for p in second.pixels] == [str(one_b)]
    assert second.next_page_token == ""

    filtered = await servicer.ListPixels(
        pb.ListPixelsRequest(workspace_id=str(one), business_manager_id=str(bm_b)), NO_CONTEXT
    )
    assert [p.id for p in filtered.pixels] == [str(one_b)]

    everything = await servicer.ListAllPixels(pb.ListAllPixelsRequest(), NO_CONTEXT)
    assert [p.id for p in everything.pixels] == [str(one_a), str(one_b), str(two_a)]
    by_both = await servicer.ListAllPixels(
        pb.ListAllPixelsRequest(workspace_id=str(two), business_manager_id=str(bm_a)), NO_CONTEXT
    )
    assert [p.id for p in by_both.pixels] == [str(two_a)]


@pytest.mark.parametrize(
    ("rpc", "request_message", "field"),
    [
        ("ListAllPixels", pb.ListAllPixelsRequest(workspace_id="nope"), "workspace_id"),
        ("ListAllPixels", pb.ListAllPixelsRequest(business_manager_id="nope"), "business_manager_id"),
        ("ListAllPixels", pb.ListAllPixelsRequest(page_size=-1), "page_size"),
        ("ListAllPixels", pb.ListAllPixelsRequest(page_token="forged"), "page_token"),
        (
            "ListPixels",
            pb.ListPixelsRequest(workspace_id=str(uuid.uuid4()), business_manager_id="nope"),
            "business_manager_id",
        ),
    ],
)
async def test_invalid_list_requests_name_the_field(
    infrastructure: Infrastructure, servicer: PixelServicer, rpc: str, request_message: object, field: str
) -> None:
    call = getattr(servicer, rpc)
    with pytest.raises(InvalidRequestException) as raised:
        await call(request_message, NO_CONTEXT)
    assert [v.field for v in raised.value.violations] == [field]
