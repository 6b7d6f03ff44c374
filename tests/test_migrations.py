"""The migrations and the models agree, and the migration chain runs down and up again."""

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from server import migrations
from server.config import Settings
from server.models import Base
from tests.conftest import _create_database, _drop_database


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
