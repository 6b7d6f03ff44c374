"""Empty virtual environments for the packaging tests: the interpreters to make them with, and what to
install into them (the latest releases, or exactly the floors a pyproject.toml declares).

Everything goes through uv, from its cache (~/.cache/uv): after the first run no download is needed.
"""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# One install or build; a cold uv cache downloads a few dozen wheels within it.
COMMAND_TIMEOUT = 300


def uv() -> str:
    found = shutil.which("uv") or str(PROJECT_ROOT / ".tools" / "uv" / "bin" / "uv")
    assert Path(found).exists(), "uv not found (make bootstrap installs it into .tools/)"
    return found


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run outside the project's virtual environment; fail the test with the output on an error."""
    clean = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "UV_PROJECT_ENVIRONMENT"}}
    # uv may not download interpreters: a test uses only those on this machine.
    clean["UV_PYTHON_DOWNLOADS"] = "never"
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    return result.stdout


@dataclass(frozen=True)
class Interpreter:
    path: Path
    version: tuple[int, int]

    @property
    def name(self) -> str:
        return f"python{self.version[0]}.{self.version[1]}"


def _version_of(path: Path) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [str(path), "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return int(out[0]), int(out[1])


def interpreters(requires_python: str) -> list[Interpreter]:
    """One interpreter per Python version on this machine that `requires_python` admits: this test
    run's own (3.13, the one a fresh machine has), then any other on PATH or in pyenv's versions."""
    base = Path(getattr(sys, "_base_executable", sys.executable))
    candidates = [base, *(Path(p) for p in (shutil.which(f"python3.{minor}") for minor in range(8, 30)) if p)]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(pyenv_root.glob("3.*/bin/python3"))
    specifier = SpecifierSet(requires_python)
    found: dict[tuple[int, int], Interpreter] = {}
    for path in candidates:
        version = _version_of(path)
        if version is not None and version not in found and Version(f"{version[0]}.{version[1]}") in specifier:
            found[version] = Interpreter(path=path, version=version)
    return list(found.values())


def venv(interpreter: Interpreter | Path, path: Path) -> Path:
    """An empty virtual environment; returns its python."""
    python = interpreter.path if isinstance(interpreter, Interpreter) else interpreter
    run(uv(), "venv", "--quiet", "--python", python, path, cwd=path.parent)
    return path / "bin" / "python"


def dependencies(pyproject: Path) -> list[Requirement]:
    return [Requirement(text) for text in tomllib.loads(pyproject.read_text())["project"]["dependencies"]]


def floor(requirement: Requirement) -> Version | None:
    """The lowest version a requirement admits (its `>=`), None when it pins or names none."""
    floors = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    return min(floors) if floors else None


def floor_pins(*pyprojects: Path) -> list[str]:
    """`name==floor` for every floored dependency of these projects."""
    pins: dict[str, Version] = {}
    for pyproject in pyprojects:
        for requirement in dependencies(pyproject):
            lowest = floor(requirement)
            if lowest is not None:
                pins[requirement.name] = max(lowest, pins.get(requirement.name, lowest))
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def installed(python: Path) -> dict[str, Version]:
    """Distribution name (normalized) -> version, in the environment of `python`."""
    listing = "import importlib.metadata as m\nfor d in m.distributions(): print(d.metadata['Name'], d.version)"
    out = run(python, "-c", listing, cwd=python.parent)
    return {_normalized(name): Version(version) for name, version in (line.split() for line in out.splitlines())}


def not_at_floor(python: Path, *pyprojects: Path) -> list[str]:
    """The floored dependencies of these projects that `python`'s environment has at another version."""
    versions = installed(python)
    wrong = []
    for pyproject in pyprojects:
        for requirement in dependencies(pyproject):
            lowest = floor(requirement)
            have = versions.get(_normalized(requirement.name))
            if lowest is not None and have != lowest:
                wrong.append(f"{requirement.name}: floor {lowest}, installed {have}")
    return wrong


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
