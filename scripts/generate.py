"""Regenerate everything derived from protos/ (`make generate`), or check for drift (`--check`).

Writes:
  third_party/googleapis/  the google/api and google/rpc protos the contract imports, copied from
                           the installed googleapis-common-protos so buf never needs the network;
  generated/adplane/       Python messages, gRPC stubs and their mypy stubs;
  generated/descriptors.binpb
                           one FileDescriptorSet with every file (google/rpc/status.proto and
                           error_details.proto included), with source info (the comments), for Envoy's
                           transcoder, reflection and the OpenAPI document;
  sdk/typescript/src/gen/  the TypeScript SDK's messages and services (protoc-gen-es);
  generated/openapi.json   the OpenAPI 3.1 document of the REST routes (scripts/openapi.py);
  generated/api-reference.html
                           swagger-ui's page with the document, one file (scripts/api_reference.py);
  generated/pyproject.toml, README.md, LICENSE
                           the adplane-protos distribution of generated/adplane (scripts/adplane_protos/);

and keeps the packages' metadata in step with the repository's (`synced_files`): the version, which
lives in pyproject.toml's [project] table only, in sdk/python/pyproject.toml, sdk/typescript/package.json,
package-lock.json and the `adplane-protos==` pins; LICENSE in each package's folder.
"""

import argparse
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import google.api.annotations_pb2
from api_reference import build_reference_page
from openapi import build_document, render

ROOT = Path(__file__).resolve().parent.parent
GOOGLE_PROTOS = [
    "api/annotations.proto",
    "api/field_behavior.proto",
    "api/http.proto",
    "rpc/code.proto",
    "rpc/error_details.proto",
    "rpc/status.proto",
]
DERIVED = ["third_party/googleapis", "generated", "sdk/typescript/src/gen"]
# Installed by `npm ci` (make bootstrap), pinned by package-lock.json.
SWAGGER_UI = ROOT / "node_modules" / "swagger-ui-dist"
# The adplane-protos distribution's own files, written into generated/ with the version.
PROTOS_PACKAGE = ROOT / "scripts" / "adplane_protos"


def project_version(root: Path) -> str:
    """The one place the version is written: pyproject.toml's [project] version."""
    version: str = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    return version


def _set_version(pyproject: str, version: str) -> str:
    pyproject = re.sub(r'(?m)^version = "[^"]*"$', f'version = "{version}"', pyproject, count=1)
    return re.sub(r'"adplane-protos==[^"]*"', f'"adplane-protos=={version}"', pyproject)


def _json(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"  # as npm writes them


def synced_files(root: Path) -> dict[Path, str]:
    """Files kept in step with the repository's version and LICENSE, as they should read."""
    version = project_version(root)
    files = {
        root / "pyproject.toml": _set_version((root / "pyproject.toml").read_text(), version),
        root / "sdk" / "python" / "pyproject.toml": _set_version(
            (root / "sdk" / "python" / "pyproject.toml").read_text(), version
        ),
    }
    package = json.loads((root / "sdk" / "typescript" / "package.json").read_text())
    package["version"] = version
    files[root / "sdk" / "typescript" / "package.json"] = _json(package)
    lock = json.loads((root / "package-lock.json").read_text())
    lock["packages"]["sdk/typescript"]["version"] = version
    files[root / "package-lock.json"] = _json(lock)
    for folder in ("sdk/python", "sdk/typescript"):
        files[root / folder / "LICENSE"] = (root / "LICENSE").read_text()
    return files


def _buf(*args: str, cwd: Path) -> None:
    env = dict(os.environ)
    # The venv's plugins and node; protoc-gen-es from node_modules (npm ci, in the real repository).
    env["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent), str(ROOT / "node_modules" / ".bin"), env.get("PATH", "")]
    )
    subprocess.run(["buf", *args], cwd=cwd, env=env, check=True)


def generate(into: Path) -> None:
    """Write the derived trees of DERIVED under `into` (the repo root or a scratch copy)."""
    google_src = Path(google.api.annotations_pb2.__file__).parent.parent
    third_party = into / "third_party" / "googleapis" / "google"
    shutil.rmtree(third_party, ignore_errors=True)
    for name in GOOGLE_PROTOS:
        (third_party / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(google_src / name, third_party / name)

    generated = into / "generated"
    shutil.rmtree(generated, ignore_errors=True)
    generated.mkdir(parents=True)
    shutil.rmtree(into / "sdk" / "typescript" / "src" / "gen", ignore_errors=True)
    _buf("generate", cwd=into)
    _buf("generate", "--template", "buf.gen.es.yaml", cwd=into)
    _buf("build", "-o", str(generated / "descriptors.binpb"), cwd=into)
    openapi = build_document((generated / "descriptors.binpb").read_bytes())
    (generated / "openapi.json").write_text(render(openapi))
    (generated / "api-reference.html").write_text(build_reference_page(SWAGGER_UI))
    # Message modules that declare no service get an empty *_pb2_grpc module; drop them.
    for stub in generated.rglob("*_pb2_grpc.py"):
        if "\nclass " not in stub.read_text():
            stub.unlink()
            stub.with_suffix(".pyi").unlink()
    for package in (p for p in generated.rglob("*") if p.is_dir()):
        (package / "__init__.py").touch()
    # Typed: the messages and stubs come with .pyi files.
    (generated / "adplane" / "py.typed").touch()
    # ...and a distribution of their own, adplane-protos, that the server and the client depend on.
    template = (PROTOS_PACKAGE / "pyproject.toml.template").read_text()
    (generated / "pyproject.toml").write_text(template.replace("{version}", project_version(into)))
    shutil.copyfile(PROTOS_PACKAGE / "README.md", generated / "README.md")
    shutil.copyfile(into / "LICENSE", generated / "LICENSE")


def _differences(left: Path, right: Path) -> list[str]:
    diffs: list[str] = []

    def walk(cmp: filecmp.dircmp[str], prefix: str) -> None:
        diffs.extend(f"{prefix}{name}" for name in cmp.left_only + cmp.right_only)
        diffs.extend(f"{prefix}{name}" for name in cmp.diff_files)
        for name, sub in cmp.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(filecmp.dircmp(left, right, ignore=["__pycache__"]), f"{left.name}/")
    return diffs


def check() -> int:
    """Regenerate into a scratch copy of the repo and compare with the committed trees."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for name in ["buf.yaml", "buf.gen.yaml", "buf.gen.es.yaml", "protos", "scripts", "pyproject.toml", "LICENSE"]:
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copyfile)(src, scratch / name)
        (scratch / "third_party" / "googleapis").mkdir(parents=True)
        generate(scratch)
        drift = [d for sub in DERIVED for d in _differences(ROOT / sub, scratch / sub)]
    drift += [str(path.relative_to(ROOT)) for path, text in synced_files(ROOT).items() if path.read_text() != text]
    if drift:
        print("generated code is out of date; run `make generate` and commit:", file=sys.stderr)
        for path in drift:
            print(f"  {path}", file=sys.stderr)
        return 1
    print("generated code is up to date")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if regenerating changes anything")
    args = parser.parse_args()
    if args.check:
        return check()
    generate(ROOT)
    for path, text in synced_files(ROOT).items():
        if path.read_text() != text:
            path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
