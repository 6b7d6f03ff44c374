"""The `adplane` command as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

ADPLANE = str(Path(sys.executable).parent / "adplane")


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ADPLANE, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("serve", "migrate", "downgrade", "makemigrations", "envoy", "dev"):
        assert command in result.stdout


def test_production_refuses_the_development_secret_key(tmp_path: Path) -> None:
    result = run(
        "serve", ENVIRONMENT="production", DATABASE_URL="postgresql://db/adplane", SECRET_KEY="", DATA_DIR=str(tmp_path)
    )
    assert result.returncode == 2
    assert "SECRET_KEY" in result.stderr


def test_production_requires_a_database_url(tmp_path: Path) -> None:
    result = run("migrate", ENVIRONMENT="production", SECRET_KEY="x" * 40, DATABASE_URL="", DATA_DIR=str(tmp_path))
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr
