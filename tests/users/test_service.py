"""UserService against the real database."""

import asyncio
import dataclasses
import datetime as dt
import uuid

import pytest
from pydantic import ValidationError

from server.auth.passwords import Passwords
from server.auth.principal import Principal, PrincipalKind
from server.auth.tokens import hash_secret
from server.composition import Infrastructure
from server.exceptions import InvalidRequestException
from server.idempotency.exceptions import RequestIdReusedException
from server.signin.repository import RefreshTokenRepository
from server.users.exceptions import (
    CannotDeactivateSelfException,
    EmailTakenException,
    UnknownRoleException,
    UserEtagMismatchException,
    UserNotFoundException,
)
from server.users.repository import UserRepository
from server.users.schemas import (
    UserCreateRequestSchema,
    UserListRequestSchema,
    UserResponseSchema,
    UserUpdateRequestSchema,
)
from tests.callers import CHEAP_PASSWORDS

PASSWORD = "correct horse battery staple"


async def create(
    infrastructure: Infrastructure,
    email: str,
    *,
    full_name: str = "",
    password: str = PASSWORD,
    request_id: str | None = None,
    passwords: Passwords = CHEAP_PASSWORDS,
) -> UserResponseSchema:
    """A user created through the service; its password hashed cheaply unless `passwords` says how
    (a production-cost hash costs 0.2 s of CPU: tests/callers.py)."""
    infrastructure = dataclasses.replace(infrastructure, passwords=passwords)
    async with infrastructure.unit_of_work() as uow:
        return await uow.users.create_user(
            UserCreateRequestSchema.model_validate({"email": email, "full_name": full_name, "password": password}),
            idempotency_key=request_id,
        )


async def list_all(infrastructure: Infrastructure, *, active_only: bool = False) -> list[UserResponseSchema]:
    async with infrastructure.unit_of_work() as uow:
        page = await uow.users.list_users(UserListRequestSchema(active_only=active_only))
    return page.items


async def set_roles(infrastructure: Infrastructure, user_id: uuid.UUID, names: list[str]) -> UserResponseSchema:
    async with infrastructure.unit_of_work() as uow:
        return await uow.users.set_user_roles(user_id, names)


async def test_create_then_get_returns_the_stored_user(infrastructure: Infrastructure) -> None:
    created = await create(infrastructure, "  Ada.Lovelace@Example.COM ", full_name="  Ada Lovelace  ")
    async with infrastructure.unit_of_work() as uow:
        fetched = await uow.users.get_user(created.id)
    assert fetched == created
    assert fetched.email == "ada.lovelace@example.com"
    assert fetched.full_name == "Ada Lovelace"
    assert fetched.is_active
    assert not fetched.is_superuser
    assert fetched.role_names == []
    assert fetched.etag == 'W/"1"'


async def test_get_unknown_id_is_not_found(infrastructure: Infrastructure) -> None:
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(UserNotFoundException):
            await uow.users.get_user(uuid.uuid4())


async def test_emails_are_unique_ignoring_case(infrastructure: Infrastructure) -> None:
    await create(infrastructure, "grace@example.com")
    with pytest.raises(EmailTakenException) as raised:
        await create(infrastructure, "GRACE@Example.com")
    assert raised.value.reason == "EMAIL_TAKEN"
    assert len(await list_all(infrastructure)) == 1


async def test_password_is_stored_as_an_argon2_hash(infrastructure: Infrastructure) -> None:
    user = await create(infrastructure, "alan@example.com", passwords=infrastructure.passwords)
    async with infrastructure.unit_of_work() as uow:
        row = await UserRepository(uow.session).get(user.id)
    assert row is not None
    assert PASSWORD not in row.password_hash
    assert row.password_hash.startswith("$argon2id$")
    assert not infrastructure.passwords.needs_rehash(row.password_hash)  # the production parameters
    assert await infrastructure.passwords.verify(row.password_hash, PASSWORD)
    assert not await infrastructure.passwords.verify(row.password_hash, PASSWORD + "!")


def test_password_never_shows_in_a_dump_or_repr() -> None:
    data = UserCreateRequestSchema.model_validate({"email": "x@example.com", "password": PASSWORD})
    assert PASSWORD not in data.model_dump_json()
    assert PASSWORD not in repr(data)
    assert data.password.get_secret_value() == PASSWORD


async def test_retry_with_same_request_id_returns_first_result(infrastructure: Infrastructure) -> None:
    first = await create(infrastructure, "edsger@example.com", request_id="req-1")
    again = await create(infrastructure, "Edsger@example.com", request_id="req-1")
    assert again == first
    assert [u.id for u in await list_all(infrastructure)] == [first.id]


async def test_same_request_id_with_other_user_is_rejected(infrastructure: Infrastructure) -> None:
    await create(infrastructure, "barbara@example.com", request_id="req-2")
    with pytest.raises(RequestIdReusedException):
        await create(infrastructure, "liskov@example.com", request_id="req-2")
    with pytest.raises(RequestIdReusedException):
        await create(infrastructure, "barbara@example.com", full_name="Barbara", request_id="req-2")


async def test_same_request_id_with_other_password_is_rejected(infrastructure: Infrastructure) -> None:
    await create(infrastructure, "ken@example.com", request_id="req-3")
    with pytest.raises(RequestIdReusedException):
        await create(infrastructure, "ken@example.com", password="another password entirely", request_id="req-3")


async def test_concurrent_retries_create_one_user(infrastructure: Infrastructure) -> None:
    results = await asyncio.gather(
        *(create(infrastructure, "dennis@example.com", request_id="req-4") for _ in range(4))
    )
    assert len({r.id for r in results}) == 1
    assert len(await list_all(infrastructure)) == 1


async def test_list_pages_through_every_user_in_creation_order(infrastructure: Infrastructure) -> None:
    created = [await create(infrastructure, f"user{i}@example.com") for i in range(7)]
    seen: list[uuid.UUID] = []
    token = ""
    while True:
        async with infrastructure.unit_of_work() as uow:
            page = await uow.users.list_users(UserListRequestSchema(page_size=3, page_token=token))
        assert len(page.items) <= 3
        seen.extend(u.id for u in page.items)
        token = page.next_page_token
        if not token:
            break
    assert seen == [u.id for u in created]


async def test_list_active_only_and_token_is_bound_to_the_filter(infrastructure: Infrastructure) -> None:
    users = [await create(infrastructure, f"member{i}@example.com") for i in range(3)]
    async with infrastructure.unit_of_work() as uow:
        await uow.users.deactivate_user(users[1].id)
    assert [u.id for u in await list_all(infrastructure, active_only=True)] == [users[0].id, users[2].id]
    assert [u.id for u in await list_all(infrastructure)] == [u.id for u in users]
    async with infrastructure.unit_of_work() as uow:
        first = await uow.users.list_users(UserListRequestSchema(active_only=True, page_size=1))
        assert first.next_page_token
        with pytest.raises(InvalidRequestException) as raised:
            await uow.users.list_users(UserListRequestSchema(active_only=False, page_token=first.next_page_token))
    assert raised.value.violations[0].field == "page_token"


async def test_tampered_page_token_is_rejected(infrastructure: Infrastructure) -> None:
    for i in range(2):
        await create(infrastructure, f"tamper{i}@example.com")
    async with infrastructure.unit_of_work() as uow:
        page = await uow.users.list_users(UserListRequestSchema(page_size=1))
        forged = page.next_page_token[:-2] + ("AA" if not page.next_page_token.endswith("AA") else "BB")
        with pytest.raises(InvalidRequestException) as raised:
            await uow.users.list_users(UserListRequestSchema(page_size=1, page_token=forged))
    assert raised.value.violations[0].reason == "INVALID_PAGE_TOKEN"


async def test_list_returns_each_users_roles(infrastructure: Infrastructure) -> None:
    admin = await create(infrastructure, "root@example.com")
    staff = await create(infrastructure, "staff@example.com")
    plain = await create(infrastructure, "plain@example.com")
    await set_roles(infrastructure, admin.id, ["staff", "administrator"])
    await set_roles(infrastructure, staff.id, ["staff"])
    by_id = {u.id: u.role_names for u in await list_all(infrastructure)}
    assert by_id == {admin.id: ["administrator", "staff"], staff.id: ["staff"], plain.id: []}


async def test_update_applies_only_masked_fields_and_bumps_etag(infrastructure: Infrastructure) -> None:
    user = await create(infrastructure, "linus@example.com", full_name="Linus")
    async with infrastructure.unit_of_work() as uow:
        updated = await uow.users.update_user(
            user.id,
            UserUpdateRequestSchema(
                update_mask=frozenset({"full_name"}),
                full_name=" Linus Torvalds ",
                email="other@example.com",
                etag=user.etag,
            ),
        )
    assert updated.full_name == "Linus Torvalds"
    assert updated.email == "linus@example.com"
    assert updated.version == user.version + 1
    assert updated.etag != user.etag
    assert updated.updated_at > user.updated_at
    async with infrastructure.unit_of_work() as uow:
        assert await uow.users.get_user(user.id) == updated


async def test_update_email_is_lower_cased_and_must_be_free(infrastructure: Infrastructure) -> None:
    await create(infrastructure, "taken@example.com")
    user = await create(infrastructure, "guido@example.com")
    async with infrastructure.unit_of_work() as uow:
        updated = await uow.users.update_user(
            user.id, UserUpdateRequestSchema(update_mask=frozenset({"email"}), email="Guido@Python.org")
        )
    assert updated.email == "guido@python.org"
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(EmailTakenException):
            await uow.users.update_user(
                user.id, UserUpdateRequestSchema(update_mask=frozenset({"email"}), email="TAKEN@example.com")
            )
    async with infrastructure.unit_of_work() as uow:
        assert (await uow.users.get_user(user.id)).email == "guido@python.org"


async def test_update_keeps_the_users_roles(infrastructure: Infrastructure) -> None:
    user = await create(infrastructure, "margaret@example.com")
    with_roles = await set_roles(infrastructure, user.id, ["staff"])
    async with infrastructure.unit_of_work() as uow:
        updated = await uow.users.update_user(
            user.id,
            UserUpdateRequestSchema(update_mask=frozenset({"full_name"}), full_name="Margaret", etag=with_roles.etag),
        )
    assert updated.role_names == ["staff"]


async def test_update_with_stale_etag_is_a_conflict_and_changes_nothing(infrastructure: Infrastructure) -> None:
    user = await create(infrastructure, "donald@example.com")
    change = UserUpdateRequestSchema(update_mask=frozenset({"full_name"}), full_name="Donald", etag=user.etag)
    async with infrastructure.unit_of_work() as uow:
        await uow.users.update_user(user.id, change)
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(UserEtagMismatchException):
            await uow.users.update_user(user.id, change.model_copy(update={"full_name": "Lost update"}))
        with pytest.raises(UserEtagMismatchException):
            await uow.users.update_user(user.id, change.model_copy(update={"etag": "not-an-etag"}))
    async with infrastructure.unit_of_work() as uow:
        assert (await uow.users.get_user(user.id)).full_name == "Donald"


async def test_update_unknown_user_is_not_found(infrastructure: Infrastructure) -> None:
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(UserNotFoundException):
            await uow.users.update_user(
                uuid.uuid4(), UserUpdateRequestSchema(update_mask=frozenset({"full_name"}), full_name="Nobody")
            )


async def test_deactivate_stops_the_user_and_revokes_their_tokens(infrastructure: Infrastructure) -> None:
    user = await create(infrastructure, "mallory@example.com")
    bystander = await create(infrastructure, "alice@example.com")
    expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    async with infrastructure.unit_of_work() as uow:
        tokens = RefreshTokenRepository(uow.session)
        await tokens.add(
            user_id=user.id, family_id=uuid.uuid4(), token_hash=hash_secret("mallory"), expires_at=expires_at
        )
        await tokens.add(
            user_id=bystander.id, family_id=uuid.uuid4(), token_hash=hash_secret("alice"), expires_at=expires_at
        )
    async with infrastructure.unit_of_work() as uow:
        deactivated = await uow.users.deactivate_user(user.id)
    assert not deactivated.is_active
    assert deactivated.version == user.version + 1
    async with infrastructure.unit_of_work() as uow:
        tokens = RefreshTokenRepository(uow.session)
        revoked = await tokens.find(token_hash=hash_secret("mallory"))
        untouched = await tokens.find(token_hash=hash_secret("alice"))
        assert await uow.users.get_user(user.id) == deactivated
    assert revoked is not None
    assert revoked.revoked_at is not None
    assert untouched is not None
    assert untouched.revoked_at is None


async def test_deactivating_an_inactive_user_returns_it_unchanged(infrastructure: Infrastructure) -> None:
    user = await create(infrastructure, "eve@example.com")
    async with infrastructure.unit_of_work() as uow:
        first = await uow.users.deactivate_user(user.id)
    async with infrastructure.unit_of_work() as uow:
        again = await uow.users.deactivate_user(user.id)
    assert again == first


async def test_nobody_deactivates_themselves(infrastructure: Infrastructure) -> None:
    admin = await create(infrastructure, "root@example.com")
    other = await create(infrastructure, "other@example.com")
    actor = Principal(kind=PrincipalKind.USER, id=admin.id, superuser=True)
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(CannotDeactivateSelfException):
            await uow.users.deactivate_user(admin.id, actor=actor)
    async with infrastructure.unit_of_work() as uow:
        assert (await uow.users.get_user(admin.id)).is_active
        assert not (await uow.users.deactivate_user(other.id, actor=actor)).is_active


async def test_deactivate_unknown_user_is_not_found(infrastructure: Infrastructure) -> None:
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(UserNotFoundException):
            await uow.users.deactivate_user(uuid.uuid4())


async def test_set_roles_replaces_the_roles_and_collapses_duplicates(infrastructure: Infrastructure) -> None:
    user = await create(infrastructure, "barbara.liskov@example.com")
    both = await set_roles(infrastructure, user.id, ["staff", "administrator", "staff"])
    assert both.role_names == ["administrator", "staff"]
    assert both.version == user.version + 1
    only_staff = await set_roles(infrastructure, user.id, ["staff"])
    assert only_staff.role_names == ["staff"]
    none = await set_roles(infrastructure, user.id, [])
    assert none.role_names == []
    assert none.version == user.version + 3
    async with infrastructure.unit_of_work() as uow:
        assert await uow.users.get_user(user.id) == none


async def test_set_unknown_roles_is_rejected_naming_them(infrastructure: Infrastructure) -> None:
    user = await create(infrastructure, "frances@example.com")
    await set_roles(infrastructure, user.id, ["staff"])
    with pytest.raises(UnknownRoleException) as raised:
        await set_roles(infrastructure, user.id, ["administrator", "wizard", "overlord"])
    assert raised.value.reason == "UNKNOWN_ROLE"
    assert raised.value.role_names == ["overlord", "wizard"]
    [violation] = raised.value.violations
    assert violation.field == "role_names"
    assert "wizard" in violation.description
    assert "overlord" in violation.description
    assert "administrator" not in violation.description
    async with infrastructure.unit_of_work() as uow:
        assert (await uow.users.get_user(user.id)).role_names == ["staff"]


async def test_set_roles_of_unknown_user_is_not_found(infrastructure: Infrastructure) -> None:
    with pytest.raises(UserNotFoundException):
        await set_roles(infrastructure, uuid.uuid4(), ["staff"])


async def test_list_roles_returns_the_seeded_system_roles(infrastructure: Infrastructure) -> None:
    async with infrastructure.unit_of_work() as uow:
        roles = await uow.users.list_roles()
    assert [role.name for role in roles] == ["administrator", "approver", "staff"]
    administrator, approver, staff = roles
    assert "requests.approve" in approver.permissions
    assert "requests.approve" not in staff.permissions
    assert {"users.manage", "users.read", "workspaces.manage"} <= set(administrator.permissions)
    assert "users.read" in staff.permissions
    assert "users.manage" not in staff.permissions
    assert all(role.description for role in roles)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"email": "not-an-email", "password": PASSWORD}, id="invalid email"),
        pytest.param({"email": "a" * 250 + "@example.com", "password": PASSWORD}, id="email too long"),
        pytest.param({"email": "a@example.com", "password": "x" * 11}, id="password too short"),
        pytest.param({"email": "a@example.com", "password": "x" * 1025}, id="password too long"),
        pytest.param({"email": "a@example.com", "password": PASSWORD, "full_name": "x" * 201}, id="name too long"),
        pytest.param({"email": "a@example.com", "password": PASSWORD, "full_name": "Bad\nName"}, id="newline"),
        pytest.param({"email": "a@example.com", "password": PASSWORD, "full_name": "evil\u202etxt"}, id="bidi"),
    ],
)
def test_create_request_rejects_invalid_input(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        UserCreateRequestSchema.model_validate(data)


def test_create_request_accepts_the_limits() -> None:
    data = UserCreateRequestSchema.model_validate(
        {"email": "a@example.com", "password": "x" * 12, "full_name": "x" * 200}
    )
    assert len(data.full_name) == 200
    assert UserCreateRequestSchema.model_validate({"email": "b@example.com", "password": "y" * 1024})


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"update_mask": []}, id="empty mask"),
        pytest.param({"update_mask": ["is_superuser"]}, id="unknown path"),
        pytest.param({"update_mask": ["email"]}, id="masked field without value"),
        pytest.param({"update_mask": ["email"], "email": ""}, id="empty email"),
    ],
)
def test_update_request_rejects_invalid_input(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        UserUpdateRequestSchema.model_validate(data)


def test_page_size_is_defaulted_coerced_and_never_negative() -> None:
    assert UserListRequestSchema().limit == 50
    assert UserListRequestSchema(page_size=10_000).limit == 500
    with pytest.raises(ValidationError):
        UserListRequestSchema(page_size=-1)
