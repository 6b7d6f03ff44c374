"""S3 for the export tests: moto's server on loopback with fake credentials, a fresh bucket per
test, and the shared infrastructure with its export storage pointed at it."""

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aioboto3
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import select

from server.accounts.models import Account, AccountStatus, MetaAccountStatus
from server.audit_logs.models import AuditLog
from server.business_managers.models import (
    BusinessManager,
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.composition import Infrastructure
from server.exports.models import Export
from server.exports.storage import S3ExportStorage
from server.workspaces.schemas import WorkspaceCreateRequestSchema

FAKE_KEY_ID = "testing-key-id"
FAKE_SECRET = "testing-secret"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 on a free loopback port, for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def make_storage(
    endpoint: str, *, bucket: str | None = None, region: str = REGION, public_endpoint_url: str | None = None
) -> S3ExportStorage:
    return S3ExportStorage(
        bucket=bucket or f"exports-{uuid.uuid4().hex[:16]}",
        region=region,
        endpoint_url=endpoint,
        public_endpoint_url=public_endpoint_url,
        access_key_id=FAKE_KEY_ID,
        secret_access_key=FAKE_SECRET,
    )


@pytest.fixture
async def storage(s3_endpoint: str) -> AsyncIterator[S3ExportStorage]:
    """A storage on a bucket of its own, created."""
    storage = make_storage(s3_endpoint)
    await storage.ensure_bucket()
    yield storage
    await storage.close()


@pytest.fixture
def exports_infrastructure(infrastructure: Infrastructure, storage: S3ExportStorage) -> Infrastructure:
    """The session's infrastructure (same engine and codecs) with its export storage on moto."""
    return dataclasses.replace(infrastructure, export_storage=storage)


class Bucket:
    """Reads the bucket straight through S3, independently of the storage under test."""

    def __init__(self, endpoint: str, name: str) -> None:
        self._endpoint = endpoint
        self.name = name

    def _client(self, region: str = REGION) -> Any:
        return aioboto3.Session().client(
            "s3",
            endpoint_url=self._endpoint,
            region_name=region,
            aws_access_key_id=FAKE_KEY_ID,
            aws_secret_access_key=FAKE_SECRET,
        )

    async def objects(self) -> dict[str, bytes]:
        """Every object in the bucket, by key."""
        async with self._client() as s3:
            listing = await s3.list_objects_v2(Bucket=self.name)
            found: dict[str, bytes] = {}
            for item in listing.get("Contents", []):
                response = await s3.get_object(Bucket=self.name, Key=item["Key"])
                async with response["Body"] as body:
                    found[item["Key"]] = await body.read()
            return found

    async def content_type(self, key: str) -> str:
        async with self._client() as s3:
            head = await s3.head_object(Bucket=self.name, Key=key)
            return str(head["ContentType"])

    async def location(self) -> str | None:
        async with self._client() as s3:
            response = await s3.get_bucket_location(Bucket=self.name)
            location = response.get("LocationConstraint")
            return None if location is None else str(location)


@pytest.fixture
def bucket(s3_endpoint: str, storage: S3ExportStorage) -> Bucket:
    return Bucket(s3_endpoint, storage.bucket)


# -- seeds ---------------------------------------------------------------------------------------


async def new_workspace(infrastructure: Infrastructure) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        workspace = await uow.workspaces.create_workspace(
            WorkspaceCreateRequestSchema(name=f"Workspace {uuid.uuid4().hex[:8]}")
        )
    return workspace.id


async def new_business_manager(infrastructure: Infrastructure) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        business_manager = BusinessManager(
            meta_business_id=str(uuid.uuid4().int)[:15],
            name="Platform BM",
            ownership=BusinessManagerOwnership.PLATFORM,
            status=BusinessManagerStatus.ACTIVE,
            verification_status=BusinessVerificationStatus.VERIFIED,
        )
        uow.session.add(business_manager)
        await uow.session.flush()
    return business_manager.id


async def new_account(
    infrastructure: Infrastructure, *, workspace_id: uuid.UUID, business_manager_id: uuid.UUID, **values: Any
) -> uuid.UUID:
    fields: dict[str, Any] = {
        "meta_account_id": f"act_{str(uuid.uuid4().int)[:15]}",
        "name": "Account",
        "currency": "EUR",
        "timezone": "Europe/Berlin",
        "status": AccountStatus.ACTIVE,
        "meta_status": MetaAccountStatus.ACTIVE,
        "amount_spent_minor": 0,
        **values,
    }
    async with infrastructure.unit_of_work() as uow:
        account = Account(workspace_id=workspace_id, business_manager_id=business_manager_id, **fields)
        uow.session.add(account)
        await uow.session.flush()
    return account.id


async def set_spend(infrastructure: Infrastructure, account_id: uuid.UUID, amount_spent_minor: int) -> None:
    async with infrastructure.unit_of_work() as uow:
        account = await uow.session.get_one(Account, account_id)
        account.amount_spent_minor = amount_spent_minor


async def export_rows(infrastructure: Infrastructure, *criteria: Any) -> list[Export]:
    async with infrastructure.unit_of_work() as uow:
        return list(await uow.session.scalars(select(Export).where(*criteria).order_by(Export.id)))


async def audit_entries(infrastructure: Infrastructure, entity_id: uuid.UUID) -> list[AuditLog]:
    async with infrastructure.unit_of_work() as uow:
        statement = (
            select(AuditLog)
            .where(AuditLog.entity_type == "export", AuditLog.entity_id == entity_id)
            .order_by(AuditLog.id)
        )
        return list(await uow.session.scalars(statement))
