"""Exports expire after EXPORT_RETENTION_DAYS: the retention job deletes the files and rows that
passed it and nothing else, sets the bucket's lifecycle rule beside any other, and an expired export
answers NOT_FOUND with reason EXPORT_EXPIRED, deleted yet or not."""

import datetime as dt
import uuid
from typing import Any

import pytest

from server.composition import Infrastructure
from server.db import new_id_at, utcnow
from server.exports.exceptions import ExportExpiredException, ExportNotFoundException
from server.exports.models import Export
from server.exports.retention import expire_exports
from server.exports.schemas import ExportListRequestSchema
from server.exports.service import spend_object_key
from server.exports.storage import LIFECYCLE_RULE_ID, S3ExportStorage
from server.tenancy import SYSTEM, WorkspaceScope
from tests.exports.conftest import Bucket, audit_entries, export_rows, new_workspace

NOW = utcnow()
DAY = dt.timedelta(days=1)
RETENTION_DAYS = 90  # the setting's default, which the test settings keep


async def _export(
    infrastructure: Infrastructure, storage: S3ExportStorage, workspace_id: uuid.UUID, *, made_ago: dt.timedelta
) -> Export:
    """An export made `made_ago` (its id of that time, as new_id() gave it then), file and row."""
    made = NOW - made_ago
    export_date = made.date()
    key = spend_object_key(workspace_id, export_date)
    await storage.put(key, b"account_id\r\n", content_type="text/csv")
    export = Export(
        id=new_id_at(made),
        workspace_id=workspace_id,
        export_date=export_date,
        object_key=key,
        row_count=0,
        size_bytes=12,
        created_at=made,
    )
    async with infrastructure.unit_of_work() as uow:
        uow.session.add(export)
    return export


async def test_deletes_the_files_and_rows_past_the_retention_and_nothing_else(
    exports_infrastructure: Infrastructure, storage: S3ExportStorage, bucket: Bucket
) -> None:
    infrastructure = exports_infrastructure
    workspace_id = await new_workspace(infrastructure)
    expired = [
        await _export(infrastructure, storage, workspace_id, made_ago=age)
        for age in (RETENTION_DAYS * DAY + dt.timedelta(minutes=1), (RETENTION_DAYS + 10) * DAY, 400 * DAY)
    ]
    kept = [
        await _export(infrastructure, storage, workspace_id, made_ago=age)
        for age in ((RETENTION_DAYS - 1) * DAY, DAY, dt.timedelta(0))
    ]

    expiry = await expire_exports(infrastructure.unit_of_work, batch_size=2, now=NOW)

    assert expiry.deleted == 3
    assert {row.id for row in await export_rows(infrastructure)} == {export.id for export in kept}
    assert set(await bucket.objects()) == {export.object_key for export in kept}
    for export in expired:
        [entry] = await audit_entries(infrastructure, export.id)
        assert (entry.action, entry.workspace_id) == ("expire", workspace_id)
    assert (await expire_exports(infrastructure.unit_of_work, batch_size=2, now=NOW)).deleted == 0


async def _lifecycle(storage: S3ExportStorage) -> list[dict[str, Any]]:
    s3 = await storage._s3()  # the storage's own client: the rules as the store keeps them
    return [dict(rule) for rule in (await s3.get_bucket_lifecycle_configuration(Bucket=storage.bucket))["Rules"]]


async def test_the_bucket_gets_the_lifecycle_rule_beside_its_other_rules(
    exports_infrastructure: Infrastructure, storage: S3ExportStorage
) -> None:
    s3 = await storage._s3()
    others: Any = {"ID": "operators-own", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled", "Expiration": {"Days": 1}}
    await s3.put_bucket_lifecycle_configuration(Bucket=storage.bucket, LifecycleConfiguration={"Rules": [others]})

    assert (await expire_exports(exports_infrastructure.unit_of_work, batch_size=10)).lifecycle_rule
    assert (await expire_exports(exports_infrastructure.unit_of_work, batch_size=10)).lifecycle_rule

    rules = {rule["ID"]: rule for rule in await _lifecycle(storage)}
    assert set(rules) == {"operators-own", LIFECYCLE_RULE_ID}
    assert rules[LIFECYCLE_RULE_ID]["Expiration"] == {"Days": RETENTION_DAYS}
    assert rules[LIFECYCLE_RULE_ID]["Filter"] == {"Prefix": "exports/"}
    assert rules["operators-own"]["Expiration"] == {"Days": 1}


async def test_an_expired_export_is_not_found_with_its_reason_before_and_after_the_job(
    exports_infrastructure: Infrastructure, storage: S3ExportStorage
) -> None:
    infrastructure = exports_infrastructure
    workspace_id = await new_workspace(infrastructure)
    old = await _export(infrastructure, storage, workspace_id, made_ago=(RETENTION_DAYS + 1) * DAY)
    young = await _export(infrastructure, storage, workspace_id, made_ago=DAY)

    async def listed() -> list[uuid.UUID]:
        async with infrastructure.unit_of_work(read_only=True) as uow:
            page = await uow.exports.list_workspace_exports(workspace_id, ExportListRequestSchema())
        return [export.id for export in page.items]

    async def refused(scope: Any) -> ExportExpiredException:
        async with infrastructure.unit_of_work() as uow:
            with pytest.raises(ExportExpiredException) as raised:
                await uow.exports.get_download_url(old.id, scope=scope)
        return raised.value

    before_job = await refused(WorkspaceScope(workspace_id))
    assert (before_job.reason, isinstance(before_job, ExportNotFoundException)) == ("EXPORT_EXPIRED", False)
    assert "kept 90 days" in str(before_job)
    assert await listed() == [young.id]

    await expire_exports(infrastructure.unit_of_work, batch_size=10)
    after_job = await refused(SYSTEM)
    assert after_job.reason == "EXPORT_EXPIRED"
    # Another workspace's expired export says no more than a missing one would.
    elsewhere = await refused(WorkspaceScope(await new_workspace(infrastructure)))
    assert str(elsewhere) == str(after_job)
    async with infrastructure.unit_of_work() as uow:
        assert (await uow.exports.get_download_url(young.id, scope=WorkspaceScope(workspace_id))).url
