"""scripts/buf_breaking.py in a repository of its own: the recorded release it compares with, the
changes it refuses, the accepted ones it lets through, and recording the next release."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "buf_breaking.py"
WORKSPACE = "protos/adplane/v1/workspace.proto"
BUSINESS_MANAGER = "protos/adplane/v1/business_manager.proto"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def check(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(repo / "scripts" / "buf_breaking.py"), *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def accept(repo: Path, *entries: str) -> None:
    (repo / "protos" / "accepted_breaking_changes.yaml").write_text("accepted:\n" + "".join(entries))


def entry(element: str, rule: str, since: str = "v1.0.0") -> str:
    return f"  - element: {element}\n    rule: {rule}\n    since: {since}\n    reason: on purpose\n"


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The contract released (recorded) as v1.0.0, then one more commit."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("buf.yaml", "protos", "third_party"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, repo / name)
    (repo / "scripts").mkdir()
    shutil.copyfile(SCRIPT, repo / "scripts" / SCRIPT.name)
    shutil.rmtree(repo / "protos" / "releases", ignore_errors=True)
    accept(repo)
    recorded = check(repo, "--record", "v1.0.0")
    assert recorded.returncode == 0, recorded.stderr
    git(repo, "init", "-q")
    commit(repo, "the contract, released as v1.0.0")
    (repo / "README").write_text("after the release\n")
    commit(repo, "a later commit")
    return repo


def delete_field(repo: Path, proto: str, field: str) -> None:
    path = repo / proto
    text = path.read_text()
    found = re.search(rf"\n  string {field} = (\d+);", text)
    assert found, f"{proto} has no `string {field}`"
    path.write_text(text.replace(found.group(0), f"\n  reserved {found.group(1)};"))


def break_contract(repo: Path) -> None:
    delete_field(repo, WORKSPACE, "etag")


def test_no_change_passes_against_the_last_release(repo: Path) -> None:
    result = check(repo)
    assert result.returncode == 0, result.stderr
    assert "against v1.0.0" in result.stdout


def test_a_breaking_change_fails_naming_its_element(repo: Path) -> None:
    break_contract(repo)
    result = check(repo)
    assert result.returncode == 1
    assert "FIELD_NO_DELETE adplane.v1.Workspace.etag" in result.stdout


def test_an_accepted_element_passes_and_only_that_one(repo: Path) -> None:
    break_contract(repo)
    accept(repo, entry("adplane.v1.Workspace.etag", "FIELD_NO_DELETE"))
    assert check(repo).returncode == 0
    # Another break of the same rule elsewhere is not covered by that entry.
    delete_field(repo, BUSINESS_MANAGER, "etag")
    result = check(repo)
    assert result.returncode == 1
    assert "FIELD_NO_DELETE adplane.v1.BusinessManager.etag" in result.stdout


def test_an_entry_that_matches_nothing_fails_unless_it_is_for_an_older_release(repo: Path) -> None:
    accept(repo, entry("adplane.v1.Workspace.etag", "FIELD_NO_DELETE"))
    result = check(repo)
    assert result.returncode == 1
    assert "no longer breaking" in result.stderr
    accept(repo, entry("adplane.v1.Workspace.etag", "FIELD_NO_DELETE", since="v0.9.0"))
    result = check(repo)
    assert result.returncode == 0, result.stderr
    assert "expired" in result.stdout


def test_an_entry_without_a_reason_is_refused(repo: Path) -> None:
    break_contract(repo)
    accept(repo, entry("adplane.v1.Workspace.etag", "FIELD_NO_DELETE").replace("on purpose", ""))
    assert check(repo).returncode == 2


def test_recording_a_release_checks_it_first_and_makes_it_the_next_base(repo: Path) -> None:
    break_contract(repo)
    refused = check(repo, "--record", "v1.1.0")
    assert refused.returncode == 1
    assert not (repo / "protos" / "releases" / "v1.1.0.binpb").exists()
    accept(repo, entry("adplane.v1.Workspace.etag", "FIELD_NO_DELETE"))
    assert check(repo, "--record", "v1.0.1").returncode == 0
    assert check(repo, "--record", "v1.0.0").returncode == 2  # not newer than the last one
    result = check(repo)
    assert result.returncode == 0, result.stderr
    assert "against v1.0.1" in result.stdout
    assert "expired" in result.stdout  # the entry accepted against v1.0.0
    # The next break is judged against v1.0.1, not against what v1.0.0 accepted.
    delete_field(repo, BUSINESS_MANAGER, "etag")
    assert "FIELD_NO_DELETE adplane.v1.BusinessManager.etag" in check(repo).stdout


def test_the_check_needs_no_git_history(repo: Path) -> None:
    shutil.rmtree(repo / ".git")
    break_contract(repo)
    result = check(repo)
    assert result.returncode == 1
    assert "FIELD_NO_DELETE adplane.v1.Workspace.etag" in result.stdout


def test_against_a_commit_compares_with_the_protos_there(repo: Path) -> None:
    break_contract(repo)
    commit(repo, "the break")
    result = check(repo, "--against", "HEAD~1")
    assert result.returncode == 1
    assert "FIELD_NO_DELETE adplane.v1.Workspace.etag" in result.stdout
    assert check(repo, "--against", "HEAD").returncode == 0


def test_no_recorded_release_fails(repo: Path) -> None:
    shutil.rmtree(repo / "protos" / "releases")
    result = check(repo)
    assert result.returncode == 2
    assert "no recorded release" in result.stderr
