"""UserServicer against the real database, called directly (the e2e tests add the network and Envoy)."""

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import field_mask_pb2

from adplane.v1 import user_pb2
from adplane.v1 import user_service_pb2 as pb
from server.auth.principal import Principal, PrincipalKind, set_current_principal
from server.composition import Infrastructure
from server.exceptions import InvalidRequestException
from server.users.api import UserServicer
from server.users.exceptions import UserNotFoundException

# The servicer never touches its context: errors are raised for the error interceptor to map.
CONTEXT: Any = None


@pytest.fixture(autouse=True)
def as_api_key() -> Iterator[None]:
    """The servicer reads the caller (for request_id scoping) as the authorization step left it."""
    set_current_principal(Principal(kind=PrincipalKind.API_KEY, id=uuid.uuid4()))
    yield
    set_current_principal(None)


@pytest.fixture
def servicer(infrastructure: Infrastructure) -> UserServicer:
    return UserServicer(infrastructure.unit_of_work)


async def test_user_lifecycle_through_the_servicer(servicer: UserServicer) -> None:
    created = (
        await servicer.CreateUser(
            pb.CreateUserRequest(
                user=user_pb2.User(email="Ada@Example.com", full_name="Ada", superuser=True),
                password="a long enough password",
                request_id="create-ada",
            ),
            CONTEXT,
        )
    ).user
    assert created.email == "ada@example.com"
    assert created.active
    assert not created.superuser  # output-only: ignored on input

    fetched = (await servicer.GetUser(pb.GetUserRequest(user_id=created.id), CONTEXT)).user
    assert fetched == created

    updated = (
        await servicer.UpdateUser(
            pb.UpdateUserRequest(
                user_id=created.id,
                user=user_pb2.User(full_name="Ada King", etag=created.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["full_name"]),
            ),
            CONTEXT,
        )
    ).user
    assert updated.full_name == "Ada King"
    assert updated.etag != created.etag

    with_roles = (
        await servicer.SetUserRoles(pb.SetUserRolesRequest(user_id=created.id, role_names=["staff"]), CONTEXT)
    ).user
    assert list(with_roles.role_names) == ["staff"]

    deactivated = (await servicer.DeactivateUser(pb.DeactivateUserRequest(user_id=created.id), CONTEXT)).user
    assert not deactivated.active
    assert list(deactivated.role_names) == ["staff"]

    active = await servicer.ListUsers(pb.ListUsersRequest(active_only=True), CONTEXT)
    everyone = await servicer.ListUsers(pb.ListUsersRequest(), CONTEXT)
    assert list(active.users) == []
    assert [u.id for u in everyone.users] == [created.id]
    assert everyone.next_page_token == ""


async def test_list_roles_through_the_servicer(servicer: UserServicer) -> None:
    response = await servicer.ListRoles(pb.ListRolesRequest(), CONTEXT)
    assert [role.name for role in response.roles] == ["administrator", "approver", "staff"]
    assert "users.manage" in response.roles[0].permissions


async def test_malformed_user_id_is_invalid_not_missing(servicer: UserServicer) -> None:
    with pytest.raises(InvalidRequestException) as raised:
        await servicer.GetUser(pb.GetUserRequest(user_id="42"), CONTEXT)
    assert raised.value.violations[0].field == "user_id"
    with pytest.raises(UserNotFoundException):
        await servicer.GetUser(pb.GetUserRequest(user_id="0193a6c0-0000-7000-8000-00000000ffff"), CONTEXT)
