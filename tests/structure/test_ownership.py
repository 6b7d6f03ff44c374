"""Each table is named by one module (docs/architecture.md): the module whose `models.py` declares it.

The scan reads every file of every module under server/ and fails when one names another module's
table: in SQL text (FROM, JOIN, UPDATE, INTO), through another module's model class or Table (a
query, a join, a relationship), or in a relationship given by class name. Type annotations do not
name a table (a repository's Protocol may say it returns another module's model). Foreign keys are
schema, not reads or writes, and are left alone. A query that needs several modules' data is
composed from what each owner offers, or reads a view its module owns (auth's standing views).
"""

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SERVER = ROOT / "server"

_SQL = re.compile(r"\b(?:SELECT|INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
_SQL_TABLE = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO|TABLE)\s+([a-z_][a-z0-9_]*)", re.IGNORECASE)


@dataclass(frozen=True)
class Declared:
    module: str
    table: str


def _string(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def declarations(models: dict[str, str]) -> tuple[dict[str, str], dict[str, Declared]]:
    """From each module's models.py source: table -> module, and model or Table name -> Declared."""
    tables: dict[str, str] = {}
    names: dict[str, Declared] = {}
    for module, source in models.items():
        for node in ast.parse(source).body:
            if isinstance(node, ast.ClassDef):
                for statement in node.body:
                    if (
                        isinstance(statement, ast.Assign)
                        and any(isinstance(t, ast.Name) and t.id == "__tablename__" for t in statement.targets)
                        and (table := _string(statement.value))
                    ):
                        tables[table] = module
                        names[node.name] = Declared(module, table)
            elif (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name)
                and node.value.func.id == "Table"
                and node.value.args
                and (table := _string(node.value.args[0]))
            ):
                tables[table] = module
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        names[target.id] = Declared(module, table)
    return tables, names


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside type annotations (and `type X = ...` aliases)."""
    inside: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            inside.update(id(child) for child in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            mark(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            mark(node.returns)
        elif isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        elif isinstance(node, ast.TypeAlias):
            mark(node.value)
    return inside


def _docstrings(tree: ast.AST) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and _string(first.value) is not None:
                found.add(id(first.value))
    return found


def _foreign_imports(tree: ast.AST, module: str, names: dict[str, Declared]) -> dict[str, Declared]:
    """Model classes and Tables the file imports from other modules' models, by local name."""
    foreign: dict[str, Declared] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith(".models"):
            for alias in node.names:
                declared = names.get(alias.name)
                if declared is not None and declared.module != module:
                    foreign[alias.asname or alias.name] = declared
    return foreign


def _related_models(node: ast.AST) -> list[str]:
    """The model names a `relationship(...)` names: by string argument, or by the annotation of
    `x: Mapped["Model"] = relationship(...)`."""
    call = node.value if isinstance(node, ast.AnnAssign) else node
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "relationship"):
        return []
    related = [text for text in map(_string, call.args[:1]) if text is not None]
    if isinstance(node, ast.AnnAssign):
        related += [
            part.id if isinstance(part, ast.Name) else _string(part) or "" for part in ast.walk(node.annotation)
        ]
    return related


def violations(module: str, source: str, tables: dict[str, str], names: dict[str, Declared]) -> list[str]:
    """How a file of `module` names other modules' tables."""
    tree = ast.parse(source)
    foreign = _foreign_imports(tree, module, names)
    annotations = _annotation_nodes(tree)
    docstrings = _docstrings(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Name) and node.id in foreign and id(node) not in annotations:
            found.append(f"line {line}: {node.id} is {foreign[node.id].module}'s table {foreign[node.id].table}")
        for related in dict.fromkeys(_related_models(node)):
            if related in names and names[related].module != module:
                found.append(f"line {line}: relationship to {names[related].module}'s table {names[related].table}")
        text = _string(node)
        if text is not None and id(node) not in docstrings and _SQL.search(text):
            for table in _SQL_TABLE.findall(text):
                owner = tables.get(table.lower())
                if owner is not None and owner != module:
                    found.append(f"line {line}: SQL names {owner}'s table {table}")
    return found


def _server_models() -> dict[str, str]:
    return {path.parent.name: path.read_text() for path in SERVER.glob("*/models.py")}


def test_each_table_is_named_only_by_its_module() -> None:
    tables, names = declarations(_server_models())
    assert {"users", "accounts", "standing_users", "refresh_tokens"} <= set(tables)
    found = {
        str(path.relative_to(ROOT)): problems
        for path in sorted(SERVER.glob("*/**/*.py"))
        if (problems := violations(path.relative_to(SERVER).parts[0], path.read_text(), tables, names))
    }
    assert found == {}, "compose the query from what each owner offers (docs/architecture.md)"


SELF_TEST_MODELS = {
    "users": 'class User(Base):\n    __tablename__ = "users"\n\nusers_roles = Table("users_roles", Base.metadata)\n',
    "accounts": 'class Account(Base):\n    __tablename__ = "accounts"\n',
}


def test_the_scan_finds_another_modules_table_in_sql_orm_and_relationships() -> None:
    tables, names = declarations(SELF_TEST_MODELS)
    assert tables == {"users": "users", "users_roles": "users", "accounts": "accounts"}
    raw_sql = 'statement = text("SELECT a.id FROM accounts a JOIN users u ON u.id = a.user_id")\n'
    assert violations("accounts", raw_sql, tables, names) == ["line 1: SQL names users's table users"]
    orm = "from server.users.models import User\n\nstatement = select(Account).join(User, User.id == Account.user_id)\n"
    assert len(violations("accounts", orm, tables, names)) == 2
    association = "from server.users.models import users_roles\n\nquery = select(users_roles.c.role_id)\n"
    assert violations("accounts", association, tables, names) == ["line 3: users_roles is users's table users_roles"]
    relationship_by_name = 'user = relationship("User")\n'
    assert violations("accounts", relationship_by_name, tables, names) == [
        "line 1: relationship to users's table users"
    ]
    relationship_by_annotation = 'user: Mapped["User"] = relationship(lazy="joined")\n'
    assert violations("accounts", relationship_by_annotation, tables, names) == [
        "line 1: relationship to users's table users"
    ]


def test_the_scan_leaves_annotations_docstrings_and_the_owner_alone() -> None:
    tables, names = declarations(SELF_TEST_MODELS)
    annotated = (
        '"""Reads nothing FROM users: this is prose, not SQL (SELECT nothing)."""\n'
        "from server.users.models import User\n\n"
        "async def owner(self) -> User | None: ...\n"
        "def name(user: User) -> str:\n    return user.email\n"
    )
    assert violations("accounts", annotated, tables, names) == []
    own = 'statement = text("UPDATE users SET is_active = false")\n'
    assert violations("users", own, tables, names) == []


# Code that opens database connections or sessions: the composition root, the engine and pool
# factories, the readiness probe's own connection, and the repositories. Nothing else.
CONNECTION_OPENERS = re.compile(
    r"\b(?:asyncpg\.connect|create_pool|async_sessionmaker|AsyncSession)\("
    r"|\.(?:connect|acquire)\(\)"
    r"|\b\w*(?:engine|session)s?\.begin(?:_nested)?\("
    r"|\.(?:read_)?sessions\(\)"
)
MAY_OPEN_CONNECTIONS = {
    "server/composition.py",
    "server/db.py",
    "server/migrations.py",  # alembic and the schema check, on DATABASE_DIRECT_URL
    "server/read_pool.py",
    "server/readiness.py",
}


def connection_openers() -> set[str]:
    found = set()
    for path in SERVER.rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if relative in MAY_OPEN_CONNECTIONS or path.name == "repository.py":
            continue
        if CONNECTION_OPENERS.search(path.read_text()):
            found.add(relative)
    return found


def test_only_repositories_and_the_root_open_connections_or_sessions() -> None:
    assert connection_openers() == set(), "ask a repository, or take a unit-of-work factory"


def test_the_scan_finds_connections_and_sessions_being_opened() -> None:
    for opening in (
        "async with self._database.connect() as connection:",
        "async with infrastructure.sessions() as session:",
        "async with engine.begin() as connection:",
        "connection = await asyncpg.connect(**arguments)",
        "sessions = async_sessionmaker(engine)",
    ):
        assert CONNECTION_OPENERS.search(opening), opening
    assert not CONNECTION_OPENERS.search("started = metrics.begin()")
