"""The `adplane` command as a user runs it."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from devstack.demo import DEMO_PASSWORD
from server.auth.credentials import UserCredentials
from server.auth.repository import StandingRepository
from server.auth.resolver import PrincipalResolver
from server.composition import Infrastructure
from server.config import DEV_ENV_FILE, Settings, write_dev_env
from server.requests.models import RequestStatus
from server.requests.schemas import RequestListRequestSchema
from server.signin.schemas import LoginRequestSchema

ADPLANE = str(Path(sys.executable).parent / "adplane")


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ADPLANE, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("serve", "migrate", "downgrade", "makemigrations", "envoy", "dev", "createsuperuser", "seed-demo"):
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


def test_createsuperuser_creates_a_user_who_can_sign_in(settings: Settings) -> None:
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    created = run("createsuperuser", "--email", "Root@Example.com", "--password", "a long enough password", **env)
    assert created.returncode == 0, created.stderr
    assert "root@example.com" in created.stdout

    async def check() -> None:
        infrastructure = Infrastructure.build(settings)
        try:
            async with infrastructure.unit_of_work() as uow:
                tokens = await uow.signin.login(
                    LoginRequestSchema(email="root@example.com", password="a long enough password"), address="cli"
                )
                principal = await PrincipalResolver(StandingRepository(infrastructure.read_engine)).resolve(
                    UserCredentials(infrastructure.tokens.decode_access(tokens.access_token)), workspace_id=None
                )
            assert principal.superuser
        finally:
            await infrastructure.close()

    asyncio.run(check())
    # Again with another password: the same user, now with the new password; --keep-existing changes nothing.
    assert (
        run("createsuperuser", "--email", "root@example.com", "--password", "another long password", **env).returncode
        == 0
    )
    kept = run(
        "createsuperuser",
        "--email",
        "root@example.com",
        "--password",
        "a third long password",
        "--keep-existing",
        **env,
    )
    assert kept.returncode == 0


def test_createsuperuser_rejects_a_short_password(settings: Settings) -> None:
    result = run(
        "createsuperuser", "--email", "a@example.com", "--password", "short", DATABASE_URL=settings.database_url
    )
    assert result.returncode == 2
    assert "password" in result.stderr


def test_createsuperuser_prompts_for_missing_options(settings: Settings) -> None:
    result = subprocess.run(
        [ADPLANE, "createsuperuser"],
        input="prompted@example.com\nprompted password!\nprompted password!\n",
        env={**os.environ, "DATABASE_URL": settings.database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "prompted@example.com" in result.stdout


def test_seed_demo_loads_once_and_prints_the_logins(settings: Settings, infrastructure: Infrastructure) -> None:
    # `infrastructure` empties the tables first: the demo must not meet other tests' rows.
    env = {"DATABASE_URL": settings.database_url}
    first = run("seed-demo", **env)
    assert first.returncode == 0, first.stderr
    assert "olivia.owner@acme.example" in first.stdout
    assert "alan.approver@agency.example" in first.stdout

    async def check() -> None:
        infrastructure = Infrastructure.build(settings)
        try:
            async with infrastructure.unit_of_work() as uow:
                waiting = await uow.requests.list_requests(
                    RequestListRequestSchema(status=RequestStatus.WAITING_FOR_APPROVAL)
                )
                tokens = await uow.signin.login(
                    LoginRequestSchema(email="maria.member@acme.example", password=DEMO_PASSWORD), address="cli"
                )
            assert len(waiting.items) >= 5
            assert tokens.access_token
        finally:
            await infrastructure.close()

    asyncio.run(check())
    again = run("seed-demo", **env)
    assert again.returncode == 1
    assert "already" in again.stderr or "exists" in again.stderr


def test_dev_commands_say_the_devstack_is_missing_from_a_production_install(tmp_path: Path) -> None:
    """A production install has `server` without the repository's `devstack/` (not in the wheel or image)."""
    root = Path(__file__).resolve().parent.parent
    (tmp_path / "server").symlink_to(root / "server")
    for command in ("dev", "seed-demo"):
        script = (
            "import sys; "
            f"sys.path[:] = [{str(tmp_path)!r}] + [p for p in sys.path if p not in ('', {str(root)!r})]; "
            f"sys.argv = ['adplane', {command!r}]; "
            "from server.cli import app; app()"
        )
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 2, result.stderr
        assert f"`adplane {command}` needs the development stack" in result.stderr


def _signs_in(settings: Settings, email: str, password: str) -> bool:
    async def check() -> bool:
        infrastructure = Infrastructure.build(settings)
        try:
            async with infrastructure.unit_of_work() as uow:
                tokens = await uow.signin.login(LoginRequestSchema(email=email, password=password), address="cli")
            return bool(tokens.access_token)
        finally:
            await infrastructure.close()

    return asyncio.run(check())


def test_commands_find_the_dev_stack_through_its_dev_env(settings: Settings, tmp_path: Path) -> None:
    """What `make run` writes to DATA_DIR/dev.env is enough: nothing exported."""
    write_dev_env(tmp_path / DEV_ENV_FILE, {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url})
    assert (tmp_path / DEV_ENV_FILE).stat().st_mode & 0o777 == 0o600
    unset = {"DATABASE_URL": "", "REDIS_URL": "", "DATA_DIR": str(tmp_path)}  # empty counts as unset
    created = run("createsuperuser", "--email", "devenv@example.com", "--password", "a long enough password", **unset)
    assert created.returncode == 0, created.stderr
    assert _signs_in(settings, "devenv@example.com", "a long enough password")


def test_exported_variables_win_over_the_dev_env(settings: Settings, tmp_path: Path) -> None:
    write_dev_env(tmp_path / DEV_ENV_FILE, {"DATABASE_URL": settings.database_url})
    elsewhere = "postgresql://adplane@127.0.0.1:1/nowhere"  # nothing listens on port 1
    result = run(
        "createsuperuser", "--email", "x@example.com", "--password", "a long enough password",
        DATABASE_URL=elsewhere, DATA_DIR=str(tmp_path),
    )  # fmt: skip
    assert result.returncode != 0


def test_production_never_reads_the_dev_env(settings: Settings, tmp_path: Path) -> None:
    write_dev_env(tmp_path / DEV_ENV_FILE, {"DATABASE_URL": settings.database_url})
    result = run("migrate", ENVIRONMENT="production", SECRET_KEY="x" * 40, DATABASE_URL="", DATA_DIR=str(tmp_path))
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr
