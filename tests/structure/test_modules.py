"""The module structure (docs/architecture.md): no pair of server/ modules imports each other, no
circle of imports, only the entry points import the composition root, and no code outside the
composition root and the repositories touches a database session."""

import ast
import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent.parent
SERVER = ROOT / "server"

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
    pairs = graph_module.mutual_pairs(graph_module.module_graph())
    assert pairs == [], "modules importing each other: make one depend on the other's interface (a Protocol)"


def test_no_circle_of_imports() -> None:
    graph_module = module_graph()
    assert graph_module.import_cycles(graph_module.module_graph()) == []


def test_only_the_entry_points_import_the_composition_root() -> None:
    graph_module = module_graph()
    importers = graph_module.root_importers(graph_module.module_graph())
    assert importers == [], "take a unit-of-work factory or the collaborators as arguments (server/units.py)"


def test_the_graph_finds_a_mutual_import() -> None:
    graph_module = module_graph()
    assert graph_module.mutual_pairs({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == [("a", "b")]


def test_the_graph_finds_a_circle_of_three() -> None:
    graph_module = module_graph()
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert graph_module.mutual_pairs(graph) == []
    assert graph_module.import_cycles(graph) == [["a", "b", "c"]]


def test_the_graph_finds_an_import_of_the_root_from_below() -> None:
    graph_module = module_graph()
    graph = {"composition": {"accounts"}, "app": {"composition"}, "accounts": set(), "readiness": {"composition"}}
    assert graph_module.root_importers(graph) == ["readiness"]


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


def test_every_service_and_repository_says_what_its_module_owns() -> None:
    undocumented = [
        str(path.relative_to(ROOT))
        for name in ("service.py", "repository.py")
        for path in sorted(SERVER.glob(f"*/{name}"))
        if not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert undocumented == [], "a module docstring: what the module owns (its tables) and does"
