import datetime as dt
import unicodedata
import uuid
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)

from server.etags import etag_of
from server.pagination import PageRequestSchema

MAX_EMAIL_LENGTH = 254
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024

# Line breaks and the bidi embedding/override/isolate marks: they would let a display name
# spoof or garble the text around it. Other format characters (ZWJ, ZWNJ) are parts of names.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_CONTROL_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def _lower_email(value: str) -> str:
    # email-validator lower-cases the domain only; sign-in treats the whole address case-insensitively.
    value = value.lower()
    if len(value) > MAX_EMAIL_LENGTH:
        raise ValueError(f"must be at most {MAX_EMAIL_LENGTH} characters")
    return value


def _no_control_characters(value: str) -> str:
    if any(ch in _BIDI_CONTROLS or unicodedata.category(ch) in _CONTROL_CATEGORIES for ch in value):
        raise ValueError("must not contain control characters")
    return value


def _password_length(value: SecretStr) -> SecretStr:
    length = len(value.get_secret_value())
    if not MIN_PASSWORD_LENGTH <= length <= MAX_PASSWORD_LENGTH:
        raise ValueError(f"must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters")
    return value


Email = Annotated[EmailStr, AfterValidator(_lower_email)]
FullName = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(_no_control_characters)
]
# A SecretStr, so the password never shows in a repr, a log line or a dump of the schema.
Password = Annotated[SecretStr, AfterValidator(_password_length)]


class UserCreateRequestSchema(BaseModel):
    email: Email
    full_name: FullName = ""
    # Excluded from dumps: the idempotency fingerprint is a dump and must not carry the password.
    password: Annotated[Password, Field(exclude=True)]


class UserUpdateRequestSchema(BaseModel):
    """A partial update: only the fields in `update_mask` change."""

    update_mask: Annotated[frozenset[Literal["email", "full_name"]], Field(min_length=1)]
    email: Email | None = None
    full_name: FullName | None = None
    etag: str = ""

    @model_validator(mode="after")
    def _masked_fields_are_given(self) -> Self:
        missing = sorted(field for field in self.update_mask if getattr(self, field) is None)
        if missing:
            raise ValueError(f"update_mask names {', '.join(missing)} but no value was given")
        return self


class UserListRequestSchema(PageRequestSchema):
    active_only: bool = False

    def filters(self) -> dict[str, Any]:
        return {"active_only": self.active_only}


class UserResponseSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: uuid.UUID
    email: str
    full_name: str
    is_active: bool
    is_superuser: bool
    role_names: list[str]
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def etag(self) -> str:
        return etag_of(self.version)


class RoleResponseSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    name: str
    description: str
    permissions: list[str]
