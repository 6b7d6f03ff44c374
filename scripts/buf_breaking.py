"""`buf breaking` (FILE rules) against the contract of the last release (`make proto-breaking`).

The base is the newest release tag (`v<major>.<minor>.<patch>`) among HEAD's ancestors, HEAD itself
excluded: what the published clients were built from. It is found the same way on a branch and on
main in CI (a fresh clone of main, where the merge-base with main would be HEAD itself), and no base
is a failure, never a pass: a shallow clone, or one without tags, must fetch them.

A deliberate break is accepted for one element at a time in protos/accepted_breaking_changes.yaml:
the element's full name, the buf rule it breaks, the release it breaks compatibility with (`since`)
and why. Entries for the current base that no longer match a change fail the check; entries for an
older base are reported as expired (delete them when convenient).

Usage: python scripts/buf_breaking.py [--against REF]   (REF: compare with any commit instead)
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
RELEASE_TAGS = "v[0-9]*.[0-9]*.[0-9]*"
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


def release_base() -> str:
    """The newest release tag among HEAD's ancestors, HEAD excluded."""
    if git("rev-parse", "--is-shallow-repository") == "true":
        raise CheckError("a shallow clone has no release to compare with: git fetch --unshallow --tags")
    try:
        return git("describe", "--tags", "--abbrev=0", f"--match={RELEASE_TAGS}", "HEAD^")
    except CheckError as error:
        raise CheckError(
            f"no release tag ({RELEASE_TAGS}) among HEAD's ancestors to compare the protos with; fetch the "
            f"tags (git fetch --tags) or name a base with --against ({error})"
        ) from None


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


def violations(base: Path) -> list[Violation]:
    result = buf("breaking", "--against", str(base), "--error-format", "json")
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


def check(base_ref: str, *, release: bool) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        export(base_ref, Path(tmp))
        found = violations(Path(tmp))
    entries = accepted_entries()
    current = [e for e in entries if not release or e["since"] == base_ref]
    expired = [e for e in entries if e not in current]
    unaccepted = [v for v in found if not any((e["element"], e["rule"]) == (v.element, v.rule) for e in current)]
    unused = [e for e in current if not any((e["element"], e["rule"]) == (v.element, v.rule) for v in found)]
    print(f"buf breaking: against {base_ref} ({git('rev-parse', '--short', base_ref)})")
    for violation in found:
        mark = "  " if violation in unaccepted else "  accepted: "
        print(f"{mark}{violation.rule} {violation.element} ({violation.where}): {violation.message}")
    for entry in expired:
        print(f"  expired (accepted against {entry['since']}, not {base_ref}; delete it): {entry['element']}")
    if unaccepted:
        name = ACCEPTED.relative_to(ROOT)
        print(
            f"buf breaking: {len(unaccepted)} breaking change(s) against {base_ref}. Undo them, or accept each in "
            f"{name} (element, rule, since: {base_ref}, reason), to be reviewed with the change.",
            file=sys.stderr,
        )
        return 1
    if unused:
        for entry in unused:
            print(f"buf breaking: accepted but no longer breaking, delete it: {entry}", file=sys.stderr)
        return 1
    print(f"buf breaking: no unaccepted breaking changes against {base_ref}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", help="compare with this commit instead of the last release")
    args = parser.parse_args()
    try:
        base = args.against or release_base()
        return check(base, release=args.against is None)
    except CheckError as error:
        print(f"buf breaking: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
