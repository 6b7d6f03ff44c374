"""The module structure does not get worse: no new pair of server/ modules importing each other, no
new code outside the composition root and the repositories touching a session.

The files listed below are the known debt on main (docs/architecture.md, "what is still tangled");
removing one from the code must remove it here too, so the list only shrinks. No pair is left."""

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent.parent
SERVER = ROOT / "server"

# The composition root and the worker side import every module by design.
ROOT_MODULES = {"composition", "app", "cli", "models", "tasks"}
KNOWN_PAIRS: set[tuple[str, str]] = set()
KNOWN_SESSION_USERS = {
    "server/accounts/sync.py",
    "server/accounts/tasks.py",
    "server/business_managers/tasks.py",
    "server/outbox/relay.py",
    "server/pixels/sync.py",
    "server/pixels/tasks.py",
    "server/requests/work.py",
}


def module_graph() -> ModuleType:
    spec = importlib.util.spec_from_file_location("module_graph", ROOT / "scripts" / "module_graph.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_new_pair_of_modules_imports_each_other() -> None:
    graph_module = module_graph()
    graph = graph_module.module_graph()
    pairs = {(a, b) for a, b in graph_module.mutual_pairs(graph) if a not in ROOT_MODULES and b not in ROOT_MODULES}
    assert pairs - KNOWN_PAIRS == set(), "modules importing each other: make one depend on the other's interface"
    assert KNOWN_PAIRS - pairs == set(), "a known pair is gone: remove it from KNOWN_PAIRS"


def test_the_graph_finds_a_mutual_import() -> None:
    graph_module = module_graph()
    assert graph_module.mutual_pairs({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == [("a", "b")]


def session_users() -> set[str]:
    found = set()
    for path in SERVER.rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if relative == "server/composition.py" or path.name == "repository.py":
            continue
        if re.search(r"\buow\.session\b", path.read_text()):
            found.add(relative)
    return found


def test_no_new_code_touches_a_session_outside_composition_and_repositories() -> None:
    users = session_users()
    assert users - KNOWN_SESSION_USERS == set(), "reach data through a service, not uow.session"
    assert KNOWN_SESSION_USERS - users == set(), "a known session user is gone: remove it from KNOWN_SESSION_USERS"
