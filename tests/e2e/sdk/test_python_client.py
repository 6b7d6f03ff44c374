"""The adplane-client distribution: built as a wheel, installed into an empty venv, used against the stack."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from server.composition import Infrastructure
from tests.callers import PASSWORD, make_caller
from tests.e2e.conftest import Stack


def _uv(project_root: Path) -> str:
    found = shutil.which("uv") or str(project_root / ".tools" / "uv" / "bin" / "uv")
    assert Path(found).exists(), "uv not found (make bootstrap installs it into .tools/)"
    return found


def _run(*command: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(_uv(project_root), "build", "--wheel", "--quiet", "--out-dir", str(out), "sdk/python", cwd=project_root)
    (built,) = out.glob("adplane_client-*.whl")
    return built


def test_wheel_ships_the_one_generated_package(wheel: Path, project_root: Path) -> None:
    generated = project_root / "generated"
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name: archive.read(name) for name in archive.namelist() if name.startswith("adplane/")}
        assert "adplane_client/py.typed" in archive.namelist()
    committed = {
        str(path.relative_to(generated)): path.read_bytes()
        for path in generated.joinpath("adplane").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert shipped == committed  # byte for byte: no second copy that could drift
    assert "adplane/py.typed" in shipped


async def test_installed_client_against_the_stack(
    wheel: Path, project_root: Path, stack: Stack, infrastructure: Infrastructure, tmp_path: Path
) -> None:
    admin = await make_caller(infrastructure, superuser=True)
    venv = tmp_path / "venv"
    uv = _uv(project_root)
    _run(uv, "venv", "--quiet", "--python", sys.executable, str(venv), cwd=tmp_path)
    _run(uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), str(wheel), cwd=tmp_path)
    check = Path(__file__).with_name("python_client_check.py")
    shutil.copy(check, tmp_path / check.name)  # run from outside the repository: nothing else importable
    out = _run(str(venv / "bin" / "python"), check.name, stack.server.target, admin.email, PASSWORD, cwd=tmp_path)
    assert "python client: ok" in out
