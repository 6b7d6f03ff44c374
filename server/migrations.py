"""alembic, driven from settings: `adplane migrate`, `adplane downgrade`, `adplane makemigrations`,
`adplane wait-for-schema`."""

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from server.audit_logs.partitions import is_partition
from server.config import PROJECT_ROOT, Settings

RUFF = str(Path(sys.executable).parent / "ruff")


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", settings.direct_database_url.replace("%", "%%"))
    config.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s")
    config.set_main_option("truncate_slug_length", "40")
    # ruff formats new revision files so they pass `make lint` as generated.
    config.set_section_option("post_write_hooks", "hooks", "ruff_format,ruff_fix")
    config.set_section_option("post_write_hooks", "ruff_format.type", "exec")
    config.set_section_option("post_write_hooks", "ruff_format.executable", RUFF)
    config.set_section_option("post_write_hooks", "ruff_format.options", "format REVISION_SCRIPT_FILENAME")
    config.set_section_option("post_write_hooks", "ruff_fix.type", "exec")
    config.set_section_option("post_write_hooks", "ruff_fix.executable", RUFF)
    config.set_section_option("post_write_hooks", "ruff_fix.options", "check --fix REVISION_SCRIPT_FILENAME")
    return config


def include_name(name: str | None, type_: str, _parent_names: Mapping[str, str | None]) -> bool:
    """What alembic compares with the models: every table but the audit log's partitions (the models
    declare the partitioned table; its partitions come and go with `adplane audit-log rotate`)."""
    return not (type_ == "table" and name is not None and is_partition(name))


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str) -> None:
    command.downgrade(alembic_config(settings), revision)


def make_migration(settings: Settings, message: str, *, empty: bool = False) -> None:
    command.revision(alembic_config(settings), message=message, autogenerate=not empty)


async def _database_revisions(url: str) -> set[str]:
    def current(connection: Connection) -> set[str]:
        return set(MigrationContext.configure(connection).get_current_heads())

    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(current)
    finally:
        await engine.dispose()


def schema_is_ready(settings: Settings) -> bool:
    """Whether the database's schema is at this code's head, or past it: revisions this code does not
    know were written by a newer release (this one was rolled back to), whose migrations keep the
    release before working. Raises when the database cannot be reached."""
    script = ScriptDirectory.from_config(alembic_config(settings))
    current = asyncio.run(_database_revisions(settings.direct_database_url))
    if current == set(script.get_heads()):
        return True
    known = {revision.revision for revision in script.walk_revisions()}
    return bool(current - known)
