import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from server.accounts.models import AccountStatus, AccountUserTask, MetaAccountStatus
from server.etags import etag_of
from server.pagination import PageRequestSchema
from server.schema_types import Id, Name100

MAX_TASKS = len(AccountUserTask)


class AccountListRequestSchema(PageRequestSchema):
    """Filters of both account lists; the workspace list sets `workspace_id` from the path."""

    workspace_id: Id | None = None
    business_manager_id: Id | None = None
    status: AccountStatus | None = None
    meta_status: MetaAccountStatus | None = None

    def filters(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"page_size", "page_token"})


class AccountUpdateRequestSchema(BaseModel):
    """A partial update by staff: only the fields in `update_mask` change."""

    update_mask: Annotated[frozenset[Literal["name", "status"]], Field(min_length=1)]
    name: Name100 | None = None
    status: AccountStatus | None = None
    etag: str = ""

    @model_validator(mode="after")
    def _masked_fields_are_given(self) -> "AccountUpdateRequestSchema":
        missing = sorted(field for field in self.update_mask if getattr(self, field) is None)
        if missing:
            raise ValueError(f"fields in update_mask need a value: {', '.join(missing)}")
        return self


class AccountMoveRequestSchema(BaseModel):
    target_workspace_id: Id
    etag: str = ""


def _distinct_tasks(tasks: list[AccountUserTask]) -> list[AccountUserTask]:
    if len(set(tasks)) != len(tasks):
        raise ValueError("must not repeat a task")
    return tasks


class AccountUserAssignRequestSchema(BaseModel):
    tasks: Annotated[list[AccountUserTask], Field(min_length=1, max_length=MAX_TASKS), AfterValidator(_distinct_tasks)]


class AccountResponseSchema(BaseModel):
    """An ad account; money in minor units of `currency`."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: uuid.UUID
    workspace_id: uuid.UUID
    business_manager_id: uuid.UUID
    meta_account_id: str | None
    name: str
    currency: str
    timezone: str
    # None: no cap.
    spend_cap_minor: int | None
    amount_spent_minor: int
    status: AccountStatus
    meta_status: MetaAccountStatus | None
    disable_reason: str
    synced_at: dt.datetime | None
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def etag(self) -> str:
        return etag_of(self.version)


class AccountUserResponseSchema(BaseModel):
    """A member's access to an ad account (also the audit snapshot of an assignment)."""

    model_config = ConfigDict(frozen=True)

    account_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    tasks: list[AccountUserTask]
    created_at: dt.datetime
    updated_at: dt.datetime
