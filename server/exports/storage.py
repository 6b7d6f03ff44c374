"""Object storage for exports: S3 (or any S3-compatible store) through aioboto3.

One S3 client per storage, opened on first use and kept until `close()`. Creating an aiobotocore
client loads and parses the S3 service model and builds an HTTP connection pool, several
milliseconds of CPU each time; a client per call would spend that on every download link
(a read RPC budgeted at about 1 ms) and open a new connection for every upload. The client is
opened lazily because it is an async context manager while `Infrastructure.build` is synchronous,
and so that processes that never touch S3 never create one. Like the database engine, a storage
belongs to the event loop that first used it; `Infrastructure.close()` closes it.
"""

import asyncio
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Protocol, Self, cast

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from server.config import Settings

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import BucketLifecycleConfigurationTypeDef, CreateBucketConfigurationTypeDef

_MISSING_BUCKET_CODES = frozenset({"404", "NoSuchBucket", "NotFound"})
# The rule adplane keeps among the bucket's lifecycle rules (the others are left as they are).
LIFECYCLE_RULE_ID = "adplane-export-retention"
# DeleteObjects takes at most this many keys.
_DELETE_BATCH = 1000

logger = structlog.get_logger("adplane.exports.storage")


class IExportStorage(Protocol):
    async def put(self, key: str, body: bytes, *, content_type: str) -> None:
        """Write the object at `key`, replacing any object already there."""
        ...

    async def presigned_get(self, key: str, *, expires_in: int, download_name: str | None = None) -> str:
        """A URL that downloads the object without credentials for `expires_in` seconds; with
        `download_name`, browsers save it under that file name."""
        ...

    async def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (development and tests; production buckets exist)."""
        ...

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete the objects at `keys` (a key with no object is no error)."""
        ...

    async def expire_after(self, prefix: str, days: int) -> bool:
        """Have the store itself delete the objects under `prefix` `days` days after they were written
        (a lifecycle rule of the bucket); False when the store or the credentials do not allow it."""
        ...

    async def close(self) -> None: ...


class S3ExportStorage:
    def __init__(
        self,
        *,
        bucket: str,
        region: str,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        self._bucket = bucket
        self._region = region
        self._client_options: dict[str, Any] = {
            "region_name": region,
            "endpoint_url": endpoint_url or None,
            # botocore.config.Config's arguments (made with the client: see `_s3`).
            "config": {
                # SigV4 everywhere: presigned URLs then carry X-Amz-Expires and work in every region
                # (botocore would otherwise presign with the legacy signature in us-east-1).
                "signature_version": "s3v4",
                # S3-compatible stores (moto, MinIO) on an IP or a plain host name have no
                # per-bucket DNS names; AWS itself gets its default (virtual-hosted) addressing.
                "s3": {"addressing_style": "path"} if endpoint_url else {},
                "retries": {"mode": "standard", "max_attempts": 3},
                "connect_timeout": 5,
                "read_timeout": 30,
            },
        }
        # Without explicit keys boto's default chain applies (environment, instance or task role).
        if access_key_id and secret_access_key:
            self._client_options["aws_access_key_id"] = access_key_id
            self._client_options["aws_secret_access_key"] = secret_access_key
        # Links are signed for the address clients use (the signature covers the host); signing
        # makes no request, so that address need not be reachable from here.
        self._public_client_options: dict[str, Any] | None = None
        if public_endpoint_url and public_endpoint_url != endpoint_url:
            self._public_client_options = {**self._client_options, "endpoint_url": public_endpoint_url}
        self._stack = AsyncExitStack()
        self._clients: dict[bool, S3Client] = {}
        self._opening = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            endpoint_url=settings.s3_endpoint_url or None,
            public_endpoint_url=settings.s3_public_endpoint_url or None,
            access_key_id=settings.aws_access_key_id or None,
            secret_access_key=settings.aws_secret_access_key.get_secret_value() or None,
        )

    @property
    def bucket(self) -> str:
        return self._bucket

    async def _s3(self, *, public: bool = False) -> "S3Client":
        public = public and self._public_client_options is not None
        client = self._clients.get(public)
        if client is None:
            async with self._opening:
                client = self._clients.get(public)
                if client is None:
                    # Imported here: aioboto3 and botocore's config take about a second of CPU to
                    # import, which every process (and every CLI command) paid at start-up
                    # whether or not it ever touched S3.
                    import aioboto3  # noqa: PLC0415
                    from botocore.config import Config  # noqa: PLC0415

                    chosen = (public and self._public_client_options) or self._client_options
                    options = {**chosen, "config": Config(**chosen["config"])}
                    client = self._clients[public] = await self._stack.enter_async_context(
                        aioboto3.Session().client("s3", **options)
                    )
        return client

    async def put(self, key: str, body: bytes, *, content_type: str) -> None:
        s3 = await self._s3()
        await s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType=content_type)

    async def presigned_get(self, key: str, *, expires_in: int, download_name: str | None = None) -> str:
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": key}
        if download_name is not None:
            params["ResponseContentDisposition"] = f'attachment; filename="{download_name}"'
        s3 = await self._s3(public=True)
        return await s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)

    async def ensure_bucket(self) -> None:
        s3 = await self._s3()
        try:
            await s3.head_bucket(Bucket=self._bucket)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in _MISSING_BUCKET_CODES:
                raise
        else:
            return
        try:
            if self._region == "us-east-1":
                # us-east-1 is the default location and refuses to be named as a constraint.
                await s3.create_bucket(Bucket=self._bucket)
            else:
                await s3.create_bucket(
                    Bucket=self._bucket,
                    # Any region name the store knows, not only those the stubs list.
                    CreateBucketConfiguration=cast(
                        "CreateBucketConfigurationTypeDef", {"LocationConstraint": self._region}
                    ),
                )
        except ClientError as error:
            # Another process created it between our check and our create.
            if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise

    async def delete(self, keys: Sequence[str]) -> None:
        s3 = await self._s3()
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            response = await s3.delete_objects(
                Bucket=self._bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
            )
            if errors := response.get("Errors"):
                raise RuntimeError(f"S3 refused to delete {len(errors)} objects, e.g. {errors[0]}")

    async def expire_after(self, prefix: str, days: int) -> bool:
        rule: dict[str, Any] = {
            "ID": LIFECYCLE_RULE_ID,
            "Filter": {"Prefix": prefix},
            "Status": "Enabled",
            "Expiration": {"Days": days},
        }
        s3 = await self._s3()
        try:
            try:
                current = await s3.get_bucket_lifecycle_configuration(Bucket=self._bucket)
                rules: list[dict[str, Any]] = [dict(r) for r in current.get("Rules", [])]
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
                    raise
                rules = []
            ours = [r for r in rules if r.get("ID") == LIFECYCLE_RULE_ID]
            if ours and ours[0].get("Expiration") == rule["Expiration"] and ours[0].get("Filter") == rule["Filter"]:
                return True
            others = [r for r in rules if r.get("ID") != LIFECYCLE_RULE_ID]
            await s3.put_bucket_lifecycle_configuration(
                Bucket=self._bucket,
                LifecycleConfiguration=cast("BucketLifecycleConfigurationTypeDef", {"Rules": [*others, rule]}),
            )
        except (ClientError, BotoCoreError) as error:
            # A store without lifecycle rules, credentials not allowed to set them, or a store out of
            # reach: the scheduled delete alone expires the exports.
            code = (
                error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else type(error).__name__
            )
            logger.warning("export lifecycle rule not set; the scheduled delete expires exports", code=code)
            return False
        return True

    async def close(self) -> None:
        self._clients.clear()
        await self._stack.aclose()
