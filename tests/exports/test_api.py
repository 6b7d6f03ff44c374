"""ExportServicer: the translation between the contract and the service."""

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import cast
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from adplane.v1 import export_service_pb2 as pb
from server.auth.principal import Principal, PrincipalKind, set_current_principal
from server.composition import Infrastructure
from server.exceptions import InvalidRequestException
from server.exports.api import Context, ExportServicer
from server.exports.exceptions import ExportNotFoundException
from tests.exports.conftest import Bucket, new_account, new_business_manager, new_workspace

# The servicer never touches its context: errors are raised for the interceptor to map.
NO_CONTEXT = cast(Context, None)
DAY = dt.date(2026, 11, 26)


@pytest.fixture
def servicer(exports_infrastructure: Infrastructure) -> ExportServicer:
    return ExportServicer(exports_infrastructure.unit_of_work)


@pytest.fixture
def as_staff() -> Iterator[Principal]:
    principal = Principal(kind=PrincipalKind.USER, id=uuid.uuid4(), system_permissions=frozenset({"exports.read"}))
    set_current_principal(principal)
    yield principal
    set_current_principal(None)


@pytest.fixture
async def workspaces(exports_infrastructure: Infrastructure) -> tuple[uuid.UUID, uuid.UUID]:
    """Two workspaces with one account each, exported on DAY."""
    bm_id = await new_business_manager(exports_infrastructure)
    ids = (await new_workspace(exports_infrastructure), await new_workspace(exports_infrastructure))
    for workspace_id in ids:
        await new_account(exports_infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)
        async with exports_infrastructure.unit_of_work() as uow:
            await uow.exports.export_workspace_spend(workspace_id, DAY)
    return ids


async def test_list_exports_converts_every_field(
    servicer: ExportServicer, as_staff: Principal, workspaces: tuple[uuid.UUID, uuid.UUID], bucket: Bucket
) -> None:
    workspace_id, _ = workspaces
    response = await servicer.ListExports(pb.ListExportsRequest(workspace_id=str(workspace_id)), NO_CONTEXT)

    [export] = response.exports
    uuid.UUID(export.id)
    assert export.workspace_id == str(workspace_id)
    assert export.export_date == "2026-11-26"
    assert export.row_count == 1
    key = f"exports/{workspace_id}/spend-2026-11-26.csv"
    assert export.size_bytes == len((await bucket.objects())[key])
    assert export.HasField("create_time")
    assert abs(export.create_time.ToDatetime(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert response.next_page_token == ""


async def test_list_pages_through_the_contract(
    servicer: ExportServicer, as_staff: Principal, workspaces: tuple[uuid.UUID, uuid.UUID]
) -> None:
    first = await servicer.ListAllExports(pb.ListAllExportsRequest(page_size=1), NO_CONTEXT)
    second = await servicer.ListAllExports(
        pb.ListAllExportsRequest(page_size=1, page_token=first.next_page_token), NO_CONTEXT
    )
    filtered = await servicer.ListAllExports(pb.ListAllExportsRequest(workspace_id=str(workspaces[0])), NO_CONTEXT)

    # Newest first: the second workspace was exported last.
    assert [e.workspace_id for e in (*first.exports, *second.exports)] == [str(workspaces[1]), str(workspaces[0])]
    assert first.next_page_token != ""
    assert second.next_page_token == ""
    assert [e.workspace_id for e in filtered.exports] == [str(workspaces[0])]


async def test_download_urls_through_the_contract(
    servicer: ExportServicer,
    as_staff: Principal,
    workspaces: tuple[uuid.UUID, uuid.UUID],
    exports_infrastructure: Infrastructure,
    bucket: Bucket,
) -> None:
    workspace_id, other_workspace_id = workspaces
    [export] = (await servicer.ListExports(pb.ListExportsRequest(workspace_id=str(workspace_id)), NO_CONTEXT)).exports
    ttl = dt.timedelta(seconds=exports_infrastructure.settings.export_url_ttl_seconds)

    started = dt.datetime.now(dt.UTC)
    scoped = await servicer.GetExportDownloadUrl(
        pb.GetExportDownloadUrlRequest(workspace_id=str(workspace_id), export_id=export.id), NO_CONTEXT
    )
    staff = await servicer.GetAnyExportDownloadUrl(pb.GetAnyExportDownloadUrlRequest(export_id=export.id), NO_CONTEXT)
    finished = dt.datetime.now(dt.UTC)

    expected = (await bucket.objects())[f"exports/{workspace_id}/spend-2026-11-26.csv"]
    async with httpx.AsyncClient() as http:
        for response in (scoped, staff):
            assert started + ttl <= response.expire_time.ToDatetime(tzinfo=dt.UTC) <= finished + ttl
            assert parse_qs(urlsplit(response.url).query)["X-Amz-Expires"] == [str(int(ttl.total_seconds()))]
            downloaded = await http.get(response.url)
            assert downloaded.status_code == 200
            assert downloaded.content == expected

    with pytest.raises(ExportNotFoundException):
        await servicer.GetExportDownloadUrl(
            pb.GetExportDownloadUrlRequest(workspace_id=str(other_workspace_id), export_id=export.id), NO_CONTEXT
        )
    with pytest.raises(ExportNotFoundException):
        await servicer.GetAnyExportDownloadUrl(
            pb.GetAnyExportDownloadUrlRequest(export_id=str(uuid.uuid4())), NO_CONTEXT
        )


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.ListExports(pb.ListExportsRequest(workspace_id="nope"), NO_CONTEXT), "workspace_id"),
        (
            lambda s: s.ListExports(pb.ListExportsRequest(workspace_id=str(uuid.uuid4()), page_size=-1), NO_CONTEXT),
            "page_size",
        ),
        (
            lambda s: s.ListExports(
                pb.ListExportsRequest(workspace_id=str(uuid.uuid4()), page_token="forged"), NO_CONTEXT
            ),
            "page_token",
        ),
        (lambda s: s.ListAllExports(pb.ListAllExportsRequest(workspace_id="nope"), NO_CONTEXT), "workspace_id"),
        (
            lambda s: s.GetExportDownloadUrl(
                pb.GetExportDownloadUrlRequest(workspace_id="nope", export_id=str(uuid.uuid4())), NO_CONTEXT
            ),
            "workspace_id",
        ),
        (
            lambda s: s.GetExportDownloadUrl(
                pb.GetExportDownloadUrlRequest(workspace_id=str(uuid.uuid4()), export_id=""), NO_CONTEXT
            ),
            "export_id",
        ),
        (
            lambda s: s.GetAnyExportDownloadUrl(pb.GetAnyExportDownloadUrlRequest(export_id="x"), NO_CONTEXT),
            "export_id",
        ),
    ],
)
async def test_invalid_requests_name_the_request_field(
    servicer: ExportServicer, as_staff: Principal, call: Callable[[ExportServicer], Awaitable[object]], field: str
) -> None:
    with pytest.raises(InvalidRequestException) as raised:
        await call(servicer)
    assert [violation.field for violation in raised.value.violations] == [field]
