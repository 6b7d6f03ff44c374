"""The audit trail: one entry per mutation in the mutation's transaction, append-only, and its listing."""

import asyncio
import datetime as dt
import itertools
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
import sqlalchemy.exc
import structlog
from sqlalchemy import event, select, text

from adplane.v1 import audit_log_service_pb2 as pb
from server.api_keys.schemas import ApiKeyCreateRequestSchema
from server.audit_logs.api import AuditLogServicer, Context
from server.audit_logs.converters import list_request_from_proto
from server.audit_logs.models import AuditLog
from server.audit_logs.repository import AuditLogRepository
from server.audit_logs.schemas import AuditLogListRequestSchema, AuditLogResponseSchema
from server.audit_logs.service import AuditEntry
from server.auth.permissions import MEMBERS_MANAGE
from server.auth.principal import Principal, PrincipalKind, set_current_principal
from server.auth.roles import WorkspaceRole
from server.composition import Infrastructure
from server.exceptions import ConflictException, InvalidRequestException
from server.users.models import User
from server.users.schemas import UserCreateRequestSchema, UserResponseSchema, UserUpdateRequestSchema
from server.workspaces.exceptions import WorkspaceEtagMismatchException
from server.workspaces.schemas import (
    MemberAddRequestSchema,
    MemberUpdateRequestSchema,
    WorkspaceCreateRequestSchema,
    WorkspaceResponseSchema,
    WorkspaceUpdateRequestSchema,
)

PASSWORD = "correct horse battery staple"
# The servicer never touches its context: errors are raised for the interceptor to map.
NO_CONTEXT = cast(Context, None)


# --- helpers -----------------------------------------------------------------------------------


@contextmanager
def acting_as(principal: Principal | None) -> Iterator[Principal | None]:
    """The caller the unit of work attributes its audit entries to, as the interceptor sets it."""
    set_current_principal(principal)
    try:
        yield principal
    finally:
        set_current_principal(None)


def staff(user_id: uuid.UUID | None = None) -> Principal:
    """A signed-in member of staff allowed to manage members (so owner rules never get in the way)."""
    return Principal(
        kind=PrincipalKind.USER, id=user_id or uuid.uuid4(), system_permissions=frozenset({MEMBERS_MANAGE})
    )


def api_key() -> Principal:
    return Principal(kind=PrincipalKind.API_KEY, id=uuid.uuid4())


async def entries(infrastructure: Infrastructure) -> list[AuditLogResponseSchema]:
    """Every audit entry, oldest first."""
    async with infrastructure.unit_of_work() as uow:
        rows = await uow.session.scalars(select(AuditLog).order_by(AuditLog.id))
        return [AuditLogResponseSchema.model_validate(row) for row in rows]


class Trail:
    """Entries written since the last call to `new()`."""

    def __init__(self, infrastructure: Infrastructure) -> None:
        self._infrastructure = infrastructure
        self._seen = 0

    async def new(self) -> list[AuditLogResponseSchema]:
        everything = await entries(self._infrastructure)
        fresh = everything[self._seen :]
        self._seen = len(everything)
        return fresh

    async def one(self) -> AuditLogResponseSchema:
        fresh = await self.new()
        assert len(fresh) == 1, fresh
        return fresh[0]


@pytest.fixture
async def trail(infrastructure: Infrastructure) -> Trail:
    return Trail(infrastructure)


async def seed_user(infrastructure: Infrastructure, *, active: bool = True) -> uuid.UUID:
    """A user row written through the ORM, so it leaves no audit entry of its own."""
    async with infrastructure.unit_of_work() as uow:
        user = User(
            email=f"user-{uuid.uuid4().hex[:10]}@example.com",
            full_name="Seeded",
            password_hash="not-a-real-hash",
            is_active=active,
        )
        uow.session.add(user)
        await uow.session.flush()
    return user.id


async def create_workspace(
    infrastructure: Infrastructure, name: str, *, actor: Principal | None = None, request_id: str | None = None
) -> WorkspaceResponseSchema:
    with acting_as(actor):
        async with infrastructure.unit_of_work() as uow:
            return await uow.workspaces.create_workspace(
                WorkspaceCreateRequestSchema(name=name), actor=actor, idempotency_key=request_id
            )


def dumped(schema: Any) -> dict[str, Any]:
    result: dict[str, Any] = schema.model_dump(mode="json")
    return result


def assert_actor(entry: AuditLogResponseSchema, principal: Principal | None) -> None:
    if principal is None:
        assert (entry.actor_type, entry.actor_id) == (None, None)
    else:
        assert (entry.actor_type, entry.actor_id) == (principal.kind.value, principal.id)


# --- workspaces ----------------------------------------------------------------------------------


async def test_creating_a_workspace_audits_it_and_its_first_owner(infrastructure: Infrastructure, trail: Trail) -> None:
    creator = staff(await seed_user(infrastructure))
    workspace = await create_workspace(infrastructure, "Acme", actor=creator)

    created, owner = await trail.new()
    assert created.entity_type == "workspace"
    assert (created.entity_id, created.workspace_id) == (workspace.id, workspace.id)
    assert created.action == "create"
    assert created.before is None
    assert created.after == dumped(workspace)
    assert_actor(created, creator)

    assert owner.entity_type == "workspace_member"
    assert (owner.entity_id, owner.workspace_id) == (creator.id, workspace.id)
    assert owner.action == "create"
    assert owner.before is None
    assert owner.after is not None
    assert (owner.after["user_id"], owner.after["role"]) == (str(creator.id), "owner")
    assert_actor(owner, creator)


async def test_a_workspace_created_by_an_api_key_has_no_owner_entry(
    infrastructure: Infrastructure, trail: Trail
) -> None:
    key = api_key()
    workspace = await create_workspace(infrastructure, "Globex", actor=key)
    entry = await trail.one()
    assert (entry.entity_type, entry.entity_id, entry.action) == ("workspace", workspace.id, "create")
    assert (entry.actor_type, entry.actor_id) == ("api_key", key.id)


async def test_a_replayed_create_writes_no_second_entry(infrastructure: Infrastructure, trail: Trail) -> None:
    creator = staff(await seed_user(infrastructure))
    first = await create_workspace(infrastructure, "Initech", actor=creator, request_id="create-initech")
    assert len(await trail.new()) == 2
    again = await create_workspace(infrastructure, "Initech", actor=creator, request_id="create-initech")
    assert again.id == first.id
    assert await trail.new() == []


async def test_update_workspace_records_before_and_after(infrastructure: Infrastructure, trail: Trail) -> None:
    workspace = await create_workspace(infrastructure, "Umbrella")
    await trail.new()
    editor = staff()
    with acting_as(editor):
        async with infrastructure.unit_of_work() as uow:
            updated = await uow.workspaces.update_workspace(
                workspace.id,
                WorkspaceUpdateRequestSchema(
                    update_mask=frozenset({"name"}), name="Umbrella Corp", etag=workspace.etag
                ),
            )
    entry = await trail.one()
    assert (entry.entity_type, entry.entity_id, entry.workspace_id) == ("workspace", workspace.id, workspace.id)
    assert entry.action == "update"
    assert entry.before == dumped(workspace)
    assert entry.after == dumped(updated)
    assert entry.after is not None
    assert entry.after["name"] == "Umbrella Corp"
    assert_actor(entry, editor)


async def test_concurrent_updates_chain_their_snapshots(infrastructure: Infrastructure, trail: Trail) -> None:
    """Each entry's `before` is the state its update started from: the previous entry's `after`."""
    workspace = await create_workspace(infrastructure, "Cyberdyne")
    await trail.new()

    async def rename(name: str) -> None:
        async with infrastructure.unit_of_work() as uow:
            await uow.workspaces.update_workspace(
                workspace.id, WorkspaceUpdateRequestSchema(update_mask=frozenset({"name"}), name=name)
            )

    with acting_as(staff()):
        await asyncio.gather(*(rename(f"Cyberdyne {n}") for n in range(4)))
    updates = await trail.new()
    assert len(updates) == 4
    assert updates[0].before == dumped(workspace)
    for earlier, later in itertools.pairwise(updates):
        assert later.before == earlier.after
    assert [entry.after["version"] for entry in updates if entry.after] == [2, 3, 4, 5]


async def test_delete_workspace_is_audited_once(infrastructure: Infrastructure, trail: Trail) -> None:
    workspace = await create_workspace(infrastructure, "Hooli")
    await trail.new()
    with acting_as(staff()):
        async with infrastructure.unit_of_work() as uow:
            archived = await uow.workspaces.delete_workspace(workspace.id)
        entry = await trail.one()
        assert (entry.entity_type, entry.entity_id, entry.action) == ("workspace", workspace.id, "delete")
        assert entry.before == dumped(workspace)
        assert entry.after == dumped(archived)
        assert entry.after is not None
        assert entry.after["status"] == "archived"

        # Archiving an archived workspace changes nothing, so it records nothing.
        async with infrastructure.unit_of_work() as uow:
            again = await uow.workspaces.delete_workspace(workspace.id)
    assert again == archived
    assert await trail.new() == []


async def test_member_changes_are_audited_against_the_workspace(infrastructure: Infrastructure, trail: Trail) -> None:
    workspace = await create_workspace(infrastructure, "Stark")
    user_id = await seed_user(infrastructure)
    await trail.new()
    manager = staff()
    with acting_as(manager):
        async with infrastructure.unit_of_work() as uow:
            added = await uow.workspaces.add_member(
                workspace.id, MemberAddRequestSchema(user_id=user_id, role=WorkspaceRole.VIEWER), actor=manager
            )
        entry = await trail.one()
        assert (entry.entity_type, entry.entity_id, entry.workspace_id) == ("workspace_member", user_id, workspace.id)
        assert (entry.action, entry.before, entry.after) == ("create", None, dumped(added))
        assert_actor(entry, manager)

        async with infrastructure.unit_of_work() as uow:
            promoted = await uow.workspaces.update_member(
                workspace.id, user_id, MemberUpdateRequestSchema(role=WorkspaceRole.ADMIN), actor=manager
            )
        entry = await trail.one()
        assert (entry.entity_type, entry.entity_id, entry.workspace_id) == ("workspace_member", user_id, workspace.id)
        assert entry.action == "update"
        assert entry.before == dumped(added)
        assert entry.after == dumped(promoted)
        assert entry.after is not None
        assert entry.after["role"] == "admin"

        # Setting the role a member already has is no change.
        async with infrastructure.unit_of_work() as uow:
            await uow.workspaces.update_member(
                workspace.id, user_id, MemberUpdateRequestSchema(role=WorkspaceRole.ADMIN), actor=manager
            )
        assert await trail.new() == []

        async with infrastructure.unit_of_work() as uow:
            await uow.workspaces.remove_member(workspace.id, user_id, actor=manager)
        entry = await trail.one()
        assert (entry.entity_type, entry.entity_id, entry.workspace_id) == ("workspace_member", user_id, workspace.id)
        assert (entry.action, entry.before, entry.after) == ("delete", dumped(promoted), None)
        assert_actor(entry, manager)


# --- rollbacks -----------------------------------------------------------------------------------


async def test_a_failed_update_leaves_no_entry(infrastructure: Infrastructure, trail: Trail) -> None:
    workspace = await create_workspace(infrastructure, "Wayne")
    await trail.new()
    with acting_as(staff()), pytest.raises(WorkspaceEtagMismatchException):
        async with infrastructure.unit_of_work() as uow:
            await uow.workspaces.update_workspace(
                workspace.id, WorkspaceUpdateRequestSchema(update_mask=frozenset({"name"}), name="X", etag='W/"99"')
            )
    assert await trail.new() == []


async def test_an_entry_is_rolled_back_with_its_mutation(infrastructure: Infrastructure, trail: Trail) -> None:
    """The entry is written in the mutation's transaction: a failure later in it takes both back."""
    workspace = await create_workspace(infrastructure, "Tyrell")
    await trail.new()

    class Boom(Exception):
        pass

    async def rename_then_fail() -> None:
        async with infrastructure.unit_of_work() as uow:
            await uow.workspaces.update_workspace(
                workspace.id, WorkspaceUpdateRequestSchema(update_mask=frozenset({"name"}), name="Tyrell Corp")
            )
            assert len((await uow.session.scalars(select(AuditLog))).all()) == 2  # written, not yet committed
            raise Boom

    with acting_as(staff()), pytest.raises(Boom):
        await rename_then_fail()
    assert await trail.new() == []
    async with infrastructure.unit_of_work() as uow:
        assert (await uow.workspaces.get_workspace(workspace.id)).name == "Tyrell"


# --- users ---------------------------------------------------------------------------------------


async def test_user_mutations_are_audited_without_secrets(infrastructure: Infrastructure, trail: Trail) -> None:
    admin = api_key()
    with acting_as(admin):
        async with infrastructure.unit_of_work() as uow:
            created = await uow.users.create_user(
                UserCreateRequestSchema.model_validate(
                    {"email": "ada@example.com", "full_name": "Ada", "password": PASSWORD}
                ),
                actor=admin,
                idempotency_key="create-ada",
            )
        entry = await trail.one()
        assert (entry.entity_type, entry.entity_id, entry.workspace_id) == ("user", created.id, None)
        assert (entry.action, entry.before, entry.after) == ("create", None, dumped(created))
        assert_actor(entry, admin)
        assert entry.after is not None
        assert set(entry.after) == set(UserResponseSchema.model_fields)
        assert PASSWORD not in json.dumps(entry.after)
        assert "argon2" not in json.dumps(entry.after)

        # A replayed create changes nothing.
        async with infrastructure.unit_of_work() as uow:
            await uow.users.create_user(
                UserCreateRequestSchema.model_validate(
                    {"email": "ada@example.com", "full_name": "Ada", "password": PASSWORD}
                ),
                actor=admin,
                idempotency_key="create-ada",
            )
        assert await trail.new() == []

        async with infrastructure.unit_of_work() as uow:
            updated = await uow.users.update_user(
                created.id, UserUpdateRequestSchema(update_mask=frozenset({"full_name"}), full_name="Ada King")
            )
        entry = await trail.one()
        assert (entry.entity_type, entry.entity_id, entry.workspace_id) == ("user", created.id, None)
        assert (entry.action, entry.before, entry.after) == ("update", dumped(created), dumped(updated))

        async with infrastructure.unit_of_work() as uow:
            with_roles = await uow.users.set_user_roles(created.id, ["staff"])
        entry = await trail.one()
        assert (entry.entity_type, entry.entity_id, entry.workspace_id) == ("user", created.id, None)
        assert (entry.action, entry.before, entry.after) == ("set_roles", dumped(updated), dumped(with_roles))
        assert entry.before is not None
        assert entry.after is not None
        assert (entry.before["role_names"], entry.after["role_names"]) == ([], ["staff"])

        async with infrastructure.unit_of_work() as uow:
            deactivated = await uow.users.deactivate_user(created.id)
        entry = await trail.one()
        assert (entry.entity_type, entry.entity_id, entry.workspace_id) == ("user", created.id, None)
        assert (entry.action, entry.before, entry.after) == ("deactivate", dumped(with_roles), dumped(deactivated))
        assert entry.after is not None
        assert entry.after["is_active"] is False

        # Deactivating an inactive user changes nothing.
        async with infrastructure.unit_of_work() as uow:
            await uow.users.deactivate_user(created.id)
        assert await trail.new() == []


async def test_concurrent_deactivations_are_audited_once(infrastructure: Infrastructure, trail: Trail) -> None:
    user_id = await seed_user(infrastructure)

    async def deactivate() -> bool:
        async with infrastructure.unit_of_work() as uow:
            try:
                await uow.users.deactivate_user(user_id)
            except ConflictException:  # lost the race after reading the user as active: retry
                return False
        return True

    with acting_as(staff()):
        await asyncio.gather(deactivate(), deactivate(), deactivate())
    entry = await trail.one()
    assert (entry.entity_id, entry.action) == (user_id, "deactivate")
    async with infrastructure.unit_of_work() as uow:
        assert not (await uow.users.get_user(user_id)).is_active


async def test_a_deactivation_that_lost_a_race_asks_for_a_retry(infrastructure: Infrastructure, trail: Trail) -> None:
    """The slower deactivation read the user as active before the faster one committed: it has no
    change to record, and what it read is stale, so it neither audits nor answers with it."""
    user_id = await seed_user(infrastructure)
    with acting_as(staff()):
        async with infrastructure.unit_of_work() as slow:
            held = await slow.session.get(User, user_id)  # as deactivate_user's own read holds it
            assert held is not None
            async with infrastructure.unit_of_work() as fast:
                await fast.users.deactivate_user(user_id)
            with pytest.raises(ConflictException):
                await slow.users.deactivate_user(user_id)
    entry = await trail.one()
    assert (entry.entity_id, entry.action) == (user_id, "deactivate")


async def test_ensure_superuser_writes_one_entry(infrastructure: Infrastructure, trail: Trail) -> None:
    data = UserCreateRequestSchema.model_validate({"email": "root@example.com", "password": PASSWORD})
    # The CLI runs outside any RPC: no actor.
    async with infrastructure.unit_of_work() as uow:
        created = await uow.users.ensure_superuser(data)
    entry = await trail.one()
    assert (entry.entity_type, entry.entity_id, entry.workspace_id) == ("user", created.id, None)
    assert (entry.action, entry.before, entry.after) == ("create", None, dumped(created))
    assert entry.after is not None
    assert entry.after["is_superuser"] is True
    assert_actor(entry, None)

    async with infrastructure.unit_of_work() as uow:
        await uow.users.ensure_superuser(data, keep_existing=True)
    assert await trail.new() == []

    async with infrastructure.unit_of_work() as uow:
        again = await uow.users.ensure_superuser(data)
    entry = await trail.one()
    assert (entry.entity_id, entry.action, entry.before, entry.after) == (
        created.id,
        "update",
        dumped(created),
        dumped(again),
    )
    assert PASSWORD not in json.dumps([entry.before, entry.after])


# --- API keys ------------------------------------------------------------------------------------


async def test_api_key_mutations_are_audited_without_the_key(infrastructure: Infrastructure, trail: Trail) -> None:
    creator = staff(await seed_user(infrastructure))
    data = ApiKeyCreateRequestSchema(name="Exporter", role_names=["staff"])
    with acting_as(creator):
        async with infrastructure.unit_of_work() as uow:
            created = await uow.api_keys.create_api_key(data, actor=creator, idempotency_key="key-1")
        assert created.secret is not None
        entry = await trail.one()
        assert (entry.entity_type, entry.entity_id, entry.workspace_id) == ("api_key", created.api_key.id, None)
        assert (entry.action, entry.before, entry.after) == ("create", None, dumped(created.api_key))
        assert_actor(entry, creator)
        stored = json.dumps(entry.after)
        assert created.secret not in stored
        assert created.secret[len(created.api_key.prefix) :] not in stored
        assert "secret" not in stored

        async with infrastructure.unit_of_work() as uow:
            replayed = await uow.api_keys.create_api_key(data, actor=creator, idempotency_key="key-1")
        assert replayed.api_key.id == created.api_key.id
        assert await trail.new() == []

        async with infrastructure.unit_of_work() as uow:
            revoked = await uow.api_keys.revoke_api_key(created.api_key.id)
        entry = await trail.one()
        assert (entry.entity_type, entry.entity_id, entry.workspace_id) == ("api_key", created.api_key.id, None)
        assert (entry.action, entry.before, entry.after) == ("revoke", dumped(created.api_key), dumped(revoked))
        assert entry.after is not None
        assert entry.after["revoked_at"] is not None

        async with infrastructure.unit_of_work() as uow:
            await uow.api_keys.revoke_api_key(created.api_key.id)
        assert await trail.new() == []


async def test_entries_carry_the_request_id_as_trace_id(infrastructure: Infrastructure, trail: Trail) -> None:
    structlog.contextvars.bind_contextvars(request_id="req-trace-1")
    try:
        await create_workspace(infrastructure, "Traced")
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    assert (await trail.one()).trace_id == "req-trace-1"


async def test_record_many_writes_entries_in_order_in_one_statement(
    infrastructure: Infrastructure, trail: Trail
) -> None:
    workspace = await create_workspace(infrastructure, "Bulk")
    await trail.new()
    editor = staff()
    entity_ids = [uuid.uuid4() for _ in range(5)]
    inserts: list[str] = []

    def record(*args: Any) -> None:
        if args[2].lstrip().upper().startswith("INSERT"):
            inserts.append(args[2])

    structlog.contextvars.bind_contextvars(request_id="req-bulk-1")
    event.listen(infrastructure.engine.sync_engine, "before_cursor_execute", record)
    try:
        with acting_as(editor):
            async with infrastructure.unit_of_work() as uow:
                await uow.audit.record_many([])
                await uow.audit.record_many(
                    [
                        AuditEntry("account", entity_id, "sync", workspace.id, before=workspace, after=None)
                        for entity_id in entity_ids
                    ]
                )
    finally:
        event.remove(infrastructure.engine.sync_engine, "before_cursor_execute", record)
        structlog.contextvars.unbind_contextvars("request_id")

    assert len(inserts) == 1  # none for the empty list, one for the five
    written = await trail.new()
    assert [entry.entity_id for entry in written] == entity_ids
    for entry in written:
        assert (entry.entity_type, entry.action, entry.workspace_id) == ("account", "sync", workspace.id)
        assert (entry.before, entry.after) == (dumped(workspace), None)
        assert entry.trace_id == "req-bulk-1"
        assert_actor(entry, editor)


async def test_record_is_one_entry_of_record_many(infrastructure: Infrastructure, trail: Trail) -> None:
    workspace = await create_workspace(infrastructure, "Single")
    await trail.new()
    entity_id = uuid.uuid4()
    async with infrastructure.unit_of_work() as uow:
        await uow.audit.record(
            entity_type="account", entity_id=entity_id, action="update", workspace_id=None, after=workspace
        )
    entry = await trail.one()
    assert (entry.entity_type, entry.entity_id, entry.action, entry.workspace_id) == (
        "account",
        entity_id,
        "update",
        None,
    )
    assert (entry.before, entry.after) == (None, dumped(workspace))
    assert_actor(entry, None)


# --- append-only ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_logs SET action = 'forged'",
        "UPDATE audit_logs SET after = NULL WHERE entity_type = 'workspace'",
        "DELETE FROM audit_logs",
        "TRUNCATE audit_logs",
    ],
)
async def test_the_database_refuses_to_change_entries(
    infrastructure: Infrastructure, trail: Trail, statement: str
) -> None:
    await create_workspace(infrastructure, "Append Only")
    before = await trail.new()
    assert len(before) == 1
    with pytest.raises(sqlalchemy.exc.ProgrammingError, match="append-only") as refused:
        async with infrastructure.unit_of_work() as uow:
            await uow.session.execute(text(statement))
    assert getattr(refused.value.orig, "pgcode", None) == "42501"  # insufficient_privilege
    assert await entries(infrastructure) == before


# --- listing -------------------------------------------------------------------------------------

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def seed_entries(infrastructure: Infrastructure, *rows: dict[str, Any]) -> list[uuid.UUID]:
    """Entries written one by one in this order (so ids, hence list order, follow it)."""
    ids = []
    for row in rows:
        async with infrastructure.unit_of_work() as uow:
            await AuditLogRepository(uow.session).add_many(
                [
                    {
                        "actor_type": "user",
                        "actor_id": None,
                        "workspace_id": None,
                        "entity_type": "workspace",
                        "entity_id": uuid.uuid4(),
                        "action": "update",
                        "before": None,
                        "after": None,
                        "trace_id": None,
                        "created_at": T0,
                        **row,
                    }
                ]
            )
            ids.append((await uow.session.scalars(select(AuditLog.id).order_by(AuditLog.id.desc()).limit(1))).one())
    return ids


async def list_ids(infrastructure: Infrastructure, **query: Any) -> list[uuid.UUID]:
    async with infrastructure.unit_of_work() as uow:
        page = await uow.audit_logs.list_audit_logs(AuditLogListRequestSchema(**query))
    return [entry.id for entry in page.items]


async def test_list_is_newest_first(infrastructure: Infrastructure) -> None:
    ids = await seed_entries(infrastructure, {}, {}, {})
    assert await list_ids(infrastructure) == ids[::-1]


async def test_list_filters(infrastructure: Infrastructure) -> None:
    workspace, other_workspace = uuid.uuid4(), uuid.uuid4()
    actor, other_actor = uuid.uuid4(), uuid.uuid4()
    entity = uuid.uuid4()
    ids = await seed_entries(
        infrastructure,
        {"workspace_id": workspace, "actor_id": actor, "entity_id": entity, "created_at": T0},
        {
            "workspace_id": workspace,
            "actor_id": other_actor,
            "entity_type": "account",
            "created_at": T0 + dt.timedelta(hours=1),
        },
        {
            "workspace_id": other_workspace,
            "actor_id": actor,
            "entity_id": entity,
            "created_at": T0 + dt.timedelta(hours=2),
        },
        {"actor_id": actor, "entity_type": "user", "created_at": T0 + dt.timedelta(hours=3)},
    )
    assert await list_ids(infrastructure, workspace_id=workspace) == [ids[1], ids[0]]
    assert await list_ids(infrastructure, entity_type="account") == [ids[1]]
    assert await list_ids(infrastructure, entity_type="workspace", entity_id=entity) == [ids[2], ids[0]]
    assert await list_ids(infrastructure, actor_id=actor) == [ids[3], ids[2], ids[0]]
    assert await list_ids(infrastructure, actor_id=actor, workspace_id=other_workspace) == [ids[2]]
    # start is inclusive, end exclusive.
    hour = dt.timedelta(hours=1)
    assert await list_ids(infrastructure, start_time=T0 + hour) == [ids[3], ids[2], ids[1]]
    assert await list_ids(infrastructure, end_time=T0 + hour) == [ids[0]]
    assert await list_ids(infrastructure, start_time=T0 + hour, end_time=T0 + 3 * hour) == [ids[2], ids[1]]
    assert await list_ids(infrastructure, entity_type="nothing") == []


@pytest.mark.parametrize("end_offset", [dt.timedelta(0), -dt.timedelta(seconds=1)])
def test_a_time_range_that_ends_before_it_starts_is_invalid(end_offset: dt.timedelta) -> None:
    request = pb.ListAuditLogsRequest()
    request.filter.start_time.FromDatetime(T0)
    request.filter.end_time.FromDatetime(T0 + end_offset)
    with pytest.raises(InvalidRequestException) as invalid:
        list_request_from_proto(request)
    assert invalid.value.reason == "INVALID_ARGUMENT"
    assert "start_time" in str(invalid.value)


async def test_pages_walk_every_entry_once(infrastructure: Infrastructure) -> None:
    ids = await seed_entries(infrastructure, *({} for _ in range(5)))
    seen: list[uuid.UUID] = []
    token = ""
    pages = 0
    while True:
        async with infrastructure.unit_of_work() as uow:
            page = await uow.audit_logs.list_audit_logs(AuditLogListRequestSchema(page_size=2, page_token=token))
        seen += [entry.id for entry in page.items]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1]
    assert pages == 3


async def test_a_page_token_is_bound_to_its_filters(infrastructure: Infrastructure) -> None:
    workspace = uuid.uuid4()
    await seed_entries(infrastructure, *({"workspace_id": workspace} for _ in range(3)))
    async with infrastructure.unit_of_work() as uow:
        first = await uow.audit_logs.list_audit_logs(AuditLogListRequestSchema(page_size=1, workspace_id=workspace))
        assert first.next_page_token
        for other in (
            {"workspace_id": uuid.uuid4()},
            {},
            {"workspace_id": workspace, "entity_type": "workspace"},
            {"workspace_id": workspace, "start_time": T0},
        ):
            with pytest.raises(InvalidRequestException) as invalid:
                await uow.audit_logs.list_audit_logs(
                    AuditLogListRequestSchema(page_size=1, page_token=first.next_page_token, **other)
                )
            assert invalid.value.violations[0].reason == "INVALID_PAGE_TOKEN"
        second = await uow.audit_logs.list_audit_logs(
            AuditLogListRequestSchema(page_size=1, page_token=first.next_page_token, workspace_id=workspace)
        )
    assert second.items[0].id < first.items[0].id


async def test_workspace_listing_through_the_servicer_sees_only_that_workspace(infrastructure: Infrastructure) -> None:
    workspace = await create_workspace(infrastructure, "Mine")
    other = await create_workspace(infrastructure, "Theirs")
    servicer = AuditLogServicer(infrastructure.unit_of_work)
    response = await servicer.ListWorkspaceAuditLogs(
        pb.ListWorkspaceAuditLogsRequest(workspace_id=str(workspace.id)), NO_CONTEXT
    )
    assert [(e.entity_id, e.action) for e in response.audit_logs] == [(str(workspace.id), "create")]
    everything = await servicer.ListAuditLogs(pb.ListAuditLogsRequest(), NO_CONTEXT)
    assert [e.entity_id for e in everything.audit_logs] == [str(other.id), str(workspace.id)]
