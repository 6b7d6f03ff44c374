import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from server.pagination import PageRequestSchema
from server.schema_types import Id


class AuditLogResponseSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: uuid.UUID
    actor_type: str | None
    actor_id: uuid.UUID | None
    workspace_id: uuid.UUID | None
    entity_type: str
    entity_id: uuid.UUID
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    trace_id: str | None
    created_at: dt.datetime


class AuditLogListRequestSchema(PageRequestSchema):
    workspace_id: Id | None = None
    entity_type: str | None = Field(default=None, max_length=50)
    entity_id: Id | None = None
    actor_id: Id | None = None
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None

    @field_validator("end_time")
    @classmethod
    def _after_start(cls, end_time: dt.datetime | None, info: ValidationInfo) -> dt.datetime | None:
        start_time = info.data.get("start_time")
        if end_time is not None and start_time is not None and start_time >= end_time:
            raise ValueError("must be after start_time")
        return end_time

    def filters(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"page_size", "page_token"})
