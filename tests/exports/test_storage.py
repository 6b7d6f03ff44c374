"""S3ExportStorage against moto's S3 server."""

from urllib.parse import parse_qs, urlsplit

import httpx

from server.exports.storage import S3ExportStorage
from tests.exports.conftest import Bucket, make_storage


async def test_put_then_a_presigned_url_downloads_the_same_bytes(storage: S3ExportStorage, bucket: Bucket) -> None:
    body = "account_id,account_name\r\n1,Café\r\n".encode()
    await storage.put("exports/w/spend-2026-11-26.csv", body, content_type="text/csv; charset=utf-8")

    url = await storage.presigned_get(
        "exports/w/spend-2026-11-26.csv", expires_in=42, download_name="spend-2026-11-26.csv"
    )
    async with httpx.AsyncClient() as http:
        response = await http.get(url)

    assert response.status_code == 200
    assert response.content == body
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="spend-2026-11-26.csv"'
    # SigV4, and the lifetime asked for is in the signed URL itself.
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["42"]
    assert await bucket.content_type("exports/w/spend-2026-11-26.csv") == "text/csv; charset=utf-8"


async def test_put_replaces_the_object_at_the_key(storage: S3ExportStorage, bucket: Bucket) -> None:
    await storage.put("k.csv", b"first", content_type="text/csv")
    await storage.put("k.csv", b"second", content_type="text/csv")

    assert await bucket.objects() == {"k.csv": b"second"}


async def test_a_presigned_url_needs_its_signature(storage: S3ExportStorage) -> None:
    await storage.put("k.csv", b"secret spend", content_type="text/csv")
    url = await storage.presigned_get("k.csv", expires_in=60)

    async with httpx.AsyncClient() as http:
        unsigned = await http.get(url.split("?", 1)[0])

    assert unsigned.status_code == 403
    assert b"secret spend" not in unsigned.content


async def test_ensure_bucket_creates_a_missing_bucket_once(s3_endpoint: str) -> None:
    storage = make_storage(s3_endpoint, region="eu-west-1")
    bucket = Bucket(s3_endpoint, storage.bucket)
    try:
        await storage.ensure_bucket()
        await storage.put("k.csv", b"kept", content_type="text/csv")
        # A second call (another process, the next run) finds it and keeps its objects.
        await storage.ensure_bucket()

        assert await bucket.objects() == {"k.csv": b"kept"}
        assert await bucket.location() == "eu-west-1"
    finally:
        await storage.close()


async def test_the_client_is_opened_once_and_reopened_after_close(storage: S3ExportStorage) -> None:
    await storage.put("a.csv", b"a", content_type="text/csv")
    first = storage._clients[False]
    await storage.put("b.csv", b"b", content_type="text/csv")
    assert storage._clients[False] is first

    await storage.close()
    assert not storage._clients
    await storage.put("c.csv", b"c", content_type="text/csv")
    assert storage._clients[False] is not first


async def test_links_point_at_the_public_endpoint_when_clients_reach_the_store_elsewhere(
    s3_endpoint: str,
) -> None:
    """Compose: the platform writes to http://minio:9000, browsers download from localhost:9000."""
    port = urlsplit(s3_endpoint).port
    storage = make_storage(s3_endpoint, public_endpoint_url=f"http://localhost:{port}")
    try:
        await storage.ensure_bucket()
        await storage.put("k.csv", b"spend", content_type="text/csv")
        url = await storage.presigned_get("k.csv", expires_in=60)

        assert urlsplit(url).netloc == f"localhost:{port}"
        async with httpx.AsyncClient() as http:
            assert (await http.get(url)).content == b"spend"
    finally:
        await storage.close()
