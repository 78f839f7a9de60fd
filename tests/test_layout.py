"""The package's shape: small modules, no import circle (function-level imports included), DuckDB behind store/."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mcp_sessions"
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module of the package that path imports, anywhere in the file (TYPE_CHECKING blocks aside)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for node in ast.walk(stmt)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def test_no_module_is_over_500_lines() -> None:
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_import_graph_has_no_cycle() -> None:
    edges = graph()
    # A package's __init__ is imported with any of its modules: an edge into the package is not a cycle by itself.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def _importers(engines: set[str], home: str) -> list[str]:
    """Modules outside the folder `home` that import one of the engines' packages."""

    def imports_one(n: ast.AST) -> bool:
        names = [a.name for a in n.names] if isinstance(n, ast.Import) else [getattr(n, "module", None) or ""]
        return isinstance(n, ast.Import | ast.ImportFrom) and any(name.split(".")[0] in engines for name in names)

    return [
        module_name(p)
        for p in PACKAGE.rglob("*.py")
        if home not in p.relative_to(PACKAGE).parts and any(imports_one(n) for n in ast.walk(ast.parse(p.read_text())))
    ]


def test_only_the_store_imports_duckdb() -> None:
    assert _importers({"duckdb"}, "store") == []


def test_only_the_postgres_package_imports_psycopg() -> None:
    assert _importers({"psycopg", "psycopg_pool"}, "postgres") == []


def test_the_checker_sees_a_function_level_import() -> None:
    # human.py imports the relay inside a function: the graph must hold that edge.
    assert "mcp_sessions.relay" in graph()["mcp_sessions.human"]
