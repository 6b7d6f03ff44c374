"""`.env.example` documents every setting and is valid as it is."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from server.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_names_every_setting_and_loads() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))
    assert documented == {name.upper() for name in Settings.model_fields}
    Settings(_env_file=ROOT / ".env.example")  # every example value parses


def test_a_setting_can_come_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret_key"
    secret.write_text("a-secret-key-from-a-file-that-is-long-enough\n")
    database = tmp_path / "database_url"
    database.write_text("postgresql://adplane:s3cret@db:5432/adplane")
    monkeypatch.setenv("SECRET_KEY_FILE", str(secret))
    monkeypatch.setenv("DATABASE_URL_FILE", str(database))
    settings = Settings(_env_file=None)
    assert settings.secret_key.get_secret_value() == "a-secret-key-from-a-file-that-is-long-enough"
    assert settings.database_url == "postgresql+asyncpg://adplane:s3cret@db:5432/adplane"


def test_a_setting_given_twice_or_a_missing_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret_key"
    secret.write_text("from-a-file")
    monkeypatch.setenv("SECRET_KEY_FILE", str(secret))
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    with pytest.raises(ValueError, match="SECRET_KEY and SECRET_KEY_FILE are both set"):
        Settings(_env_file=None)
    monkeypatch.delenv("SECRET_KEY")
    monkeypatch.setenv("SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"SECRET_KEY_FILE: cannot read .*missing \(No such file or directory\)"):
        Settings(_env_file=None)


def test_the_cli_says_what_is_wrong_with_a_secret_file(tmp_path: Path) -> None:
    env = {**os.environ, "SECRET_KEY_FILE": str(tmp_path / "missing"), "DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "adplane"), "migrate"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "adplane: " in result.stderr
    assert "SECRET_KEY_FILE: cannot read" in result.stderr
    assert "Traceback" not in result.stderr


def test_pgbouncer_needs_a_direct_url() -> None:
    """Behind PgBouncer in transaction mode, LISTEN and migrations need PostgreSQL itself."""
    pooled = "postgresql://adplane@pgbouncer:6432/adplane"
    with pytest.raises(ValueError, match="DATABASE_DIRECT_URL"):
        Settings(_env_file=None, database_url=pooled, database_pooler="pgbouncer")
    settings = Settings(
        _env_file=None,
        database_url=pooled,
        database_pooler="pgbouncer",
        database_direct_url="postgres://adplane@postgres:5432/adplane?sslmode=require",
    )
    assert settings.direct_database_url == "postgresql+asyncpg://adplane@postgres:5432/adplane?ssl=require"
    assert Settings(_env_file=None, database_url=pooled).direct_database_url == "postgresql+asyncpg://" + pooled[13:]
