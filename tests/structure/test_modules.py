"""The module structure: no pair of server/ modules imports each other, and no code outside the
composition root and the repositories touches a database session (docs/architecture.md)."""

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent.parent
SERVER = ROOT / "server"

# The composition root and the worker side import every module by design.
ROOT_MODULES = {"composition", "app", "cli", "models", "background"}
# A unit of work's session, or any object's `.session` (sessions reach code only as `session`).
SESSION_USE = re.compile(r"\.session\b")


def module_graph() -> ModuleType:
    spec = importlib.util.spec_from_file_location("module_graph", ROOT / "scripts" / "module_graph.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_pair_of_modules_imports_each_other() -> None:
    graph_module = module_graph()
    graph = graph_module.module_graph()
    pairs = {(a, b) for a, b in graph_module.mutual_pairs(graph) if a not in ROOT_MODULES and b not in ROOT_MODULES}
    assert pairs == set(), "modules importing each other: make one depend on the other's interface (a Protocol)"


def test_the_graph_finds_a_mutual_import() -> None:
    graph_module = module_graph()
    assert graph_module.mutual_pairs({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == [("a", "b")]


def session_users() -> set[str]:
    found = set()
    for path in SERVER.rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if relative == "server/composition.py" or path.name == "repository.py":
            continue
        if SESSION_USE.search(path.read_text()):
            found.add(relative)
    return found


def test_no_code_touches_a_session_outside_composition_and_repositories() -> None:
    assert session_users() == set(), "reach data through what the unit of work offers, not its session"


def test_the_scan_finds_a_session_use() -> None:
    assert SESSION_USE.search("accounts = AccountRepository(uow.session)")
    assert not SESSION_USE.search("async with infrastructure.sessions() as session:")
