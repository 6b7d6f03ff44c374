"""The server at the lowest versions pyproject.toml allows.

A virtual environment gets the project with every direct dependency at its floor (uv's
`--resolution lowest-direct`); every module of `server` must import there, `adplane --help` must run,
and the tests of the code built on third-party internals (taskiq-redis' broker, grpc_health's
servicer, the interceptor pipeline over grpc.aio) must pass. The client's floors are tested by
tests/e2e/sdk/test_python_client.py.
"""

import tomllib
from pathlib import Path

from tests.python_envs import PROJECT_ROOT, interpreters, not_at_floor, run, uv, venv

SUBSET = ["tests/taskqueue/test_broker.py", "tests/interceptors/test_pipeline.py"]
# What runs SUBSET, at the versions the lock has (not under test here).
# pytest-xdist too: pyproject's addopts name its --dist option.
TEST_TOOLS = ["pytest", "pytest-asyncio", "pytest-timeout", "pytest-xdist"]

IMPORT_EVERY_MODULE = """
import importlib, pkgutil, server
failed = []
for module in pkgutil.walk_packages(server.__path__, "server."):
    try:
        importlib.import_module(module.name)
    except Exception as error:
        failed.append(f"{module.name}: {error!r}")
print("\\n".join(failed) or "every module imports")
"""


def _locked(names: list[str]) -> list[str]:
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    versions = {package["name"]: package["version"] for package in lock["package"]}
    return [f"{name}=={versions[name]}" for name in names]


def test_the_server_at_its_floors(postgres_server_url: str, redis_url: str, tmp_path: Path) -> None:
    requires_python = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    (interpreter,) = interpreters(requires_python)  # 3.13 only
    python = venv(interpreter, tmp_path / "venv")
    run(
        uv(),
        "pip",
        "install",
        "--quiet",
        "--python",
        python,
        "--resolution",
        "lowest-direct",
        "--editable",
        PROJECT_ROOT,
        "--editable",
        PROJECT_ROOT / "generated",
        *_locked(TEST_TOOLS),
        cwd=tmp_path,
    )
    wrong = not_at_floor(python, PROJECT_ROOT / "pyproject.toml")
    assert not wrong, f"floors uv could not install (raise them in pyproject.toml): {wrong}"

    assert run(python, "-c", IMPORT_EVERY_MODULE, cwd=tmp_path).strip() == "every module imports"
    assert "serve" in run(python.parent / "adplane", "--help", cwd=tmp_path)
    out = run(
        python,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        # Not pytest's shared temp root: a second session resets its permissions to 0700, and this
        # session's PostgreSQL (running as another user when root) lives below it.
        f"--basetemp={tmp_path / 'pytest'}",
        "-q",
        *SUBSET,
        cwd=PROJECT_ROOT,
        # This session's PostgreSQL server and Redis (the environment has no embedded ones).
        env={"TEST_DATABASE_URL": postgres_server_url, "TEST_REDIS_URL": redis_url},
    )
    assert " passed" in out, out[-3000:]
    assert "skipped" not in out, out[-3000:]  # (a failure already failed run())
