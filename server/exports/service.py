"""Daily spend exports: one CSV per workspace written to object storage by the scheduled job, listed
and downloaded through short-lived presigned URLs. The exports module owns `exports` (one row per
workspace and day) and the objects; the accounts whose spend is exported are the accounts module's.
"""

import csv
import datetime as dt
import io
import uuid
from typing import Protocol

from server.accounts.models import Account
from server.audit_logs.service import AuditEntry, IAuditTrail
from server.db import id_time, utcnow
from server.exports.exceptions import ExportExpiredException, ExportNotFoundException
from server.exports.models import Export
from server.exports.repository import IExportRepository
from server.exports.schemas import ExportDownloadUrlSchema, ExportListRequestSchema, ExportResponseSchema
from server.exports.storage import IExportStorage
from server.pagination import Page, PageTokenCodec
from server.tenancy import SYSTEM, TenantScope, WorkspaceScope

EXPORT_ENTITY = "export"
SPEND_CSV_HEADER = (
    "account_id",
    "meta_account_id",
    "account_name",
    "currency",
    "amount_spent_minor",
    "spend_cap_minor",
    "meta_status",
    "synced_at",
)
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
# Every export's object lives under this prefix (the lifecycle rule's filter).
EXPORTS_PREFIX = "exports/"
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spend_file_name(day: dt.date) -> str:
    return f"spend-{day.isoformat()}.csv"


def spend_object_key(workspace_id: uuid.UUID, day: dt.date) -> str:
    return f"{EXPORTS_PREFIX}{workspace_id}/{spend_file_name(day)}"


class IAccountSpend(Protocol):
    """The ad accounts whose spend is exported (the accounts module's repository)."""

    async def workspaces_with_accounts(self, *, after: uuid.UUID | None, limit: int) -> list[uuid.UUID]: ...
    async def accounts_of(self, workspace_id: uuid.UUID) -> list[Account]: ...


class IExportService(Protocol):
    async def list_workspace_exports(
        self, workspace_id: uuid.UUID, query: ExportListRequestSchema
    ) -> Page[ExportResponseSchema]: ...
    async def list_exports(self, query: ExportListRequestSchema) -> Page[ExportResponseSchema]: ...
    async def get_download_url(self, export_id: uuid.UUID, *, scope: TenantScope) -> ExportDownloadUrlSchema: ...
    async def workspaces_with_accounts(self, *, after: uuid.UUID | None, limit: int) -> list[uuid.UUID]: ...
    async def export_workspace_spend(self, workspace_id: uuid.UUID, day: dt.date) -> ExportResponseSchema | None: ...
    async def ensure_bucket(self) -> None: ...
    async def delete_expired(self, *, limit: int, now: dt.datetime | None = None) -> int: ...
    async def apply_lifecycle_rule(self) -> bool: ...


class ExportService:
    """Daily spend exports: made by the scheduled job, listed and downloaded through presigned URLs."""

    def __init__(
        self,
        *,
        repository: IExportRepository,
        accounts: IAccountSpend,
        storage: IExportStorage,
        audit: IAuditTrail,
        page_tokens: PageTokenCodec,
        url_ttl: dt.timedelta,
        retention_days: int,
    ) -> None:
        self._repository = repository
        self._accounts = accounts
        self._storage = storage
        self._audit = audit
        self._page_tokens = page_tokens
        self._url_ttl = url_ttl
        self._retention_days = retention_days

    def _expired_before(self, now: dt.datetime | None = None) -> dt.datetime:
        """Exports made before this have expired (EXPORT_RETENTION_DAYS)."""
        return (now or utcnow()) - dt.timedelta(days=self._retention_days)

    # -- RPCs ----------------------------------------------------------------------------------

    async def list_workspace_exports(
        self, workspace_id: uuid.UUID, query: ExportListRequestSchema
    ) -> Page[ExportResponseSchema]:
        return await self._list(
            query.model_copy(update={"workspace_id": workspace_id}),
            scope=WorkspaceScope(workspace_id),
            collection="workspace_exports",
        )

    async def list_exports(self, query: ExportListRequestSchema) -> Page[ExportResponseSchema]:
        return await self._list(query, scope=SYSTEM, collection="exports")

    async def get_download_url(self, export_id: uuid.UUID, *, scope: TenantScope) -> ExportDownloadUrlSchema:
        """A presigned GET URL of the export's file, valid for the configured lifetime.

        An export outside `scope` (another workspace's, for a workspace caller) is NOT_FOUND exactly
        like a missing one. One older than EXPORT_RETENTION_DAYS is NOT_FOUND with reason
        EXPORT_EXPIRED, whether or not the retention job has deleted it yet: told by the time in
        the id itself, so it says nothing of whether the export exists or whose it is.
        """
        made = id_time(export_id)
        if made is not None and made < self._expired_before():
            raise ExportExpiredException(export_id, retention_days=self._retention_days)
        export = await self._repository.get(export_id, scope=scope)
        if export is None:
            raise ExportNotFoundException(export_id)
        if export.created_at < self._expired_before():
            raise ExportExpiredException(export_id, retention_days=self._retention_days)
        # Taken before signing, so the URL lasts at least until the time we report.
        expires_at = dt.datetime.now(dt.UTC) + self._url_ttl
        url = await self._storage.presigned_get(
            export.object_key,
            expires_in=int(self._url_ttl.total_seconds()),
            download_name=spend_file_name(export.export_date),
        )
        return ExportDownloadUrlSchema(url=url, expires_at=expires_at)

    # -- the daily job -------------------------------------------------------------------------

    async def workspaces_with_accounts(self, *, after: uuid.UUID | None, limit: int) -> list[uuid.UUID]:
        return await self._accounts.workspaces_with_accounts(after=after, limit=limit)

    async def ensure_bucket(self) -> None:
        """Create the bucket when it is missing: development's moto starts empty. Production buckets
        are provisioned, and the worker's credentials need not be allowed to create them."""
        await self._storage.ensure_bucket()

    async def export_workspace_spend(self, workspace_id: uuid.UUID, day: dt.date) -> ExportResponseSchema | None:
        """Write the workspace's spend CSV of `day` to storage and record it; None when the workspace
        has no ad accounts (no file, no row).

        Idempotent: the object key and the row are unique per workspace and day, so a rerun
        replaces the file and updates the row (audited as `update`), never adds a second one.
        The object is written before the row that points at it: a failure in between leaves
        a file that the next run overwrites, never a row without its file.

        Runs under an advisory lock on (workspace, day), held across the upload until commit: two
        runs at once (two schedulers, a redelivered message) would otherwise interleave their
        uploads and upserts and leave a row describing the other run's file. The lock blocks
        nothing but another export of the same workspace and day.
        """
        await self._repository.lock_workspace_day(workspace_id, day)
        accounts = await self._accounts.accounts_of(workspace_id)
        if not accounts:
            return None
        body = spend_csv(accounts)
        key = spend_object_key(workspace_id, day)
        await self._storage.put(key, body, content_type=CSV_CONTENT_TYPE)

        existing = await self._repository.get_for_day(workspace_id, day)
        before = _to_schema(existing) if existing is not None else None
        after = _to_schema(
            await self._repository.upsert(
                workspace_id=workspace_id,
                export_date=day,
                object_key=key,
                row_count=len(accounts),
                size_bytes=len(body),
            )
        )
        await self._audit.record(
            entity_type=EXPORT_ENTITY,
            entity_id=after.id,
            action="create" if before is None else "update",
            workspace_id=workspace_id,
            before=before,
            after=after,
        )
        return after

    # -- retention -----------------------------------------------------------------------------

    async def delete_expired(self, *, limit: int, now: dt.datetime | None = None) -> int:
        """Delete up to `limit` exports older than EXPORT_RETENTION_DAYS, their files first (a file
        that is already gone, by the bucket's lifecycle rule, is no error); how many.

        The rows stay locked while their files are deleted: a failure rolls the rows back and the
        next run deletes both. A row whose file went before a crash is expired all the same."""
        expired = await self._repository.lock_expired(made_before=self._expired_before(now), limit=limit)
        if not expired:
            return 0
        await self._storage.delete([export.object_key for export in expired])
        await self._repository.delete([export.id for export in expired])
        await self._audit.record_many(
            [
                AuditEntry(EXPORT_ENTITY, export.id, "expire", export.workspace_id, before=_to_schema(export))
                for export in expired
            ]
        )
        return len(expired)

    async def apply_lifecycle_rule(self) -> bool:
        """Have the bucket itself delete export files after EXPORT_RETENTION_DAYS (counted from the
        file's last write, rounded up to a midnight by S3: never before its row expires)."""
        return await self._storage.expire_after(EXPORTS_PREFIX, self._retention_days)

    # -- helpers -------------------------------------------------------------------------------

    async def _list(
        self, query: ExportListRequestSchema, *, scope: TenantScope, collection: str
    ) -> Page[ExportResponseSchema]:
        return await self._page_tokens.page(
            query,
            collection,
            fetch=lambda after, limit: self._repository.list_exports(
                query, scope=scope, before=after, limit=limit, made_since=self._expired_before()
            ),
            convert=_to_schema,
        )


def spend_csv(accounts: list[Account]) -> bytes:
    """The spend CSV (RFC 4180: comma-separated, CRLF line ends, UTF-8) of these accounts, in their
    order. Missing values are empty cells; money in minor units of `currency`; times ISO 8601 UTC."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(SPEND_CSV_HEADER)
    for account in accounts:
        writer.writerow(
            (
                str(account.id),
                account.meta_account_id or "",
                _spreadsheet_safe(account.name),
                account.currency,
                account.amount_spent_minor,
                "" if account.spend_cap_minor is None else account.spend_cap_minor,
                account.meta_status.value if account.meta_status is not None else "",
                account.synced_at.astimezone(dt.UTC).isoformat() if account.synced_at is not None else "",
            )
        )
    return buffer.getvalue().encode()


def _spreadsheet_safe(text: str) -> str:
    """Free text with a leading `'` when a spreadsheet would otherwise run it as a formula."""
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def _to_schema(export: Export) -> ExportResponseSchema:
    return ExportResponseSchema.model_validate(export)
