"""The daily spend export job, called directly (no taskiq), against the database and moto's S3."""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from types import SimpleNamespace
from typing import cast

import pytest
from botocore.exceptions import ClientError

from server.background.registry import export_daily_spend
from server.background.resources import WorkerResources
from server.composition import Infrastructure
from server.exports.storage import IExportStorage, S3ExportStorage
from server.exports.tasks import SpendExportIncomplete, run_daily_spend_export
from tests.exports.conftest import Bucket, export_rows, make_storage, new_account, new_business_manager, new_workspace

DAY = dt.date(2026, 11, 26)


@pytest.fixture
async def three_workspaces(exports_infrastructure: Infrastructure) -> list[uuid.UUID]:
    """Two workspaces with accounts (two and one), one without."""
    bm_id = await new_business_manager(exports_infrastructure)
    ids = [await new_workspace(exports_infrastructure) for _ in range(3)]
    for workspace_id, accounts in zip(ids, (2, 1, 0), strict=True):
        for _ in range(accounts):
            await new_account(exports_infrastructure, workspace_id=workspace_id, business_manager_id=bm_id)
    return ids


@pytest.mark.parametrize("batch_size", [1, 100])
async def test_one_file_per_workspace_with_accounts(
    exports_infrastructure: Infrastructure, bucket: Bucket, three_workspaces: list[uuid.UUID], batch_size: int
) -> None:
    summary = await run_daily_spend_export(
        exports_infrastructure.unit_of_work, create_bucket=True, day=DAY, batch_size=batch_size
    )

    first, second, _ = three_workspaces
    assert (summary.export_date, summary.workspaces, summary.rows, summary.failed) == (DAY, 2, 3, [])
    objects = await bucket.objects()
    assert sorted(objects) == sorted(f"exports/{w}/spend-2026-11-26.csv" for w in (first, second))
    assert {row.workspace_id: row.row_count for row in await export_rows(exports_infrastructure)} == {
        first: 2,
        second: 1,
    }
    # Header plus one line per account.
    assert objects[f"exports/{first}/spend-2026-11-26.csv"].count(b"\r\n") == 3


async def test_a_rerun_replaces_and_never_duplicates(
    exports_infrastructure: Infrastructure, bucket: Bucket, three_workspaces: list[uuid.UUID]
) -> None:
    await run_daily_spend_export(exports_infrastructure.unit_of_work, create_bucket=True, day=DAY)
    rows_before = await export_rows(exports_infrastructure)

    again = await run_daily_spend_export(exports_infrastructure.unit_of_work, create_bucket=True, day=DAY)

    assert (again.workspaces, again.rows) == (2, 3)
    assert len(await bucket.objects()) == 2
    assert [row.id for row in await export_rows(exports_infrastructure)] == [row.id for row in rows_before]


async def test_outside_production_the_run_creates_the_bucket(
    s3_endpoint: str, exports_infrastructure: Infrastructure, three_workspaces: list[uuid.UUID]
) -> None:
    storage = make_storage(s3_endpoint)  # its bucket does not exist yet
    try:
        infrastructure = dataclasses.replace(exports_infrastructure, export_storage=storage)
        summary = await run_daily_spend_export(infrastructure.unit_of_work, create_bucket=True, day=DAY)
        assert summary.workspaces == 2
        assert len(await Bucket(s3_endpoint, storage.bucket).objects()) == 2
    finally:
        await storage.close()


class FailingFor:
    """A storage whose uploads for one workspace fail the way S3 fails."""

    def __init__(self, storage: IExportStorage, workspace_id: uuid.UUID) -> None:
        self._storage = storage
        self._prefix = f"exports/{workspace_id}/"

    async def put(self, key: str, body: bytes, *, content_type: str) -> None:
        if key.startswith(self._prefix):
            raise ClientError({"Error": {"Code": "InternalError", "Message": "try again"}}, "PutObject")
        await self._storage.put(key, body, content_type=content_type)

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


def _resources(infrastructure: Infrastructure) -> WorkerResources:
    """What the task reads of the worker's resources."""
    return cast(WorkerResources, SimpleNamespace(infrastructure=infrastructure, settings=infrastructure.settings))


async def test_a_failed_upload_loses_only_that_workspace(
    exports_infrastructure: Infrastructure,
    storage: S3ExportStorage,
    bucket: Bucket,
    three_workspaces: list[uuid.UUID],
) -> None:
    first, second, _ = three_workspaces
    infrastructure = dataclasses.replace(exports_infrastructure, export_storage=FailingFor(storage, first))

    summary = await run_daily_spend_export(infrastructure.unit_of_work, create_bucket=True, day=DAY)

    assert (summary.workspaces, summary.rows, summary.failed) == (1, 1, [first])
    assert list(await bucket.objects()) == [f"exports/{second}/spend-2026-11-26.csv"]
    assert [row.workspace_id for row in await export_rows(exports_infrastructure)] == [second]
    # The scheduled task reports the run as failed, naming the workspace, once the others are done.
    with pytest.raises(SpendExportIncomplete, match=str(first)):
        await export_daily_spend(_resources(infrastructure))


async def test_the_task_exports_under_todays_utc_date(
    exports_infrastructure: Infrastructure, bucket: Bucket, three_workspaces: list[uuid.UUID]
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    result = await export_daily_spend(_resources(exports_infrastructure))

    if dt.datetime.now(dt.UTC).date() != today:  # pragma: no cover - ran across midnight UTC
        pytest.skip("the run crossed midnight UTC")
    assert result == {"export_date": today.isoformat(), "workspaces": 2, "rows": 3}
    assert sorted(await bucket.objects()) == sorted(
        f"exports/{w}/spend-{today.isoformat()}.csv" for w in three_workspaces[:2]
    )
