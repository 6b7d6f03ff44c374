"""The server's standing cache: a cached standing costs no SQL, and every change that can alter a
standing (a revoked sign-in, a deactivation, a membership change, a role change, a revoked API key)
empties it at once, whichever connection or process committed it."""

import importlib.util
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from server.api_keys.schemas import ApiKeyCreateRequestSchema
from server.auth.credentials import ApiKeyCredentials, UserCredentials
from server.auth.exceptions import CallerRevokedException, InvalidRefreshTokenException
from server.auth.principal import Principal, PrincipalKind
from server.auth.resolver import PrincipalResolver
from server.auth.roles import WorkspaceRole
from server.auth.schemas import UserStandingSchema
from server.auth.standing_cache import StandingCache, changes_standing
from server.composition import Infrastructure
from server.signin.schemas import RefreshTokenRequestSchema
from server.statement_log import sent_statements
from server.workspaces.schemas import MemberUpdateRequestSchema, WorkspaceCreateRequestSchema
from tests.callers import Caller, make_caller
from tests.conftest import _admin_dsn
from tests.waits import eventually


def resolver(infrastructure: Infrastructure) -> PrincipalResolver:
    """What the server builds: the autocommit engine and the process's cache."""
    return infrastructure.principal_resolver()


async def resolve(infrastructure: Infrastructure, caller: Caller, workspace_id: uuid.UUID | None = None) -> Principal:
    claims = infrastructure.tokens.decode_access(caller.access_token)
    return await resolver(infrastructure).resolve(UserCredentials(claims), workspace_id=workspace_id)


async def answered_from_cache(infrastructure: Infrastructure, read: Callable[[], Awaitable[Principal]]) -> Principal:
    """Read until the standing is kept, then once more: that read must not touch the database.

    The first read after a change may not be kept: the change's notification reaches the pool's
    other idle connections while the read runs, and a read overlapping a notification is dropped
    (on purpose). It is kept by the second or third read at the latest.
    """
    await read()
    for _ in range(3):
        with sent_statements(infrastructure) as seen:
            principal = await read()
        if not seen:
            return principal
    raise AssertionError(f"the standing was read from the database every time: {seen}")


async def cached(infrastructure: Infrastructure, caller: Caller, workspace_id: uuid.UUID | None = None) -> Principal:
    await infrastructure.standing_cache.start()
    return await answered_from_cache(infrastructure, lambda: resolve(infrastructure, caller, workspace_id))


async def workspace(infrastructure: Infrastructure) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        return (await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name="Cached"))).id


async def test_a_cached_standing_costs_no_sql(infrastructure: Infrastructure) -> None:
    workspace_id = await workspace(infrastructure)
    caller = await make_caller(infrastructure, memberships={workspace_id: WorkspaceRole.ADMIN})
    principal = await cached(infrastructure, caller, workspace_id)
    assert principal.workspace_role is WorkspaceRole.ADMIN
    # Another workspace is another standing: read, not answered from the first one.
    with sent_statements(infrastructure) as seen:
        elsewhere = await resolve(infrastructure, caller, uuid.uuid4())
    assert len(seen) == 1
    assert elsewhere.workspace_role is None


async def test_logout_refuses_the_cached_caller_at_once(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure)
    await cached(infrastructure, caller)
    async with infrastructure.unit_of_work() as uow:
        await uow.signin.logout(RefreshTokenRequestSchema(refresh_token=caller.refresh_token))
    with pytest.raises(CallerRevokedException):
        await resolve(infrastructure, caller)


async def test_deactivation_refuses_the_cached_caller_at_once(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure)
    await cached(infrastructure, caller)
    async with infrastructure.unit_of_work() as uow:
        await uow.users.deactivate_user(caller.user_id)
    with pytest.raises(CallerRevokedException):
        await resolve(infrastructure, caller)
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(InvalidRefreshTokenException):
            await uow.signin.refresh(RefreshTokenRequestSchema(refresh_token=caller.refresh_token))


async def test_a_membership_change_applies_at_once(infrastructure: Infrastructure) -> None:
    workspace_id = await workspace(infrastructure)
    owner = await make_caller(infrastructure, memberships={workspace_id: WorkspaceRole.OWNER})
    caller = await make_caller(infrastructure, memberships={workspace_id: WorkspaceRole.ADMIN})
    assert (await cached(infrastructure, caller, workspace_id)).workspace_role is WorkspaceRole.ADMIN
    actor = Principal(kind=PrincipalKind.USER, id=owner.user_id, superuser=True)

    async with infrastructure.unit_of_work() as uow:
        await uow.workspaces.update_member(
            workspace_id, caller.user_id, MemberUpdateRequestSchema(role=WorkspaceRole.VIEWER), actor=actor
        )
    assert (await resolve(infrastructure, caller, workspace_id)).workspace_role is WorkspaceRole.VIEWER

    await cached(infrastructure, caller, workspace_id)
    async with infrastructure.unit_of_work() as uow:
        await uow.workspaces.remove_member(workspace_id, caller.user_id, actor=actor)
    assert (await resolve(infrastructure, caller, workspace_id)).workspace_role is None


async def test_a_role_change_applies_at_once(infrastructure: Infrastructure) -> None:
    caller = await make_caller(infrastructure, roles=["staff"])
    assert (await cached(infrastructure, caller)).system_permissions
    async with infrastructure.unit_of_work() as uow:
        await uow.users.set_user_roles(caller.user_id, [])
    assert (await resolve(infrastructure, caller)).system_permissions == frozenset()


async def test_a_revoked_api_key_is_refused_at_once(infrastructure: Infrastructure) -> None:
    creator = await make_caller(infrastructure, superuser=True)
    async with infrastructure.unit_of_work() as uow:
        created = await uow.api_keys.create_api_key(
            ApiKeyCreateRequestSchema(name="cached", role_names=["staff"]),
            actor=Principal(kind=PrincipalKind.USER, id=creator.user_id),
        )
    assert created.secret is not None
    credentials = ApiKeyCredentials(created.secret)
    await infrastructure.standing_cache.start()
    await answered_from_cache(infrastructure, lambda: resolver(infrastructure).resolve(credentials, workspace_id=None))

    async with infrastructure.unit_of_work() as uow:
        await uow.api_keys.revoke_api_key(created.api_key.id)
    with pytest.raises(CallerRevokedException):
        await resolver(infrastructure).resolve(credentials, workspace_id=None)


async def test_a_change_committed_elsewhere_reaches_the_cache(infrastructure: Infrastructure) -> None:
    """Another process (here: a connection outside the pool) deactivates the user with plain SQL."""
    caller = await make_caller(infrastructure)
    await cached(infrastructure, caller)
    database = infrastructure.settings.database_url.rsplit("/", 1)[1].split("?")[0]
    elsewhere = await asyncpg.connect(_admin_dsn(infrastructure.settings.database_url), database=database)
    try:
        await elsewhere.execute("UPDATE users SET is_active = false WHERE id = $1", caller.user_id)
    finally:
        await elsewhere.close()

    async def revoked() -> bool:
        try:
            await resolve(infrastructure, caller)
        except CallerRevokedException:
            return True
        return False

    await eventually(revoked, within=2, what="the deactivation reaching the cached standing")


async def test_without_a_listening_connection_nothing_is_answered_from_the_cache(
    infrastructure: Infrastructure,
) -> None:
    """Notifications sent while a process has no connection are lost: a closed listening
    connection empties the cache, and it answers again only once the connection listens again."""
    caller = await make_caller(infrastructure)
    await cached(infrastructure, caller)
    emptied = infrastructure.standing_cache.generation
    infrastructure.standing_cache.drop_connection()
    # asyncpg runs the termination listener soon after the close; it empties the cache.
    await eventually(lambda: infrastructure.standing_cache.generation > emptied, within=5, what="the cache emptied")
    with sent_statements(infrastructure) as seen:
        await resolve(infrastructure, caller)
    assert len(seen) == 1
    await infrastructure.standing_cache.start()
    await cached(infrastructure, caller)


async def test_the_committing_process_empties_its_cache_without_the_notification(
    infrastructure: Infrastructure,
) -> None:
    """The process that changes a standing empties its cache when its COMMIT returns, not when its
    listening connection hears the notification (which may come after the RPC has answered)."""
    cache = infrastructure.standing_cache
    deaf = _relisten(cache, lambda *_: None)
    try:
        await deaf
        caller = await make_caller(infrastructure, roles=["staff"])
        assert (await cached(infrastructure, caller)).system_permissions
        async with infrastructure.unit_of_work() as uow:
            await uow.users.set_user_roles(caller.user_id, [])
        assert cache.notifications == 0
        assert (await resolve(infrastructure, caller)).system_permissions == frozenset()
    finally:
        await _relisten(cache, None)


async def _relisten(cache: StandingCache, on_notification: Callable[..., None] | None) -> None:
    """Listen again on a new connection, with `on_notification` (None: the cache's own)."""
    cache.drop_connection()
    await eventually(lambda: not cache.listening, within=5, what="the listening connection closed")
    if on_notification is None:
        vars(cache).pop("_on_notification", None)
    else:
        cache._on_notification = on_notification  # type: ignore[method-assign]
    cache.notifications = 0
    await cache.start()


async def test_the_cache_listens_on_one_direct_connection(infrastructure: Infrastructure) -> None:
    """Not on the pool's connections: behind PgBouncer those are shared with other clients."""
    await infrastructure.standing_cache.start()
    async with infrastructure.engine.connect() as connection:
        listening = await connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()"
        )
        assert listening.scalar_one() == 1


def listening_cache(**options: float) -> StandingCache:
    cache = StandingCache(**options)  # type: ignore[arg-type]
    cache._listening = 1
    return cache


def test_a_standing_read_across_a_change_is_not_kept() -> None:
    cache = listening_cache()
    key = (uuid.uuid4(), uuid.uuid4(), None)
    standing = UserStandingSchema(
        active=True, superuser=False, permissions=frozenset(), workspace_role=None, session_revoked=False
    )
    generation = cache.generation
    cache.clear()  # a notification arrives while the standing is read
    cache.put_user(key, standing, generation=generation)
    assert cache.user(key) == (False, None)
    cache.put_user(key, standing, generation=cache.generation)
    assert cache.user(key) == (True, standing)


def test_entries_expire_and_the_cache_is_bounded() -> None:
    cache = listening_cache(max_entries=2, max_age=0.0)
    keys = [(uuid.uuid4(), uuid.uuid4(), None) for _ in range(3)]
    for key in keys:
        cache.put_user(key, None, generation=cache.generation)
    assert len(cache._users) == 2
    assert cache.user(keys[2]) == (False, None)  # older than max_age 0


def test_the_writes_that_empty_the_cache_at_commit_are_the_triggers() -> None:
    """The committing process's own rule (`_STANDING_WRITE`) covers every table and event the
    migration's triggers NOTIFY for."""
    path = next((Path(__file__).parents[2] / "migrations" / "versions").glob("*_notify_standing_changes.py"))
    spec = importlib.util.spec_from_file_location("notify_standing_changes", path)
    assert spec is not None
    assert spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    for table, events in migration.TRIGGERS.items():
        update, delete, insert = (f"{verb} {table} " for verb in ("UPDATE", "DELETE FROM", "INSERT INTO"))
        assert changes_standing(update + "SET x = 1 WHERE id = $1::UUID"), table
        assert changes_standing(delete + "WHERE id = $1::UUID"), table
        values = "(a, b) VALUES ($1, $2)"
        assert changes_standing(insert + values) == ("INSERT" in events), table
    assert not changes_standing("UPDATE usersettings SET x = 1")
    assert not changes_standing("SELECT * FROM users")
