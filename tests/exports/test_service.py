"""ExportService against the real database and moto's S3."""

import asyncio
import csv
import dataclasses
import datetime as dt
import io
import uuid
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from server.accounts.models import AccountStatus, MetaAccountStatus
from server.composition import Infrastructure
from server.config import Settings
from server.exceptions import InvalidRequestException
from server.exports.exceptions import ExportNotFoundException
from server.exports.models import Export
from server.exports.schemas import ExportListRequestSchema
from server.exports.service import SPEND_CSV_HEADER
from server.exports.storage import IExportStorage, S3ExportStorage
from server.tenancy import SYSTEM, WorkspaceScope
from tests.exports.conftest import (
    Bucket,
    audit_entries,
    export_rows,
    new_account,
    new_business_manager,
    new_workspace,
    set_spend,
)
from tests.waits import eventually, lock_waiters

DAY = dt.date(2026, 11, 26)


def parse(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode(), newline="")))


async def test_the_csv_lists_every_account_of_the_workspace(
    exports_infrastructure: Infrastructure, bucket: Bucket
) -> None:
    infrastructure = exports_infrastructure
    workspace_id = await new_workspace(infrastructure)
    other_workspace_id = await new_workspace(infrastructure)
    bm_id = await new_business_manager(infrastructure)
    synced_at = dt.datetime(2026, 11, 26, 3, 45, 12, tzinfo=dt.UTC)
    full = await new_account(
        infrastructure,
        workspace_id=workspace_id,
        business_manager_id=bm_id,
        meta_account_id="act_1001",
        name='Brand, "EU"',
        currency="EUR",
        amount_spent_minor=123_456,
        spend_cap_minor=500_000,
        meta_status=MetaAccountStatus.UNSETTLED,
        synced_at=synced_at,
    )
    bare = await new_account(
        infrastructure,
        workspace_id=workspace_id,
        business_manager_id=bm_id,
        meta_account_id=None,
        name='=HYPERLINK("http://evil")',
        currency="USD",
        spend_cap_minor=None,
        meta_status=None,
        status=AccountStatus.ARCHIVED,
    )
    await new_account(infrastructure, workspace_id=other_workspace_id, business_manager_id=bm_id, name="Theirs")

    async with infrastructure.unit_of_work() as uow:
        export = await uow.exports.export_workspace_spend(workspace_id, DAY)

    assert export is not None
    key = f"exports/{workspace_id}/spend-2026-11-26.csv"
    objects = await bucket.objects()
    assert list(objects) == [key]
    assert parse(objects[key]) == [
        list(SPEND_CSV_HEADER),
        [str(full), "act_1001", 'Brand, "EU"', "EUR", "123456", "500000", "unsettled", "2026-11-26T03:45:12+00:00"],
        # Missing values are empty; a name a spreadsheet would run as a formula is defused.
        [str(bare), "", '\'=HYPERLINK("http://evil")', "USD", "0", "", "", ""],
    ]
    assert objects[key].endswith(b"\r\n")
    assert await bucket.content_type(key) == "text/csv; charset=utf-8"
    assert (export.workspace_id, export.export_date, export.object_key) == (workspace_id, DAY, key)
    assert export.row_count == 2
    assert export.size_bytes == len(objects[key])
    [entry] = await audit_entries(infrastructure, export.id)
    assert (entry.action, entry.workspace_id, entry.actor_id, entry.before) == ("create", workspace_id, None, None)
    assert entry.after is not None
    assert entry.after["object_key"] == key


async def test_a_rerun_replaces_the_file_and_updates_the_row(
    exports_infrastructure: Infrastructure, bucket: Bucket
) -> None:
    infrastructure = exports_infrastructure
    workspace_id = await new_workspace(infrastructure)
    bm_id = await new_business_manager(infrastructure)
    account_id = await new_account(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)
    async with infrastructure.unit_of_work() as uow:
        first = await uow.exports.export_workspace_spend(workspace_id, DAY)

    await set_spend(infrastructure, account_id, 987_654)
    await new_account(infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)
    async with infrastructure.unit_of_work() as uow:
        second = await uow.exports.export_workspace_spend(workspace_id, DAY)

    assert first is not None
    assert second is not None
    assert second.id == first.id
    assert second.created_at == first.created_at
    assert (first.row_count, second.row_count) == (1, 2)
    objects = await bucket.objects()
    assert list(objects) == [second.object_key]
    rows = parse(objects[second.object_key])
    assert rows[1][0] == str(account_id)
    assert rows[1][4] == "987654"
    assert second.size_bytes == len(objects[second.object_key])
    [row] = await export_rows(infrastructure)
    assert (row.id, row.row_count, row.size_bytes) == (first.id, 2, second.size_bytes)
    create, update = await audit_entries(infrastructure, first.id)
    assert (create.action, update.action) == ("create", "update")
    assert update.before is not None
    assert update.before["row_count"] == 1
    assert update.after is not None
    assert update.after["row_count"] == 2


async def test_another_day_is_another_export(exports_infrastructure: Infrastructure, bucket: Bucket) -> None:
    infrastructure = exports_infrastructure
    workspace_id = await new_workspace(infrastructure)
    await new_account(
        infrastructure, workspace_id=workspace_id, business_manager_id=await new_business_manager(infrastructure)
    )
    for day in (DAY, DAY + dt.timedelta(days=1)):
        async with infrastructure.unit_of_work() as uow:
            await uow.exports.export_workspace_spend(workspace_id, day)

    assert sorted(await bucket.objects()) == [
        f"exports/{workspace_id}/spend-2026-11-26.csv",
        f"exports/{workspace_id}/spend-2026-11-27.csv",
    ]
    assert [row.export_date for row in await export_rows(infrastructure)] == [DAY, DAY + dt.timedelta(days=1)]


class MeetingStorage:
    """Holds the first upload until another run either uploads too or is seen waiting for a lock,
    and notes whether two uploads overlapped: two runs that nothing kept apart would."""

    def __init__(self, storage: IExportStorage, *, other_run_blocked: Callable[[], Awaitable[bool]]) -> None:
        self._storage = storage
        self._other_run_blocked = other_run_blocked
        self._uploads = 0
        self._uploading = 0
        self.overlapped = False

    async def put(self, key: str, body: bytes, *, content_type: str) -> None:
        self._uploads += 1
        self._uploading += 1
        try:
            self.overlapped = self.overlapped or self._uploading > 1
            if self._uploads == 1:

                async def met_or_blocked() -> bool:
                    return self._uploading > 1 or await self._other_run_blocked()

                await eventually(met_or_blocked, within=10, what="the other run uploading or waiting for a lock")
                self.overlapped = self.overlapped or self._uploading > 1
            await self._storage.put(key, body, content_type=content_type)
        finally:
            self._uploading -= 1

    async def presigned_get(self, key: str, *, expires_in: int, download_name: str | None = None) -> str:
        return await self._storage.presigned_get(key, expires_in=expires_in, download_name=download_name)

    async def ensure_bucket(self) -> None:
        await self._storage.ensure_bucket()

    async def delete(self, keys: Sequence[str]) -> None:
        await self._storage.delete(keys)

    async def expire_after(self, prefix: str, days: int) -> bool:
        return await self._storage.expire_after(prefix, days)

    async def close(self) -> None:
        await self._storage.close()


async def test_concurrent_runs_of_the_same_day_take_turns(
    exports_infrastructure: Infrastructure, storage: S3ExportStorage, bucket: Bucket
) -> None:
    """Two runs at once (two schedulers, a redelivered message): the second waits for the first,
    so it sees the first one's row and records an update, and the row describes the file."""

    async def other_run_blocked() -> bool:
        return await lock_waiters(exports_infrastructure) >= 1

    meeting = MeetingStorage(storage, other_run_blocked=other_run_blocked)
    infrastructure = dataclasses.replace(exports_infrastructure, export_storage=meeting)
    workspace_id = await new_workspace(infrastructure)
    await new_account(
        infrastructure, workspace_id=workspace_id, business_manager_id=await new_business_manager(infrastructure)
    )

    async def run() -> uuid.UUID:
        async with infrastructure.unit_of_work() as uow:
            export = await uow.exports.export_workspace_spend(workspace_id, DAY)
        assert export is not None
        return export.id

    first_id, second_id = await asyncio.gather(run(), run())

    assert not meeting.overlapped
    assert first_id == second_id
    [row] = await export_rows(infrastructure)
    assert row.size_bytes == len((await bucket.objects())[row.object_key])
    assert [entry.action for entry in await audit_entries(infrastructure, row.id)] == ["create", "update"]


async def test_a_workspace_without_accounts_gets_no_export(
    exports_infrastructure: Infrastructure, bucket: Bucket
) -> None:
    workspace_id = await new_workspace(exports_infrastructure)
    async with exports_infrastructure.unit_of_work() as uow:
        assert await uow.exports.export_workspace_spend(workspace_id, DAY) is None

    assert await bucket.objects() == {}
    assert await export_rows(exports_infrastructure) == []


async def _exported(infrastructure: Infrastructure, workspace_id: uuid.UUID, day: dt.date = DAY) -> Export:
    async with infrastructure.unit_of_work() as uow:
        export = await uow.exports.export_workspace_spend(workspace_id, day)
    assert export is not None
    [row] = await export_rows(infrastructure, Export.id == export.id)
    return row


@pytest.fixture
async def exported(exports_infrastructure: Infrastructure) -> Export:
    """One export of a workspace with one account."""
    workspace_id = await new_workspace(exports_infrastructure)
    await new_account(
        exports_infrastructure,
        workspace_id=workspace_id,
        business_manager_id=await new_business_manager(exports_infrastructure),
    )
    return await _exported(exports_infrastructure, workspace_id)


async def test_the_download_url_serves_the_file_for_the_configured_lifetime(
    exports_infrastructure: Infrastructure, settings: Settings, bucket: Bucket, exported: Export
) -> None:
    infrastructure = dataclasses.replace(
        exports_infrastructure, settings=settings.model_copy(update={"export_url_ttl_seconds": 123})
    )
    before = dt.datetime.now(dt.UTC)
    async with infrastructure.unit_of_work() as uow:
        link = await uow.exports.get_download_url(exported.id, scope=WorkspaceScope(exported.workspace_id))
    after = dt.datetime.now(dt.UTC)

    assert before + dt.timedelta(seconds=123) <= link.expires_at <= after + dt.timedelta(seconds=123)
    query = parse_qs(urlsplit(link.url).query)
    assert query["X-Amz-Expires"] == ["123"]
    signed_at = dt.datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    # The URL itself expires no earlier than the time we report (its clock has second precision).
    assert signed_at + dt.timedelta(seconds=123) >= link.expires_at.replace(microsecond=0)
    async with httpx.AsyncClient() as http:
        response = await http.get(link.url)
    assert response.status_code == 200
    assert response.content == (await bucket.objects())[exported.object_key]
    assert response.headers["content-disposition"] == 'attachment; filename="spend-2026-11-26.csv"'


async def test_an_export_of_another_workspace_is_not_found(
    exports_infrastructure: Infrastructure, exported: Export
) -> None:
    other_workspace_id = await new_workspace(exports_infrastructure)
    async with exports_infrastructure.unit_of_work() as uow:
        with pytest.raises(ExportNotFoundException) as raised:
            await uow.exports.get_download_url(exported.id, scope=WorkspaceScope(other_workspace_id))
        missing = uuid.uuid4()
        with pytest.raises(ExportNotFoundException) as raised_missing:
            await uow.exports.get_download_url(missing, scope=WorkspaceScope(exported.workspace_id))
        # Staff reach every workspace's export.
        link = await uow.exports.get_download_url(exported.id, scope=SYSTEM)

    assert raised.value.reason == "EXPORT_NOT_FOUND"
    assert raised.value.metadata == {"export_id": str(exported.id)}
    # Another workspace's export looks exactly like a missing one.
    assert str(raised_missing.value) == str(raised.value).replace(str(exported.id), str(missing))
    assert link.url


async def test_lists_are_newest_first_paginated_and_scoped(exports_infrastructure: Infrastructure) -> None:
    infrastructure = exports_infrastructure
    bm_id = await new_business_manager(infrastructure)
    workspace_id = await new_workspace(infrastructure)
    other_workspace_id = await new_workspace(infrastructure)
    for owner in (workspace_id, other_workspace_id):
        await new_account(infrastructure, workspace_id=owner, business_manager_id=bm_id)
    mine = [(await _exported(infrastructure, workspace_id, DAY + dt.timedelta(days=i))).id for i in range(5)]
    theirs = (await _exported(infrastructure, other_workspace_id)).id

    pages: list[list[uuid.UUID]] = []
    token = ""
    while True:
        async with infrastructure.unit_of_work() as uow:
            page = await uow.exports.list_workspace_exports(
                workspace_id, ExportListRequestSchema(page_size=2, page_token=token)
            )
        pages.append([export.id for export in page.items])
        token = page.next_page_token
        if not token:
            break
    assert pages == [mine[4:2:-1], mine[2:0:-1], mine[:1]]

    async with infrastructure.unit_of_work() as uow:
        everything = await uow.exports.list_exports(ExportListRequestSchema())
        filtered = await uow.exports.list_exports(ExportListRequestSchema(workspace_id=other_workspace_id))
        first = await uow.exports.list_workspace_exports(workspace_id, ExportListRequestSchema(page_size=2))
        # A token is bound to its list and filters: not reusable for another workspace.
        with pytest.raises(InvalidRequestException) as raised:
            await uow.exports.list_workspace_exports(
                other_workspace_id, ExportListRequestSchema(page_size=2, page_token=first.next_page_token)
            )
    assert [export.id for export in everything.items] == [theirs, *reversed(mine)]
    assert everything.next_page_token == ""
    assert [export.id for export in filtered.items] == [theirs]
    assert raised.value.violations[0].field == "page_token"
