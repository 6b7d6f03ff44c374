"""ApiKeyService against the real database."""

import asyncio
import uuid

import pytest
from pydantic import ValidationError
from sqlalchemy import select, text

from server.api_keys.exceptions import ApiKeyNotFoundException, UnknownRoleException
from server.api_keys.models import ApiKey
from server.api_keys.schemas import (
    ApiKeyCreatedSchema,
    ApiKeyCreateRequestSchema,
    ApiKeyListRequestSchema,
    ApiKeyResponseSchema,
)
from server.auth.api_key_format import new_key, split_key
from server.auth.principal import Principal, PrincipalKind
from server.auth.tokens import hash_secret
from server.composition import Infrastructure
from server.exceptions import InvalidRequestException
from server.idempotency.exceptions import RequestIdReusedException
from server.users.models import User


@pytest.fixture
async def admin(infrastructure: Infrastructure) -> Principal:
    async with infrastructure.unit_of_work() as uow:
        user = User(email="admin@example.com", full_name="Admin", password_hash="not-a-real-hash")
        uow.session.add(user)
        await uow.session.flush()
    return Principal(kind=PrincipalKind.USER, id=user.id)


async def create(
    infrastructure: Infrastructure,
    actor: Principal,
    name: str,
    *,
    role_names: list[str] | None = None,
    request_id: str | None = None,
) -> ApiKeyCreatedSchema:
    async with infrastructure.unit_of_work() as uow:
        return await uow.api_keys.create_api_key(
            ApiKeyCreateRequestSchema(name=name, role_names=role_names or []), actor=actor, idempotency_key=request_id
        )


async def list_keys(infrastructure: Infrastructure, **query: object) -> list[ApiKeyResponseSchema]:
    async with infrastructure.unit_of_work() as uow:
        page = await uow.api_keys.list_api_keys(ApiKeyListRequestSchema.model_validate(query))
    return page.items


async def revoke(infrastructure: Infrastructure, api_key_id: uuid.UUID) -> ApiKeyResponseSchema:
    async with infrastructure.unit_of_work() as uow:
        return await uow.api_keys.revoke_api_key(api_key_id)


async def test_create_returns_a_secret_the_database_keeps_only_hashed(
    infrastructure: Infrastructure, admin: Principal
) -> None:
    created = await create(infrastructure, admin, "  Billing sync  ", role_names=["staff"])
    secret = created.secret
    assert secret is not None
    assert secret.startswith("adp_")
    assert created.api_key.prefix == split_key(secret)
    assert created.api_key.name == "Billing sync"
    assert created.api_key.role_names == ["staff"]
    assert created.api_key.created_by_user_id == admin.id
    assert created.api_key.revoked_at is None
    assert secret not in repr(created)

    async with infrastructure.unit_of_work() as uow:
        row = (await uow.session.execute(text("SELECT * FROM api_keys"))).mappings().one()
    assert row["secret_hash"] == hash_secret(secret)
    assert row["prefix"] == created.api_key.prefix
    assert all(secret not in str(value) for value in row.values())


async def test_create_attaches_roles_and_collapses_duplicates(infrastructure: Infrastructure, admin: Principal) -> None:
    created = await create(infrastructure, admin, "Ops", role_names=["staff", "administrator", "staff"])
    assert created.api_key.role_names == ["administrator", "staff"]
    async with infrastructure.unit_of_work() as uow:
        stored = await uow.session.scalar(select(ApiKey).where(ApiKey.id == created.api_key.id))
        assert stored is not None
        roles = await uow.roles.get_by_ids(stored.role_ids)
        assert sorted(role.name for role in roles) == ["administrator", "staff"]


async def test_create_without_roles_holds_none(infrastructure: Infrastructure, admin: Principal) -> None:
    created = await create(infrastructure, admin, "Heartbeat")
    assert created.api_key.role_names == []


async def test_key_created_by_a_key_has_no_creating_user(infrastructure: Infrastructure) -> None:
    created = await create(infrastructure, Principal(kind=PrincipalKind.API_KEY, id=uuid.uuid4()), "Child")
    assert created.api_key.created_by_user_id is None


async def test_unknown_role_is_rejected_naming_it(infrastructure: Infrastructure, admin: Principal) -> None:
    with pytest.raises(UnknownRoleException) as raised:
        await create(infrastructure, admin, "Bad", role_names=["staff", "root", "wizard"])
    assert raised.value.reason == "UNKNOWN_ROLE"
    [violation] = raised.value.violations
    assert violation.field == "api_key.role_names"
    assert violation.reason == "UNKNOWN_ROLE"
    assert "'root'" in violation.description
    assert "'wizard'" in violation.description
    assert "staff" not in violation.description
    assert await list_keys(infrastructure, include_revoked=True) == []


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"name": "   "}, "at least 1 character"),
        ({"name": "x" * 101}, "at most 100 characters"),
        ({"name": "tab\there"}, "control characters"),
        ({"name": "ok", "role_names": [f"role{i}" for i in range(21)]}, "at most 20 roles"),
        ({"name": "ok", "role_names": [""]}, "at least 1 character"),
    ],
)
def test_create_request_is_validated(fields: dict[str, object], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        ApiKeyCreateRequestSchema.model_validate(fields)


def test_twenty_roles_named_twice_are_twenty_roles() -> None:
    names = [f"role{i:02d}" for i in range(20)]
    assert ApiKeyCreateRequestSchema(name="ok", role_names=names + names).role_names == names


async def test_retry_with_same_request_id_returns_the_key_without_its_secret(
    infrastructure: Infrastructure, admin: Principal
) -> None:
    first = await create(infrastructure, admin, "CI", role_names=["staff"], request_id="req-1")
    again = await create(infrastructure, admin, "CI", role_names=["staff"], request_id="req-1")
    assert first.secret is not None
    assert again.secret is None
    assert again.api_key == first.api_key
    assert [k.id for k in await list_keys(infrastructure)] == [first.api_key.id]


async def test_role_order_does_not_make_a_retry_another_request(
    infrastructure: Infrastructure, admin: Principal
) -> None:
    first = await create(infrastructure, admin, "CI", role_names=["staff", "administrator"], request_id="req-o")
    again = await create(infrastructure, admin, "CI", role_names=["administrator", "staff"], request_id="req-o")
    assert again.api_key.id == first.api_key.id


async def test_same_request_id_with_other_payload_is_rejected(infrastructure: Infrastructure, admin: Principal) -> None:
    await create(infrastructure, admin, "CI", request_id="req-2")
    with pytest.raises(RequestIdReusedException):
        await create(infrastructure, admin, "CI", role_names=["staff"], request_id="req-2")


async def test_concurrent_retries_create_one_key(infrastructure: Infrastructure, admin: Principal) -> None:
    results = await asyncio.gather(*(create(infrastructure, admin, "Race", request_id="req-3") for _ in range(5)))
    assert len({r.api_key.id for r in results}) == 1
    assert sum(r.secret is not None for r in results) == 1
    assert len(await list_keys(infrastructure)) == 1


async def test_list_hides_revoked_keys_unless_asked(infrastructure: Infrastructure, admin: Principal) -> None:
    kept = await create(infrastructure, admin, "Kept")
    gone = await create(infrastructure, admin, "Gone", role_names=["staff"])
    await revoke(infrastructure, gone.api_key.id)

    assert [k.id for k in await list_keys(infrastructure)] == [kept.api_key.id]
    everything = await list_keys(infrastructure, include_revoked=True)
    assert [k.id for k in everything] == [kept.api_key.id, gone.api_key.id]
    assert everything[1].revoked_at is not None
    assert everything[1].role_names == ["staff"]


async def test_list_pages_through_every_key_in_creation_order(infrastructure: Infrastructure, admin: Principal) -> None:
    created = [await create(infrastructure, admin, f"Key {i}", role_names=["staff"]) for i in range(7)]
    seen: list[uuid.UUID] = []
    token = ""
    while True:
        async with infrastructure.unit_of_work() as uow:
            page = await uow.api_keys.list_api_keys(ApiKeyListRequestSchema(page_size=3, page_token=token))
        assert len(page.items) <= 3
        assert all(k.role_names == ["staff"] for k in page.items)
        seen.extend(k.id for k in page.items)
        token = page.next_page_token
        if not token:
            break
    assert seen == [k.api_key.id for k in created]


async def test_page_token_is_bound_to_include_revoked(infrastructure: Infrastructure, admin: Principal) -> None:
    for i in range(2):
        await create(infrastructure, admin, f"Key {i}")
    async with infrastructure.unit_of_work() as uow:
        page = await uow.api_keys.list_api_keys(ApiKeyListRequestSchema(page_size=1))
    assert page.next_page_token
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(InvalidRequestException) as raised:
            await uow.api_keys.list_api_keys(
                ApiKeyListRequestSchema(page_size=1, page_token=page.next_page_token, include_revoked=True)
            )
    assert raised.value.violations[0].field == "page_token"


async def test_revoke_sets_revoked_at_and_is_idempotent(infrastructure: Infrastructure, admin: Principal) -> None:
    created = await create(infrastructure, admin, "Old", role_names=["administrator"])
    revoked = await revoke(infrastructure, created.api_key.id)
    assert revoked.revoked_at is not None
    assert revoked.revoked_at >= created.api_key.created_at
    assert revoked.role_names == ["administrator"]
    assert revoked.model_dump(exclude={"revoked_at"}) == created.api_key.model_dump(exclude={"revoked_at"})

    again = await revoke(infrastructure, created.api_key.id)
    assert again == revoked


async def test_revoke_leaves_other_keys_working(infrastructure: Infrastructure, admin: Principal) -> None:
    first = await create(infrastructure, admin, "First")
    second = await create(infrastructure, admin, "Second")
    await revoke(infrastructure, first.api_key.id)
    assert [k.id for k in await list_keys(infrastructure)] == [second.api_key.id]


async def test_revoke_unknown_key_is_not_found(infrastructure: Infrastructure) -> None:
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(ApiKeyNotFoundException) as raised:
            await uow.api_keys.revoke_api_key(missing := uuid.uuid4())
    assert raised.value.metadata == {"api_key_id": str(missing)}


async def test_replay_of_a_revoked_key_shows_it_revoked(infrastructure: Infrastructure, admin: Principal) -> None:
    first = await create(infrastructure, admin, "CI", request_id="req-4")
    await revoke(infrastructure, first.api_key.id)
    again = await create(infrastructure, admin, "CI", request_id="req-4")
    assert again.api_key.id == first.api_key.id
    assert again.api_key.revoked_at is not None
    assert again.secret is None


async def test_a_prefix_collision_draws_another_key(
    infrastructure: Infrastructure, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = await create(infrastructure, admin, "Taken")
    fresh = new_key()
    draws = iter([("adp_collides", taken.api_key.prefix, hash_secret("adp_collides")), fresh])
    monkeypatch.setattr("server.api_keys.service.new_key", lambda: next(draws))

    created = await create(infrastructure, admin, "Second", role_names=["staff"], request_id="req-5")
    assert created.secret == fresh[0]
    assert created.api_key.prefix == fresh[1]
    assert created.api_key.role_names == ["staff"]
    assert [k.name for k in await list_keys(infrastructure)] == ["Taken", "Second"]
