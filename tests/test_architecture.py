"""The package's shape: no module imports another that (directly or not) imports it back."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dmops"


def import_graph() -> dict[str, set[str]]:
    """dmops module -> the dmops modules it imports anywhere in its body, function-level imports included."""
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "dmops":
                    found.update(alias.name for alias in node.names if alias.name in modules)
                elif node.module.startswith("dmops."):
                    found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("dmops."))
        graph[path.stem] = found - {path.stem}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle, each once, as the path of modules from its smallest name back to it."""
    found: set[tuple[str, ...]] = set()

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                found.add(tuple(path))
            elif nxt > start and nxt not in path:
                walk(start, nxt, [*path, nxt])

    for module in sorted(graph):
        walk(module, module, [module])
    return [[*cycle, cycle[0]] for cycle in sorted(found)]


def test_the_graph_sees_function_level_imports() -> None:
    graph = import_graph()
    assert "plan" in graph["send"] and "schedule" in graph["plan"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycle_in_the_package() -> None:
    assert cycles(import_graph()) == []


LEDGER_WRITE = re.compile(
    r"\b(INSERT\s+(OR\s+\w+\s+)?INTO|DELETE\s+FROM|UPDATE)\s+(\{ledger\.ALIAS\}\.|dm_ledger\.)?"
    r"(entries|runs|events|suppressions|meta)\b",
    re.IGNORECASE,
)


def test_only_the_ledger_module_writes_ledger_tables() -> None:
    writers = {
        path.name
        for path in PACKAGE.glob("*.py")
        if path.name != "ledger.py" and LEDGER_WRITE.search(path.read_text(encoding="utf-8"))
    }
    assert writers == set()
    assert LEDGER_WRITE.search('f"INSERT INTO {ledger.ALIAS}.entries SELECT"')  # the pattern sees the old spelling


def test_one_helper_quotes_text_into_sql() -> None:
    doubling = re.compile(r"""replace\(\s*["']'["']\s*,\s*["']''["']\s*\)""")
    assert {p.name for p in PACKAGE.glob("*.py") if doubling.search(p.read_text(encoding="utf-8"))} == {"db.py"}
