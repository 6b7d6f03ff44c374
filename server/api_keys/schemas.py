import datetime as dt
import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from server.pagination import PageRequestSchema
from server.schema_types import Name100, RoleName

MAX_ROLES = 20


def _distinct(names: list[str]) -> list[str]:
    # Sorted, so the same set of roles is the same request to the idempotency check.
    unique = sorted(set(names))
    if len(unique) > MAX_ROLES:
        raise ValueError(f"must name at most {MAX_ROLES} roles")
    return unique


ApiKeyName = Name100


class ApiKeyCreateRequestSchema(BaseModel):
    name: ApiKeyName
    role_names: Annotated[list[RoleName], AfterValidator(_distinct)] = Field(default_factory=list)


class ApiKeyListRequestSchema(PageRequestSchema):
    include_revoked: bool = False

    def filters(self) -> dict[str, Any]:
        return {"include_revoked": self.include_revoked}


class ApiKeyResponseSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: uuid.UUID
    name: str
    prefix: str
    role_names: list[str]
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    created_by_user_id: uuid.UUID | None


class ApiKeyCreatedSchema(BaseModel):
    model_config = ConfigDict(frozen=True)

    api_key: ApiKeyResponseSchema
    # The key itself, shown once; None when a retry replays the create.
    secret: str | None = Field(default=None, repr=False)
