"""What a release carries: one version, one license declared by every package, a changelog entry.

(`make check-generated` checks that the manifests carry pyproject.toml's version and the packages'
folders a copy of LICENSE.)"""

import json
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECTS = [ROOT / "pyproject.toml", ROOT / "sdk/python/pyproject.toml", ROOT / "generated/pyproject.toml"]


def test_every_package_declares_the_license_at_the_root() -> None:
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
    for pyproject in PYPROJECTS:
        project = tomllib.loads(pyproject.read_text())["project"]
        assert (project["license"], project["license-files"]) == ("Apache-2.0", ["LICENSE"]), pyproject
        assert (pyproject.parent / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
    package = json.loads((ROOT / "sdk" / "typescript" / "package.json").read_text())
    assert package["license"] == "Apache-2.0"
    assert "private" not in package


def test_the_changelog_has_the_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    headings = [line for line in (ROOT / "CHANGELOG.md").read_text().splitlines() if line.startswith("## ")]
    assert headings[0] == "## Unreleased" or headings[0].startswith(f"## {version}")
    assert any(heading.startswith(f"## {version}") for heading in headings)
