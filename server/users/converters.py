"""proto <-> schema for users and roles; the one place that knows both shapes."""

from typing import Any

from adplane.v1 import user_pb2, user_service_pb2
from server.api_helpers import to_timestamp, validated
from server.users.schemas import (
    RoleResponseSchema,
    UserCreateRequestSchema,
    UserListRequestSchema,
    UserResponseSchema,
    UserUpdateRequestSchema,
)


def user_to_proto(user: UserResponseSchema) -> user_pb2.User:
    return user_pb2.User(
        id=str(user.id),
        email=user.email,
        full_name=user.full_name,
        active=user.is_active,
        superuser=user.is_superuser,
        role_names=user.role_names,
        create_time=to_timestamp(user.created_at),
        update_time=to_timestamp(user.updated_at),
        etag=user.etag,
    )


def role_to_proto(role: RoleResponseSchema) -> user_pb2.Role:
    return user_pb2.Role(name=role.name, description=role.description, permissions=role.permissions)


def create_request_from_proto(request: user_service_pb2.CreateUserRequest) -> UserCreateRequestSchema:
    return validated(
        UserCreateRequestSchema,
        {"email": request.user.email, "full_name": request.user.full_name, "password": request.password},
        fields={"email": "user.email", "full_name": "user.full_name"},
    )


def list_request_from_proto(request: user_service_pb2.ListUsersRequest) -> UserListRequestSchema:
    return validated(
        UserListRequestSchema,
        {"page_size": request.page_size, "page_token": request.page_token, "active_only": request.active_only},
    )


def update_request_from_proto(request: user_service_pb2.UpdateUserRequest) -> UserUpdateRequestSchema:
    data: dict[str, Any] = {"update_mask": list(request.update_mask.paths), "etag": request.user.etag}
    # A masked field is read even when empty: an empty email is then a validation error, not "leave it".
    if "email" in request.update_mask.paths:
        data["email"] = request.user.email
    if "full_name" in request.update_mask.paths:
        data["full_name"] = request.user.full_name
    return validated(
        UserUpdateRequestSchema,
        data,
        fields={
            "email": "user.email",
            "full_name": "user.full_name",
            "etag": "user.etag",
            "update_mask": "update_mask.paths",
        },
    )
