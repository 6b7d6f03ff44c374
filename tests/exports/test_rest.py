"""The export routes end to end: REST through Envoy to `adplane serve`, whose storage is moto's S3,
and the file downloaded from the link the API hands out."""

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from server.auth.roles import WorkspaceRole
from server.composition import Infrastructure
from server.config import Settings
from server.exports.models import Export
from server.exports.storage import S3ExportStorage
from tests.callers import make_caller
from tests.e2e.conftest import Stack, start_envoy, start_server
from tests.exports.conftest import (
    FAKE_KEY_ID,
    FAKE_SECRET,
    REGION,
    Bucket,
    export_rows,
    make_storage,
    new_account,
    new_business_manager,
    new_workspace,
)

TTL_SECONDS = 77


@pytest.fixture(scope="module")
def bucket_name() -> str:
    return f"exports-{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="module")
def exports_stack(
    settings: Settings, s3_endpoint: str, bucket_name: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The server (its exports in a bucket of moto's) and Envoy in front of it."""
    tmp = tmp_path_factory.mktemp("exports-stack")
    server = start_server(
        settings,
        tmp,
        S3_ENDPOINT_URL=s3_endpoint,
        S3_REGION=REGION,
        S3_BUCKET=bucket_name,
        AWS_ACCESS_KEY_ID=FAKE_KEY_ID,
        AWS_SECRET_ACCESS_KEY=FAKE_SECRET,
        EXPORT_URL_TTL_SECONDS=str(TTL_SECONDS),
    )
    envoy = start_envoy(settings, tmp, upstream_port=server.port)
    yield Stack(server=server, envoy=envoy)
    envoy.stop()
    assert server.stop() == 0, server.log.read_text()[-4000:]


@pytest.fixture
async def server_storage(s3_endpoint: str, bucket_name: str) -> AsyncIterator[S3ExportStorage]:
    """A storage on the server's bucket, for the export job run here."""
    storage = make_storage(s3_endpoint, bucket=bucket_name)
    await storage.ensure_bucket()
    yield storage
    await storage.close()


async def test_a_workspace_member_lists_and_downloads_its_export(
    exports_stack: Stack, infrastructure: Infrastructure, server_storage: S3ExportStorage, s3_endpoint: str
) -> None:
    jobs = dataclasses.replace(infrastructure, export_storage=server_storage)
    workspace_id, other_workspace_id = await new_workspace(jobs), await new_workspace(jobs)
    await new_account(jobs, workspace_id=workspace_id, business_manager_id=await new_business_manager(jobs))
    async with jobs.unit_of_work() as uow:
        await uow.exports.export_workspace_spend(workspace_id, dt.date(2026, 11, 26))
    [export] = await export_rows(jobs, Export.workspace_id == workspace_id)
    file = (await Bucket(s3_endpoint, server_storage.bucket).objects())[export.object_key]
    viewer = await make_caller(
        infrastructure,
        memberships={workspace_id: WorkspaceRole.VIEWER, other_workspace_id: WorkspaceRole.VIEWER},
    )

    async with httpx.AsyncClient(base_url=exports_stack.rest_url, headers=viewer.headers, timeout=10) as http:
        listed = await http.get(f"/api/workspaces/{workspace_id}/exports")
        started = dt.datetime.now(dt.UTC)
        link = await http.get(f"/api/workspaces/{workspace_id}/exports/{export.id}:downloadUrl")
        elsewhere = await http.get(f"/api/workspaces/{other_workspace_id}/exports/{export.id}:downloadUrl")
        staff_only = await http.get(f"/api/exports/{export.id}:downloadUrl")

    assert listed.status_code == 200, listed.text
    [item] = listed.json()["exports"]
    assert dt.datetime.fromisoformat(item.pop("create_time")) == export.created_at
    assert item == {
        "id": str(export.id),
        "workspace_id": str(workspace_id),
        "export_date": "2026-11-26",
        "row_count": 1,
        # int64 is a string in proto3 JSON.
        "size_bytes": str(len(file)),
    }
    assert link.status_code == 200, link.text
    ttl = dt.timedelta(seconds=TTL_SECONDS)
    expire_time = dt.datetime.fromisoformat(link.json()["expire_time"])
    assert started + ttl <= expire_time <= started + ttl + dt.timedelta(seconds=5)
    # Plain HTTP, no credentials: the link is enough.
    async with httpx.AsyncClient(timeout=10) as anonymous:
        downloaded = await anonymous.get(link.json()["url"])
    assert downloaded.status_code == 200
    assert downloaded.content == file
    assert (elsewhere.status_code, elsewhere.json()["details"][0]["reason"]) == (404, "EXPORT_NOT_FOUND")
    assert staff_only.status_code == 403


async def test_staff_list_and_download_any_export(
    exports_stack: Stack, infrastructure: Infrastructure, server_storage: S3ExportStorage
) -> None:
    jobs = dataclasses.replace(infrastructure, export_storage=server_storage)
    workspace_id = await new_workspace(jobs)
    await new_account(jobs, workspace_id=workspace_id, business_manager_id=await new_business_manager(jobs))
    async with jobs.unit_of_work() as uow:
        await uow.exports.export_workspace_spend(workspace_id, dt.date(2026, 11, 26))
    [export] = await export_rows(jobs)
    staff = await make_caller(infrastructure, roles=["staff"])

    async with httpx.AsyncClient(base_url=exports_stack.rest_url, headers=staff.headers, timeout=10) as http:
        listed = await http.get("/api/exports", params={"workspace_id": str(workspace_id)})
        link = await http.get(f"/api/exports/{export.id}:downloadUrl")
        malformed = await http.get("/api/exports", params={"workspace_id": "nope"})

    assert [item["id"] for item in listed.json()["exports"]] == [str(export.id)]
    assert link.status_code == 200, link.text
    async with httpx.AsyncClient(timeout=10) as anonymous:
        assert (await anonymous.get(link.json()["url"])).status_code == 200
    assert malformed.status_code == 400
    assert malformed.json()["details"][-1]["field_violations"][0]["field"] == "workspace_id"
