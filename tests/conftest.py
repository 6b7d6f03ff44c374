"""Shared fixtures: a real PostgreSQL (embedded in a throwaway directory unless TEST_DATABASE_URL
is set), migrated once per session, and settings pointing at it.

`make test` runs pytest on two processes (pytest-xdist, `-n 2 --dist loadgroup`): each process is a
session of its own, with its own PostgreSQL (or database on TEST_DATABASE_URL's server), Redis (or
database number on TEST_REDIS_URL's) and end-to-end stack, started when a test first needs them.
Tests go to the processes one by one; the tests of a module with a module-scoped fixture stay on
one process, and modules that share an expensive stack of their own (a session-scoped fixture)
name one group, so the stack starts once, on one process, while the other runs the rest:

    pytestmark = pytest.mark.xdist_group("replica")
"""

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from devstack.embedded import start_postgres, start_redis
from server import migrations
from server.composition import Infrastructure
from server.config import Environment, Settings
from server.models import Base

# Fixtures every test directory may use, kept in modules of their own.
pytest_plugins = ["tests.simulator", "tests.meta_work"]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the test ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup` the tests go to the processes one by one, as each process has room;
    the tests of a module that uses a module-scoped fixture (a stack of the module's own) are one
    group, so that the fixture starts once."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None and _uses_module_fixtures(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


def _uses_module_fixtures(item: pytest.Item) -> bool:
    fixtures = getattr(item, "_fixtureinfo", None)  # pytest's record of the fixtures a test uses
    if fixtures is None:
        return False
    scopes = {definition.scope for definitions in fixtures.name2fixturedefs.values() for definition in definitions}
    return bool(scopes & {"package", "module", "class"})


def _worker_number(request: pytest.FixtureRequest) -> int:
    """0 for the first pytest-xdist process (gw0) and for a run without xdist."""
    worker: str = getattr(request.config, "workerinput", {}).get("workerid", "gw0")
    return int(worker.removeprefix("gw"))


def _admin_dsn(url: str) -> str:
    """A plain asyncpg DSN for the `postgres` database of the server behind `url`."""
    return make_url(url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)


async def _create_database(url: str, name: str) -> str:
    connection = await asyncpg.connect(_admin_dsn(url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _drop_database(url: str, name: str) -> None:
    connection = await asyncpg.connect(_admin_dsn(url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@contextmanager
def postgres_data_dir() -> Iterator[Path]:
    """A place for a PostgreSQL data directory, outside pytest's temporary root.

    Run by root, PostgreSQL runs as another user (devstack.embedded), which must be able to walk
    down to its data directory; every pytest that starts on the machine makes /tmp/pytest-of-<user>
    private again, and a server below it then stops with "could not stat data directory" (seen
    when two sessions ran at once).
    """
    directory = Path(tempfile.mkdtemp(prefix="adplane-test-postgres-"))
    try:
        yield directory / "data"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_dir() -> Iterator[Path]:
    """A fresh path for a PostgreSQL data directory (see `postgres_data_dir`)."""
    with postgres_data_dir() as path:
        yield path


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server the tests may create databases on."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield Settings(database_url=external).database_url
        return
    with postgres_data_dir() as pgdata:
        server = start_postgres(pgdata, ephemeral=True)
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh database for this test session, migrated to head, dropped afterwards."""
    name = f"adplane_test_{uuid.uuid4().hex[:8]}"
    url = asyncio.run(_create_database(postgres_server_url, name))
    migrations.upgrade(Settings(database_url=url))
    try:
        yield url
    finally:
        asyncio.run(_drop_database(postgres_server_url, name))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[str]:
    """A Redis server (embedded in a throwaway directory unless TEST_REDIS_URL is set; there each
    pytest-xdist process takes the database numbered after it, since tests empty theirs)."""
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        yield urlsplit(external)._replace(path=f"/{_worker_number(request)}").geturl()
        return
    server = start_redis(tmp_path_factory.mktemp("redis"), ephemeral=True)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        _env_file=None,
        environment=Environment.TEST,
        database_url=database_url,
        redis_url=redis_url,
        # Fast enough for tests that run into the limits on purpose.
        login_first_delay_seconds=0.05,
        login_max_delay_seconds=1.0,
        login_max_wait_seconds=0.2,
        data_dir=tmp_path_factory.mktemp("data"),
        secret_key=SecretStr("test-secret-key-that-is-long-enough-0123456789"),
    )


@pytest.fixture(scope="session")
async def infrastructure(settings: Settings) -> AsyncIterator[Infrastructure]:
    infrastructure = Infrastructure.build(settings)
    yield infrastructure
    await infrastructure.close()


# Every table but the roles (reference data seeded by the migrations), emptied in one transaction.
# Replica mode skips triggers: the foreign keys' (so the order does not matter) and the one that keeps
# audit_logs append-only. DELETE, not TRUNCATE: a TRUNCATE of every table gives each a new file, about
# 40 ms before each of the suite's thousand tests; deleting the few rows a test leaves takes 2 ms.
_EMPTY_TABLES = "; ".join(
    [
        "BEGIN",
        "SET LOCAL session_replication_role = replica",
        *(f'DELETE FROM "{table.name}"' for table in Base.metadata.sorted_tables if table.name != "roles"),  # noqa: S608
        "COMMIT",
    ]
)


@pytest.fixture(autouse=True)
async def clean_database(request: pytest.FixtureRequest) -> None:
    """Empty every table before a test that uses the database, so tests never see each other's rows."""
    if "infrastructure" not in request.fixturenames and "stack" not in request.fixturenames:
        return
    infrastructure: Infrastructure = request.getfixturevalue("infrastructure")
    async with infrastructure.engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.execute(_EMPTY_TABLES)  # one round trip: a script in the simple query protocol
    if infrastructure.redis is not None:
        await infrastructure.redis.flushdb()


@pytest.fixture(scope="session")
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent
