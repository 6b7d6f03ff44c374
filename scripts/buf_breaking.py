"""`buf breaking` (FILE rules) against the contract of the last release (`make proto-breaking`).

The base is the contract as released, kept in the repository: `protos/releases/v<X.Y.Z>.binpb`, the
buf image (without source info) of the protos each release published, written by
`python scripts/buf_breaking.py --record vX.Y.Z` as a step of the release (README). The newest
version is the base. It needs no git history and no tags, so a fresh clone, a shallow one or a
tarball compares the same way, on a branch and on main in CI alike; no recorded release is a
failure, never a pass.

A deliberate break is accepted for one element at a time in protos/accepted_breaking_changes.yaml:
the element's full name, the buf rule it breaks, the release it breaks compatibility with (`since`)
and why. Entries for the current base that no longer match a change fail the check; entries for an
older base are reported as expired (delete them when convenient).

Usage: python scripts/buf_breaking.py [--against REF | --record vX.Y.Z]
  --against REF   compare with the protos at any git commit instead
  --record V      check against the last release, then record the current protos as release V
"""

import argparse
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
ACCEPTED = ROOT / "protos" / "accepted_breaking_changes.yaml"
RELEASES = ROOT / "protos" / "releases"
VERSION = re.compile(r"v(\d+)\.(\d+)\.(\d+)")
# What `buf breaking` reads: the workspace config and the modules it names.
CONTRACT_PATHS = ["buf.yaml", "protos", "third_party"]
# Source info paths (descriptor.proto field numbers): file -> message/enum/service -> members.
_FILE_MEMBERS = {4: "message_type", 5: "enum_type", 6: "service"}
_MEMBERS = {
    "DescriptorProto": {2: "field", 3: "nested_type", 4: "enum_type", 8: "oneof_decl"},
    "EnumDescriptorProto": {2: "value"},
    "ServiceDescriptorProto": {2: "method"},
}
# The element a deletion removed is named in buf's message, not at its (former) location.
_DELETED = re.compile(
    r'Previously present (?:field|enum value) "[^"]*" with name "(?P<member>[^"]+)"'
    r'|Previously present (?:RPC|message|enum|service|oneof) "(?P<named>[^"]+)"'
)


class CheckError(Exception):
    pass


@dataclass(frozen=True)
class Violation:
    rule: str
    element: str
    where: str
    message: str


def git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CheckError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def version_key(version: str) -> tuple[int, ...]:
    found = VERSION.fullmatch(version)
    if found is None:
        raise CheckError(f"a release is named vX.Y.Z, not {version!r}")
    return tuple(map(int, found.groups()))


def recorded_releases() -> list[str]:
    """The recorded releases, oldest first."""
    return sorted((p.stem for p in RELEASES.glob("v*.binpb") if VERSION.fullmatch(p.stem)), key=version_key)


def release_base() -> str:
    """The newest recorded release."""
    releases = recorded_releases()
    if not releases:
        raise CheckError(
            f"no recorded release ({RELEASES.relative_to(ROOT)}/vX.Y.Z.binpb) to compare the protos with; "
            "record the contract of the last release with --record vX.Y.Z"
        )
    return releases[-1]


def export(ref: str, into: Path) -> None:
    """The contract as it was at `ref` (works in worktrees and without a checkout of `ref`)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, *CONTRACT_PATHS], cwd=ROOT, capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise CheckError(f"git archive {ref}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")


def buf(*args: str) -> subprocess.CompletedProcess[bytes]:
    # The buf-bin package's, next to this interpreter (make puts .venv/bin on PATH too).
    local = Path(sys.executable).parent / "buf"
    command = str(local) if local.exists() else "buf"
    return subprocess.run([command, *args], cwd=ROOT, capture_output=True, check=False)


class Elements:
    """Full names of the protos' elements by position, from `buf build` with source info."""

    def __init__(self) -> None:
        built = buf("build", "-o", "-#format=binpb")
        if built.returncode != 0:
            raise CheckError(f"buf build: {built.stderr.decode()}")
        self._files = {f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(built.stdout).file}

    def at(self, path: str, line: int, column: int) -> str:
        """The innermost element whose span holds the 1-based position; the package for a file."""
        name = next((n for n in self._files if path.endswith(n)), None)
        if name is None:
            return path
        file = self._files[name]
        best: tuple[int, str] = (0, file.package)
        for location in file.source_code_info.location:
            span = list(location.span)  # start line, start column, [end line,] end column; 0-based
            end_line = span[2] if len(span) == 4 else span[0]
            if not (span[0], span[1]) <= (line - 1, column - 1) <= (end_line, span[-1]):
                continue
            element = self._name(file, list(location.path))
            if element is not None and len(location.path) > best[0]:
                best = (len(location.path), element)
        return best[1]

    @staticmethod
    def _name(file: descriptor_pb2.FileDescriptorProto, path: list[int]) -> str | None:
        if len(path) < 2 or path[0] not in _FILE_MEMBERS:
            return None
        node: Any = getattr(file, _FILE_MEMBERS[path[0]])[path[1]]
        names = [file.package, node.name]
        rest = path[2:]
        while len(rest) >= 2:
            members = _MEMBERS.get(type(node).__name__, {})
            if rest[0] not in members:
                break
            node = getattr(node, members[rest[0]])[rest[1]]
            names.append(node.name)
            rest = rest[2:]
        return ".".join(names)


# buf.yaml's breaking configuration, for comparing two images (which carry no buf.yaml).
IMAGE_CONFIG = json.dumps({"version": "v2", "breaking": {"use": ["FILE"], "ignore": ["google"]}})


def breaking(base: Path) -> subprocess.CompletedProcess[bytes]:
    if base.is_dir():  # the workspace against the workspace at another commit
        return buf("breaking", "--against", str(base), "--error-format", "json")
    with tempfile.TemporaryDirectory() as tmp:  # a recorded release: an image against an image
        current = Path(tmp) / "current.binpb"
        built = buf("build", "-o", str(current))
        if built.returncode != 0:
            raise CheckError(f"buf build: {built.stderr.decode()}")
        return buf("breaking", str(current), "--against", str(base), "--config", IMAGE_CONFIG, "--error-format", "json")


def violations(base: Path) -> list[Violation]:
    """What breaks against `base`: a directory holding the contract, or a recorded release's image."""
    result = breaking(base)
    if result.returncode not in (0, 100):  # 100: breaking changes found
        raise CheckError(f"buf breaking: {result.stderr.decode()}{result.stdout.decode()}")
    elements = Elements()
    found = []
    for line in result.stdout.decode().splitlines():
        item = json.loads(line)
        element = elements.at(item["path"], item.get("start_line", 1), item.get("start_column", 1))
        deleted = _DELETED.search(item["message"])
        if deleted:  # located at what held it: the message, service, enum, or the file (its package)
            element = f"{element}.{deleted['member'] or deleted['named']}"
        where = f"{item['path']}:{item.get('start_line', 0)}"
        found.append(Violation(rule=item["type"], element=element, where=where, message=item["message"]))
    return found


def accepted_entries() -> list[dict[str, str]]:
    entries = (yaml.safe_load(ACCEPTED.read_text()) or {}).get("accepted") or []
    for entry in entries:
        if set(entry) != {"element", "rule", "since", "reason"} or not all(
            isinstance(value, str) and value.strip() for value in entry.values()
        ):
            raise CheckError(f"{ACCEPTED.relative_to(ROOT)}: each entry has element, rule, since and reason: {entry}")
    return entries


def check(base: str, *, release: bool) -> int:
    """Compare with release `base` (recorded) or, when `release` is false, with git commit `base`."""
    if release:
        found = violations(RELEASES / f"{base}.binpb")
        described = f"{base} ({RELEASES.relative_to(ROOT)}/{base}.binpb)"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            export(base, Path(tmp))
            found = violations(Path(tmp))
        described = f"{base} ({git('rev-parse', '--short', base)})"
    entries = accepted_entries()
    current = [e for e in entries if not release or e["since"] == base]
    expired = [e for e in entries if e not in current]
    unaccepted = [v for v in found if not any((e["element"], e["rule"]) == (v.element, v.rule) for e in current)]
    unused = [e for e in current if not any((e["element"], e["rule"]) == (v.element, v.rule) for v in found)]
    print(f"buf breaking: against {described}")
    for violation in found:
        mark = "  " if violation in unaccepted else "  accepted: "
        print(f"{mark}{violation.rule} {violation.element} ({violation.where}): {violation.message}")
    for entry in expired:
        print(f"  expired (accepted against {entry['since']}, not {base}; delete it): {entry['element']}")
    if unaccepted:
        name = ACCEPTED.relative_to(ROOT)
        print(
            f"buf breaking: {len(unaccepted)} breaking change(s) against {base}. Undo them, or accept each in "
            f"{name} (element, rule, since: {base}, reason), to be reviewed with the change.",
            file=sys.stderr,
        )
        return 1
    if unused:
        for entry in unused:
            print(f"buf breaking: accepted but no longer breaking, delete it: {entry}", file=sys.stderr)
        return 1
    print(f"buf breaking: no unaccepted breaking changes against {base}")
    return 0


def record(version: str) -> int:
    """Check against the last release, then keep the current contract as release `version`."""
    version_key(version)
    releases = recorded_releases()
    if version in releases:
        raise CheckError(f"{version} is recorded already")
    if releases:
        if version_key(version) <= version_key(releases[-1]):
            raise CheckError(f"{version} is not newer than the last release, {releases[-1]}")
        status = check(releases[-1], release=True)
        if status != 0:
            return status
    RELEASES.mkdir(exist_ok=True)
    built = buf("build", "--exclude-source-info", "-o", str(RELEASES / f"{version}.binpb"))
    if built.returncode != 0:
        raise CheckError(f"buf build: {built.stderr.decode()}")
    print(f"buf breaking: recorded the contract as {version}; commit {RELEASES.relative_to(ROOT)}/{version}.binpb")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--against", help="compare with the protos at this git commit instead of the last release")
    choice.add_argument("--record", metavar="VERSION", help="record the current protos as release VERSION")
    args = parser.parse_args()
    try:
        if args.record:
            return record(args.record)
        if args.against:
            return check(args.against, release=False)
        return check(release_base(), release=True)
    except CheckError as error:
        print(f"buf breaking: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
