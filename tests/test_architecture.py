"""The package's shape: no module imports another that (directly or not) imports it back."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dmops"


def module_name(path: Path) -> str:
    """``dmops/report/stats.py`` -> ``report.stats``; a package's ``__init__.py`` is the package."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def import_graph() -> dict[str, set[str]]:
    """dmops module -> the dmops modules it imports anywhere in its body, function-level imports included."""
    modules = {module_name(path) for path in sources()}
    graph: dict[str, set[str]] = {}
    for path in sources():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and (node.module + ".").startswith("dmops."):
                base = node.module.removeprefix("dmops").lstrip(".")
                for alias in node.names:  # `from dmops.report import stats` imports the module report.stats
                    name = f"{base}.{alias.name}" if base else alias.name
                    if name in modules:
                        found.add(name)
                    elif base:
                        found.add(base)
            elif isinstance(node, ast.Import):
                found.update(a.name.removeprefix("dmops.") for a in node.names if a.name.startswith("dmops."))
        name = module_name(path)
        graph[name] = {m for m in found if m in modules} - {name, ""}
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


LEDGER_WRITE = re.compile(  # a ledger table written, in any attached database (old., new., dm_ledger.)
    r"\b(INSERT\s+(OR\s+\w+\s+)?INTO|DELETE\s+FROM|UPDATE)\s+(\{ledger\.ALIAS\}\.|\w+\.)?"
    r"(entries|runs|events|message_events|decisions|suppressions|erasures|erasure_log|meta)\b",
    re.IGNORECASE,
)


def test_only_the_ledger_module_writes_ledger_tables() -> None:
    writers = {
        path.name
        for path in [*sources(), *PACKAGE.rglob("*.sql")]
        if path.name != "ledger.py" and LEDGER_WRITE.search(path.read_text(encoding="utf-8"))
    }
    assert writers == set()
    assert LEDGER_WRITE.search('f"INSERT INTO {ledger.ALIAS}.entries SELECT"')  # the pattern sees the old spelling
    assert LEDGER_WRITE.search('"INSERT INTO new.erasures SELECT"')  # and a copy of the ledger being written


def test_one_helper_quotes_text_into_sql() -> None:
    doubling = re.compile(r"""replace\(\s*["']'["']\s*,\s*["']''["']\s*\)""")
    # db.py quotes SQL; dialect.py quotes a literal inside a Java date pattern (which SQLGlot then quotes as SQL)
    assert {p.name for p in sources() if doubling.search(p.read_text(encoding="utf-8"))} == {"db.py", "dialect.py"}


def test_no_sql_pastes_a_python_tuple() -> None:
    """Constants go into generated SQL through db.quote_list/quote_literal, never as a Python repr."""
    pasted = re.compile(r"\bIN \{[A-Z_]+\}")
    assert [p.name for p in sources() if pasted.search(p.read_text(encoding="utf-8"))] == []


def test_every_sql_file_is_used_and_every_query_has_its_file() -> None:
    files = {p.stem for p in (PACKAGE / "sql").glob("*.sql")}
    used = {
        name
        for p in sources()
        for name in re.findall(r"\bquery\(\s*[\"']([a-z_]+)[\"']", p.read_text(encoding="utf-8"))
    }
    assert files == used
    assert {"ledger_schema", "report_rows", "traits", "fatigue", "plan_rows", "plan_suppressed", "plan_out"} <= files


def test_sql_files_read_the_ledger_through_its_views() -> None:
    """Only ledger_schema.sql names the ledger's own tables; the others read ledger_entries, ledger_events."""
    attached = re.compile(r"\bdm_ledger\.|\{ledger\.ALIAS\}")
    assert [p.name for p in (PACKAGE / "sql").glob("*.sql") if attached.search(p.read_text(encoding="utf-8"))] == []


def test_statistics_live_in_one_module() -> None:
    """Intervals and tests are computed in dmops/report/stats.py only: no other module imports scipy or uses Z95."""
    elsewhere = [
        module_name(p)
        for p in sources()
        if p != PACKAGE / "report" / "stats.py"
        and re.search(r"\bscipy\b|\bZ95\b|\bsqrt\(", p.read_text(encoding="utf-8"))
    ]
    assert elsewhere == []
