import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr, StringConstraints

from server.users.schemas import UserResponseSchema
from server.workspaces.schemas import MembershipResponseSchema


class LoginRequestSchema(BaseModel):
    # Not validated as an address: a malformed email simply fails to sign in, like a wrong one.
    email: Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=254)]
    # SecretStr: never shown by a repr, a log line or a validation error.
    password: Annotated[SecretStr, Field(min_length=1, max_length=1024)]


class RefreshTokenRequestSchema(BaseModel):
    refresh_token: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]


class TokenPairSchema(BaseModel):
    access_token: str
    access_token_expires_at: dt.datetime
    refresh_token: str
    refresh_token_expires_at: dt.datetime


class CurrentUserSchema(BaseModel):
    user: UserResponseSchema | None
    api_key_id: uuid.UUID | None
    system_permissions: frozenset[str]
    workspaces: list[MembershipResponseSchema]
