"""Schemathesis against the REST edge, from the committed OpenAPI document, with every check.

Two callers: a superuser (everything reachable) and a member of one workspace (everything else must
be refused without a trace). Valid and invalid input alike (`--mode all`), `--checks all`: no 5xx;
status codes, content types, headers and bodies as documented (the Watch routes' events included);
schema-valid input accepted and invalid input refused (see `valid_input_refused_only_by_state` in
tests/fuzz/hooks.py for the one allowance); 405 with Allow for undeclared methods; nothing of the
other workspace in the member's responses. `make test` runs a bounded number of examples per
operation; `make fuzz` many more (FUZZ_MAX_EXAMPLES).

What a schema cannot say, and how the run deals with it:
- opaque tokens (page and resume tokens) are only valid as the server issued them: they are sent
  empty (the first page; a watch from now);
- the operations in INPUT_DEPENDS_ON take input whose validity depends on other fields or on other
  resources; they may refuse schema-valid input as INVALID_ARGUMENT. Updates are among them: they
  read only the body fields their update_mask names, so they also accept invalid values in the
  others (INVALID_INPUT_ACCEPTED). Bodies of the wrong shape (a list of lists, null in a list) are
  refused at the edge (server/edge/strict_json.py) before the transcoder could coerce them.
- Undeclared methods are probed, except QUERY: Envoy refuses a QUERY without a body (it must carry
  one) with 400 before routing.
Strings are ASCII: outside ASCII the server refuses every non-printable character, more than a
pattern can name without a Unicode database (the document says so in words).
"""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from server.auth.roles import WorkspaceRole
from server.composition import Infrastructure
from server.edge.envoy import OPENAPI_PATH
from tests.callers import Caller, make_caller
from tests.e2e.conftest import Stack

SCHEMATHESIS = str(Path(sys.executable).parent / "st")
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "5"))
MODE = os.environ.get("FUZZ_MODE", "all")
PHASES = os.environ.get("FUZZ_PHASES", "examples,coverage,fuzzing")
CHECKS = "all"
# Operations whose input is valid or not depending on other fields or other resources, and why.
INPUT_DEPENDS_ON = {
    "WorkspaceService_CreateWorkspace": "status: a new workspace is ACTIVE or SUSPENDED, never ARCHIVED",
    "WorkspaceService_UpdateWorkspace": "status: ACTIVE or SUSPENDED only; DeleteWorkspace archives",
    "WorkspaceService_AddWorkspaceMember": "member.user_id is required here, not when a member is updated",
    "AccountService_RequestAccount": "currency and time zone: the ones Meta supports for ad accounts",
    "AccountService_RequestSpendCapChange": "spend_cap.currency must be the account's",
    "AuditLogService_ListAuditLogs": "filter.end_time must be after filter.start_time",
    "AuditLogService_ListWorkspaceAuditLogs": "filter.end_time must be after filter.start_time",
    "ApiKeyService_CreateApiKey": "role_names must name existing roles",
    "UserService_SetUserRoles": "role names must name existing roles",
    "BusinessManagerService_CreateBusinessManager": "system_user_token is required here, not in an update",
    "AccountService_AssignAccountUser": "distinct tasks: a task's name and its number are the same task",
}
UPDATE_MASK = "only the body fields update_mask names are read"
# Operations that may accept schema-invalid input, and why (besides the updates: UPDATE_MASK).
INVALID_INPUT_ACCEPTED: dict[str, str] = {}


async def _workspace(http: httpx.AsyncClient, name: str) -> str:
    reply = await http.post("/api/workspaces", json={"name": name})
    assert reply.status_code == 200, reply.text
    workspace_id: str = reply.json()["workspace"]["id"]
    return workspace_id


def _updates() -> list[str]:
    """The operations with an update_mask: only the body fields it names are read."""
    document = json.loads(OPENAPI_PATH.read_text())
    return sorted(
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
        if any(parameter["name"] == "update_mask" for parameter in operation.get("parameters", []))
    )


def _invalid_input_accepted(operations: dict[str, str]) -> str:
    """Config for the operations that may accept schema-invalid input, and why."""
    return "".join(
        f"""
[[operations]]
# {why}
include-operation-id = "{operation}"
checks.negative_data_rejection.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
"""
        for operation, why in sorted(operations.items())
    )


def fuzz(stack: Stack, tmp_path: Path, caller: Caller, *, workspace_ids: list[str], canaries: list[str]) -> None:
    # Path ids come from the seeded workspaces most of the time, so operations get past "not found".
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f"""
# A Watch answers its snapshot first; more events may take a heartbeat's time.
max-stream-events = 1

[generation]
max-examples = {MAX_EXAMPLES}
database = "none"
codec = "ascii"

[checks.positive_data_acceptance]
# 400 for valid input: see valid_input_refused_only_by_state (tests/fuzz/hooks.py).
expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]

[dictionaries.workspaces]
values = {json.dumps(workspace_ids)}

[dictionaries.first]
values = [""]

[parameters]
"path.workspace_id" = {{ dictionary = "workspaces", probability = 0.8 }}
"query.page_token" = {{ dictionary = "first", probability = 1.0 }}
"query.resume_token" = {{ dictionary = "first", probability = 1.0 }}

[auth.openapi.bearer]
bearer = "{caller.access_token}"
{_invalid_input_accepted(INVALID_INPUT_ACCEPTED | dict.fromkeys(_updates(), UPDATE_MASK))}
"""
    )
    command = [
        SCHEMATHESIS,
        "--config-file",
        str(config),
        "run",
        str(OPENAPI_PATH),
        "--url",
        stack.rest_url,
        "--mode",
        MODE,
        "--phases",
        PHASES,
        "--checks",
        CHECKS,
        "--exclude-method",
        "QUERY",
        "--workers",
        "2",
        "--seed",
        os.environ.get("FUZZ_SEED", "20261203"),
        "--no-color",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "10",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks",
        "FUZZ_CANARIES": "\n".join(canaries),
        "FUZZ_INPUT_DEPENDS_ON": "\n".join([*INPUT_DEPENDS_ON, *_updates()]),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    (tmp_path / "schemathesis.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-4000:]


@pytest.mark.usefixtures("infrastructure")
async def test_superuser(stack: Stack, http: httpx.AsyncClient, admin: Caller, tmp_path: Path) -> None:
    workspace_ids = [await _workspace(http, "Fuzz home"), await _workspace(http, "Fuzz other")]
    fuzz(stack, tmp_path, admin, workspace_ids=workspace_ids, canaries=[])


async def test_workspace_member(
    stack: Stack, http: httpx.AsyncClient, infrastructure: Infrastructure, tmp_path: Path
) -> None:
    home = await _workspace(http, "Fuzz home")
    canary = f"leak-canary-{uuid.uuid4().hex[:8]}"
    other = await _workspace(http, canary)
    member = await make_caller(infrastructure, memberships={uuid.UUID(home): WorkspaceRole.MEMBER})
    fuzz(stack, tmp_path, member, workspace_ids=[home, other], canaries=[canary, other])
