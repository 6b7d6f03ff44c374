"""The Python client as a user installs it: adplane-client and adplane-protos built as sdists and wheels
(the wheels from the sdists, as a registry serves them), installed into empty virtual environments,
used against the stack, at the latest dependency versions and at exactly the declared floors, on every
Python version the client claims that this machine has."""

import shutil
import tarfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.auth.roles import WorkspaceRole
from server.composition import Infrastructure
from server.workspaces.schemas import WorkspaceCreateRequestSchema
from tests.callers import PASSWORD, make_caller
from tests.e2e.conftest import Stack
from tests.python_envs import (
    PROJECT_ROOT,
    Interpreter,
    floor_pins,
    interpreters,
    not_at_floor,
    run,
    uv,
    venv,
)

CLIENT = PROJECT_ROOT / "sdk" / "python"
PROTOS = PROJECT_ROOT / "generated"
CLAIMED = interpreters(">=3.13")  # sdk/python/pyproject.toml's requires-python


@dataclass(frozen=True)
class _Membership:
    name: str
    member_email: str


async def _workspace_with_member(infrastructure: Infrastructure) -> _Membership:
    name = f"Quickstart {uuid.uuid4().hex[:6]}"
    async with infrastructure.unit_of_work() as uow:
        workspace = await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name=name))
    member = await make_caller(infrastructure, memberships={workspace.id: WorkspaceRole.MEMBER})
    return _Membership(name=name, member_email=member.email)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist and wheel of both distributions (`uv build`: the wheel is built from the sdist)."""
    out = tmp_path_factory.mktemp("dists")
    for project in (PROTOS, CLIENT):
        run(uv(), "build", "--quiet", "--out-dir", out, project, cwd=PROJECT_ROOT)
    return out


def _one(dists: Path, pattern: str) -> Path:
    (found,) = dists.glob(pattern)
    return found


def test_the_client_claims_the_python_this_machine_tests() -> None:
    assert (3, 13) in {interpreter.version for interpreter in CLAIMED}
    assert "Programming Language :: Python :: 3.13" in (CLIENT / "pyproject.toml").read_text()


def test_the_wheels_ship_one_generated_package_and_the_license(dists: Path) -> None:
    committed = {
        str(path.relative_to(PROTOS)): path.read_bytes()
        for path in (PROTOS / "adplane").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    with zipfile.ZipFile(_one(dists, "adplane_protos-*.whl")) as protos:
        shipped = {name: protos.read(name) for name in protos.namelist() if not name.startswith("adplane_protos-")}
        metadata = protos.read(next(n for n in protos.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        assert any(name.endswith(".dist-info/licenses/LICENSE") for name in protos.namelist())
    assert shipped == committed  # byte for byte: no second copy that could drift
    assert "adplane/py.typed" in shipped
    assert "License-Expression: Apache-2.0" in metadata

    with zipfile.ZipFile(_one(dists, "adplane_client-*.whl")) as client:
        names = client.namelist()
        metadata = client.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    # Its own top-level package only: `adplane` comes from adplane-protos, which the server uses too.
    assert {name.split("/")[0] for name in names if not name.startswith("adplane_client-")} == {"adplane_client"}
    assert "adplane_client/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "License-Expression: Apache-2.0" in metadata
    assert "Requires-Dist: adplane-protos==" in metadata


def test_the_sdists_carry_everything_a_build_needs(dists: Path) -> None:
    for pattern, expected in [
        ("adplane_protos-*.tar.gz", {"pyproject.toml", "PKG-INFO", "README.md", "LICENSE", "adplane"}),
        ("adplane_client-*.tar.gz", {"pyproject.toml", "PKG-INFO", "README.md", "LICENSE", "src", "examples"}),
    ]:
        with tarfile.open(_one(dists, pattern)) as sdist:
            top = {Path(name).parts[1] for name in sdist.getnames() if len(Path(name).parts) > 1}
        # No tests, no OpenAPI document or descriptor set, nothing from outside the project folder.
        assert top - {".gitignore"} == expected, pattern


@pytest.mark.parametrize("interpreter", CLAIMED, ids=lambda interpreter: interpreter.name)
def test_the_sdists_install_into_an_empty_environment(dists: Path, interpreter: Interpreter, tmp_path: Path) -> None:
    python = venv(interpreter, tmp_path / "venv")
    sdists = [_one(dists, "adplane_protos-*.tar.gz"), _one(dists, "adplane_client-*.tar.gz")]
    run(uv(), "pip", "install", "--quiet", "--python", python, *sdists, cwd=tmp_path)
    out = run(
        python,
        "-c",
        "import adplane_client, adplane.v1.request_service_pb2_grpc as s; print(s.RequestServiceStub.__name__)",
        cwd=tmp_path,
    )
    assert out.strip() == "RequestServiceStub"


@pytest.mark.parametrize("versions", ["latest", "floors"])
@pytest.mark.parametrize("interpreter", CLAIMED, ids=lambda interpreter: interpreter.name)
async def test_installed_client_against_the_stack(
    dists: Path,
    interpreter: Interpreter,
    versions: str,
    stack: Stack,
    infrastructure: Infrastructure,
    tmp_path: Path,
) -> None:
    admin = await make_caller(infrastructure, superuser=True)
    python = venv(interpreter, tmp_path / "venv")
    wheels = [_one(dists, "adplane_protos-*.whl"), _one(dists, "adplane_client-*.whl")]
    pins = floor_pins(PROTOS / "pyproject.toml", CLIENT / "pyproject.toml") if versions == "floors" else []
    run(uv(), "pip", "install", "--quiet", "--python", python, *wheels, *pins, cwd=tmp_path)
    if versions == "floors":
        assert not not_at_floor(python, PROTOS / "pyproject.toml", CLIENT / "pyproject.toml")
    check = Path(__file__).with_name("python_client_check.py")
    shutil.copy(check, tmp_path / check.name)  # run from outside the repository: nothing else importable
    out = run(python, check.name, stack.server.target, admin.email, PASSWORD, cwd=tmp_path)
    assert "python client: ok" in out

    # The README's example, as a member of one workspace (ListMyWorkspaces; staff calls are refused).
    workspace = await _workspace_with_member(infrastructure)
    example = CLIENT / "examples" / "quickstart.py"
    out = run(python, example, stack.server.target, workspace.member_email, PASSWORD, "1", cwd=tmp_path)
    assert f"member of {workspace.name} as WORKSPACE_ROLE_MEMBER" in out, out
    assert "refused: PERMISSION_DENIED" in out, out
    assert "snapshot {" in out, out
