import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict

from server.pagination import PageRequestSchema
from server.schema_types import Id


class PixelResponseSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: uuid.UUID
    workspace_id: uuid.UUID
    business_manager_id: uuid.UUID
    meta_pixel_id: str | None
    name: str
    last_fired_at: dt.datetime | None
    # From the selectin-loaded `Pixel.shares`, oldest share first.
    account_ids: list[uuid.UUID]
    created_at: dt.datetime
    updated_at: dt.datetime


class PixelListRequestSchema(PageRequestSchema):
    """Filters of both pixel lists; the workspace list sets `workspace_id` from the path."""

    workspace_id: Id | None = None
    business_manager_id: Id | None = None

    def filters(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"page_size", "page_token"})
