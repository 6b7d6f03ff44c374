"""Prints which modules under server/ import which, the pairs that import each other, the import
circles, and the modules below the composition root that import it.

A module is a package directly under server/ (`server/accounts/`) or a top-level file
(`server/db.py`). Every import counts, including those inside functions and under TYPE_CHECKING.
Only the entry points (`ENTRY_POINTS`) may import the composition root (`server/composition.py`).

    .venv/bin/python scripts/module_graph.py            # edges, then what breaks the rules
    .venv/bin/python scripts/module_graph.py --pairs    # only what breaks the rules
"""

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "server"
# The composition root, and the entry points that build the processes from it: the gRPC server,
# the `adplane` command, the worker and scheduler processes.
COMPOSITION_ROOT = "composition"
ENTRY_POINTS = frozenset({"app", "cli", "background"})


def module_of(path: Path) -> str:
    """`server/accounts/tasks.py` -> `accounts`; `server/db.py` -> `db`."""
    parts = path.relative_to(SERVER).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def imported_modules(path: Path) -> set[str]:
    """The server modules a file imports (`from server.x.y import z`, `import server.x`, `from server import x`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"server.{alias.name}" for alias in node.names] if node.module == "server" else [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "server" and len(parts) > 1:
                found.add(parts[1])
    return found


def module_graph() -> dict[str, set[str]]:
    """module -> the other server modules it imports."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in sorted(SERVER.rglob("*.py")):
        source = module_of(path)
        if source == "__init__":
            continue
        graph[source] |= imported_modules(path) - {source}
    return dict(graph)


def mutual_pairs(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, targets in graph.items() for b in targets if a < b and a in graph.get(b, set()))


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The circles of imports: each set of modules that reach each other (strongly connected
    components of more than one module, Tarjan's algorithm), sorted."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = lowest[module] = len(index)
        stack.append(module)
        for target in sorted(graph.get(module, set())):
            if target not in index:
                visit(target)
                lowest[module] = min(lowest[module], lowest[target])
            elif target in stack:
                lowest[module] = min(lowest[module], index[target])
        if lowest[module] == index[module]:
            component: list[str] = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(cycles)


def root_importers(graph: dict[str, set[str]]) -> list[str]:
    """Modules other than the entry points that import the composition root."""
    return sorted(
        module for module, targets in graph.items() if COMPOSITION_ROOT in targets and module not in ENTRY_POINTS
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", action="store_true", help="print only the modules that import each other")
    arguments = parser.parse_args()
    graph = module_graph()
    if not arguments.pairs:
        for module in sorted(graph):
            print(f"{module:<18} -> {', '.join(sorted(graph[module])) or '-'}")
        print()
    pairs = mutual_pairs(graph)
    print(f"{len(pairs)} pairs of server/ modules import each other")
    for a, b in pairs:
        print(f"  {a} <-> {b}")
    cycles = import_cycles(graph)
    print(f"{len(cycles)} import circles")
    for cycle in cycles:
        print(f"  {' -> '.join(cycle)}")
    importers = root_importers(graph)
    print(f"{len(importers)} modules below the entry points import the composition root")
    for module in importers:
        print(f"  {module}")
    return 1 if pairs or cycles or importers else 0


if __name__ == "__main__":
    sys.exit(main())
