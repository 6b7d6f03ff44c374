import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from server.etags import etag_of
from server.pagination import PageRequestSchema
from server.requests.models import RequestStatus, RequestType
from server.schema_types import MAX_MINOR_AMOUNT, Currency, Id, MetaBusinessId, Name100, Name200, TimeZone

MAX_ACCOUNTS_PER_SHARE = 50


def _distinct[T](values: list[T]) -> list[T]:
    if len(set(values)) != len(values):
        raise ValueError("must not repeat an id")
    return values


class AccountCreationPayload(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: Literal[RequestType.ACCOUNT_CREATION] = RequestType.ACCOUNT_CREATION
    name: Name100
    currency: Currency
    timezone: TimeZone
    business_manager_id: Id


class PixelCreationPayload(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: Literal[RequestType.PIXEL_CREATION] = RequestType.PIXEL_CREATION
    name: Name100
    business_manager_id: Id


class SpendCapChangePayload(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: Literal[RequestType.SPEND_CAP_CHANGE] = RequestType.SPEND_CAP_CHANGE
    account_id: Id
    currency: Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Z]{3}$")]
    # 0 removes the cap.
    amount_minor: Annotated[int, Field(ge=0, le=MAX_MINOR_AMOUNT)]


class PixelSharePayload(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: Literal[RequestType.PIXEL_SHARE] = RequestType.PIXEL_SHARE
    pixel_id: Id
    account_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_ACCOUNTS_PER_SHARE), AfterValidator(_distinct)]


class BusinessManagerConnectionPayload(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: Literal[RequestType.BUSINESS_MANAGER_CONNECTION] = RequestType.BUSINESS_MANAGER_CONNECTION
    meta_business_id: MetaBusinessId
    name: Name200


RequestPayload = Annotated[
    AccountCreationPayload
    | PixelCreationPayload
    | SpendCapChangePayload
    | PixelSharePayload
    | BusinessManagerConnectionPayload,
    Field(discriminator="type"),
]


class RequestResultSchema(BaseModel):
    model_config = ConfigDict(frozen=True)

    account_id: Id | None = None
    pixel_id: Id | None = None
    business_manager_id: Id | None = None
    meta_id: str | None = None
    failure_reason: str | None = None
    # FAILED only for transient reasons (the retry deadline passed): staff may retry it.
    retryable: bool = False


class RequestResponseSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: uuid.UUID
    workspace_id: uuid.UUID
    type: RequestType
    status: RequestStatus
    requester_type: str
    requester_id: uuid.UUID
    reviewer_type: str | None
    reviewer_id: uuid.UUID | None
    rejection_reason: str | None
    payload: RequestPayload
    result: RequestResultSchema | None
    created_at: dt.datetime
    reviewed_at: dt.datetime | None
    finished_at: dt.datetime | None
    expires_at: dt.datetime
    # APPROVED and waiting after transient failures: when its work runs again.
    retry_at: dt.datetime | None = None
    version: int

    @property
    def etag(self) -> str:
        return etag_of(self.version)


class RequestListRequestSchema(PageRequestSchema):
    """Filters of both request lists; the workspace list sets `workspace_id` from the path."""

    type: RequestType | None = None
    status: RequestStatus | None = None
    workspace_id: Id | None = None
    created_before: dt.datetime | None = None
    created_after: dt.datetime | None = None

    def filters(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"page_size", "page_token"})


class RejectionSchema(BaseModel):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


class ApprovalSchema(BaseModel):
    """What an approval asks, for its idempotency fingerprint."""

    request: uuid.UUID


class SubmissionSchema(BaseModel):
    """What a submission asks, for its idempotency fingerprint."""

    workspace_id: uuid.UUID
    payload: RequestPayload
