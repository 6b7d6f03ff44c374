"""alembic, driven from settings: `adplane migrate`, `adplane downgrade`, `adplane makemigrations`."""

import sys
from collections.abc import Mapping
from pathlib import Path

from alembic import command
from alembic.config import Config

from server.audit_logs.partitions import is_partition
from server.config import PROJECT_ROOT, Settings

RUFF = str(Path(sys.executable).parent / "ruff")


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
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
