import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict

from server.pagination import PageRequestSchema
from server.schema_types import Id


class ExportListRequestSchema(PageRequestSchema):
    """Filters of both export lists; the workspace list sets `workspace_id` from the path."""

    workspace_id: Id | None = None

    def filters(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"page_size", "page_token"})


class ExportResponseSchema(BaseModel):
    """One workspace's spend export of one day (also the audit snapshot: nothing secret in it)."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: uuid.UUID
    workspace_id: uuid.UUID
    export_date: dt.date
    object_key: str
    row_count: int
    size_bytes: int
    created_at: dt.datetime


class ExportDownloadUrlSchema(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str
    # The URL works until this time: the expiry is computed just before signing, so the URL itself
    # lasts that moment longer, never less.
    expires_at: dt.datetime
