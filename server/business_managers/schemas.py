import datetime as dt
import uuid
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from server.business_managers.models import (
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.etags import etag_of
from server.pagination import PageRequestSchema
from server.schema_types import Id, MetaBusinessId, Name200

MIN_TOKEN_LENGTH = 20
MAX_TOKEN_LENGTH = 1000


def _token(value: SecretStr) -> SecretStr:
    # Messages name the rule, never the value: validation errors reach callers and logs.
    token = value.get_secret_value().strip()
    if not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
        raise ValueError(f"must be {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise ValueError("must not contain whitespace or control characters")
    return SecretStr(token)


# A SecretStr, so the token never shows in a repr, a log line or an error; surrounding whitespace
# (a copy-paste artefact) is dropped. Fields of this type are excluded from dumps (see below).
SystemUserToken = Annotated[SecretStr, AfterValidator(_token)]


class BusinessManagerCreateRequestSchema(BaseModel):
    """A platform business manager to add.

    The token is excluded from dumps: the idempotency fingerprint is an unsalted SHA-256 of the
    dump, stored in the database, and would otherwise let anyone reading that table confirm a
    guessed token. A retry is instead checked against the stored (encrypted) token.
    """

    # A rejected token must not show up in str(ValidationError) either.
    model_config = ConfigDict(hide_input_in_errors=True)

    meta_business_id: MetaBusinessId
    name: Name200
    system_user_token: Annotated[SystemUserToken, Field(exclude=True)]


UpdatableField = Literal["name", "system_user_token"]


class BusinessManagerUpdateRequestSchema(BaseModel):
    """A partial update: only the fields in `update_mask` change."""

    model_config = ConfigDict(hide_input_in_errors=True)

    update_mask: Annotated[frozenset[UpdatableField], Field(min_length=1)]
    name: Name200 | None = None
    system_user_token: Annotated[SystemUserToken | None, Field(exclude=True)] = None
    etag: str = ""

    @model_validator(mode="after")
    def _masked_fields_are_set(self) -> Self:
        for field in self.update_mask:
            if getattr(self, field) is None:
                raise ValueError(f"{field} is in update_mask but has no value")
        return self


class BusinessManagerListRequestSchema(PageRequestSchema):
    ownership: BusinessManagerOwnership | None = None
    status: BusinessManagerStatus | None = None
    workspace_id: Id | None = None

    def filters(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"page_size", "page_token"})


class WorkspaceBusinessManagerListRequestSchema(PageRequestSchema):
    pass


class BusinessManagerResponseSchema(BaseModel):
    """A business manager as callers (and audit snapshots) see it: never its token."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    meta_business_id: str
    name: str
    ownership: BusinessManagerOwnership
    workspace_id: uuid.UUID | None
    status: BusinessManagerStatus
    verification_status: BusinessVerificationStatus
    has_system_user_token: bool
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def etag(self) -> str:
        return etag_of(self.version)
