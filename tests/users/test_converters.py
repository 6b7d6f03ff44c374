"""proto <-> schema for users: values map both ways and violations name request paths."""

import datetime as dt
import uuid

import pytest
from google.protobuf import field_mask_pb2

from adplane.v1 import user_pb2, user_service_pb2
from server.exceptions import InvalidRequestException
from server.users import converters
from server.users.schemas import RoleResponseSchema, UserResponseSchema


def test_user_to_proto_maps_every_field() -> None:
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    user = UserResponseSchema(
        id=uuid.uuid4(),
        email="ada@example.com",
        full_name="Ada",
        is_active=False,
        is_superuser=True,
        role_names=["administrator", "staff"],
        version=7,
        created_at=now,
        updated_at=now + dt.timedelta(seconds=1),
    )
    message = converters.user_to_proto(user)
    assert message.id == str(user.id)
    assert message.email == "ada@example.com"
    assert message.full_name == "Ada"
    assert message.active is False
    assert message.superuser is True
    assert list(message.role_names) == ["administrator", "staff"]
    assert message.create_time.ToDatetime(dt.UTC) == now
    assert message.update_time.ToDatetime(dt.UTC) == now + dt.timedelta(seconds=1)
    assert message.etag == 'W/"7"'


def test_role_to_proto() -> None:
    role = RoleResponseSchema(name="staff", description="Staff", permissions=["users.read"])
    assert converters.role_to_proto(role) == user_pb2.Role(
        name="staff", description="Staff", permissions=["users.read"]
    )


def test_create_request_reads_user_and_password() -> None:
    request = user_service_pb2.CreateUserRequest(
        user=user_pb2.User(email="Ada@Example.com", full_name=" Ada ", active=False, superuser=True),
        password="a long enough password",
    )
    data = converters.create_request_from_proto(request)
    assert data.email == "ada@example.com"
    assert data.full_name == "Ada"
    assert data.password.get_secret_value() == "a long enough password"


def test_create_request_violations_name_request_paths() -> None:
    request = user_service_pb2.CreateUserRequest(user=user_pb2.User(email="nope", full_name="a\tb"), password="short")
    with pytest.raises(InvalidRequestException) as raised:
        converters.create_request_from_proto(request)
    assert {v.field for v in raised.value.violations} == {"user.email", "user.full_name", "password"}
    assert "short" not in raised.value.message


def test_update_request_reads_only_masked_fields() -> None:
    request = user_service_pb2.UpdateUserRequest(
        user_id=str(uuid.uuid4()),
        user=user_pb2.User(email="new@example.com", full_name="New", etag='W/"3"'),
        update_mask=field_mask_pb2.FieldMask(paths=["full_name"]),
    )
    data = converters.update_request_from_proto(request)
    assert data.update_mask == {"full_name"}
    assert data.full_name == "New"
    assert data.email is None
    assert data.etag == 'W/"3"'


@pytest.mark.parametrize(
    ("paths", "email", "field"),
    [
        pytest.param([], "", "update_mask.paths", id="empty mask"),
        pytest.param(["superuser"], "", "update_mask.paths", id="unknown path"),
        pytest.param(["email"], "", "user.email", id="masked empty email"),
    ],
)
def test_update_request_violations_name_request_paths(paths: list[str], email: str, field: str) -> None:
    request = user_service_pb2.UpdateUserRequest(
        user=user_pb2.User(email=email), update_mask=field_mask_pb2.FieldMask(paths=paths)
    )
    with pytest.raises(InvalidRequestException) as raised:
        converters.update_request_from_proto(request)
    assert [v.field.split("[")[0] for v in raised.value.violations] == [field]


def test_list_request_rejects_a_negative_page_size() -> None:
    with pytest.raises(InvalidRequestException) as raised:
        converters.list_request_from_proto(user_service_pb2.ListUsersRequest(page_size=-1))
    assert raised.value.violations[0].field == "page_size"
    query = converters.list_request_from_proto(user_service_pb2.ListUsersRequest(active_only=True))
    assert query.active_only
