"""The migrations and the models agree, and the migration chain runs down and up again."""

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy.exc
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from server import migrations
from server.config import Settings
from server.models import Base
from tests.conftest import _create_database, _drop_database

ADPLANE = str(Path(sys.executable).parent / "adplane")


@pytest.fixture
def scratch_database(postgres_server_url: str) -> Iterator[Settings]:
    name = f"adplane_migrations_{uuid.uuid4().hex[:8]}"
    url = asyncio.run(_create_database(postgres_server_url, name))
    yield Settings(database_url=url)
    asyncio.run(_drop_database(postgres_server_url, name))


def _differences(settings: Settings) -> list[object]:
    def compare(connection: Connection) -> list[object]:
        context = MigrationContext.configure(
            connection,
            opts={"compare_type": True, "compare_server_default": True, "include_name": migrations.include_name},
        )
        return list(compare_metadata(context, Base.metadata))

    async def run() -> list[object]:
        engine = create_async_engine(settings.database_url)
        async with engine.connect() as connection:
            result = await connection.run_sync(compare)
        await engine.dispose()
        return result

    return asyncio.run(run())


def test_models_match_migrations(scratch_database: Settings) -> None:
    migrations.upgrade(scratch_database)
    assert _differences(scratch_database) == []


def test_downgrade_to_base_and_upgrade_again(scratch_database: Settings) -> None:
    migrations.upgrade(scratch_database)
    migrations.downgrade(scratch_database, "base")
    assert len(_differences(scratch_database)) > 0  # the tables are really gone
    migrations.upgrade(scratch_database)
    assert _differences(scratch_database) == []


def test_wait_for_schema_waits_for_the_head_and_passes_a_newer_schema(scratch_database: Settings) -> None:
    """`adplane wait-for-schema`, the init container of the Kubernetes pods: not ready on an empty or
    older schema, ready at head and on a schema a newer release migrated (a rollback)."""
    assert not migrations.schema_is_ready(scratch_database)
    migrations.upgrade(scratch_database, "base")
    script = ScriptDirectory.from_config(migrations.alembic_config(scratch_database))
    (head,) = script.get_heads()
    before_head = script.get_revision(head).down_revision
    assert isinstance(before_head, str)
    migrations.upgrade(scratch_database, before_head)
    assert not migrations.schema_is_ready(scratch_database)
    migrations.upgrade(scratch_database)
    assert migrations.schema_is_ready(scratch_database)

    async def stamp_a_newer_revision() -> None:
        engine = create_async_engine(scratch_database.database_url)
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = 'from_a_newer_release'"))
        await engine.dispose()

    asyncio.run(stamp_a_newer_revision())
    assert migrations.schema_is_ready(scratch_database)


def test_wait_for_schema_gives_up_after_its_timeout(scratch_database: Settings) -> None:
    environment = {**os.environ, "DATABASE_URL": scratch_database.database_url, "ENVIRONMENT": "test"}
    environment.pop("DATABASE_URL_FILE", None)
    waiting = subprocess.run(
        [ADPLANE, "wait-for-schema", "--timeout", "0.5", "--interval", "0.1"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert waiting.returncode == 1, waiting.stderr
    assert "behind this release" in waiting.stderr
    migrations.upgrade(scratch_database)
    ready = subprocess.run(
        [ADPLANE, "wait-for-schema", "--timeout", "5"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ready.returncode == 0, ready.stderr


def test_the_audit_log_keeps_its_entries_through_partitioning_and_back(scratch_database: Settings) -> None:
    """Entries of past months land in partitions of their months (made for them), and a downgrade
    puts every one back in the plain table."""
    months = ["2025-11-15", "2026-01-31", "2026-02-01"]

    async def run(statements: list[str]) -> list[list[tuple[object, ...]]]:
        engine = create_async_engine(scratch_database.database_url)
        try:
            async with engine.begin() as connection:
                results = [await connection.execute(text(statement)) for statement in statements]
                return [[tuple(row) for row in result] if result.returns_rows else [] for result in results]
        finally:
            await engine.dispose()

    migrations.upgrade(scratch_database, "a41c7e9d2b60")
    asyncio.run(
        run(
            [
                "INSERT INTO audit_logs (id, entity_type, entity_id, action, created_at) VALUES "  # noqa: S608
                + ", ".join(
                    f"(gen_random_uuid(), 'workspace', gen_random_uuid(), 'create', '{day} 12:00+00')" for day in months
                )
            ]
        )
    )
    migrations.upgrade(scratch_database)
    [placed] = asyncio.run(
        run(["SELECT created_at::date::text, tableoid::regclass::text FROM audit_logs ORDER BY created_at"])
    )
    assert placed == [
        ("2025-11-15", "audit_logs_y2025m11"),
        ("2026-01-31", "audit_logs_y2026m01"),
        ("2026-02-01", "audit_logs_y2026m02"),
    ]
    with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"):
        asyncio.run(run(["DELETE FROM audit_logs_y2025m11"]))

    migrations.downgrade(scratch_database, "a41c7e9d2b60")
    [kept] = asyncio.run(run(["SELECT created_at::date::text, tableoid::regclass::text FROM audit_logs ORDER BY 1"]))
    assert kept == [(day, "audit_logs") for day in months]
