"""Mutation testing of the modules that decide who gets what: the kill rate per module, every survivor explained.

    python scripts/mutate.py [--keep] [--fail-under 90] [MUTANT_GLOB ...]

Runs mutmut (configured in pyproject.toml, ``[tool.mutmut]``) over plan, schedule,
suppressions, addresses, outbox, ledger, events, report.kpis, report.stats and sms, then prints
for each module how many mutants the tests killed. Every mutant that survives is
written, with its diff, to ``mutants/survivors.txt``.

A survivor is either a gap in the tests (write the test) or an equivalent mutant:
a change no input can observe. Equivalent mutants are listed in
``tests/mutation_equivalent.yaml``, each with the reason: one mutant, matched by
function and by the lines the mutation changes (not by mutmut's numbering, which
shifts when the code changes), or a kind of mutant this script recognises
(``sql-case``, ``zip-strict``; see :data:`KINDS`). The kill rate is killed /
(mutants - equivalent); the raw rate, killed / mutants, is printed beside it. A
listed mutant that no longer exists is reported as stale.

Exit 1 when the kill rate is under ``--fail-under`` percent, or when a survivor is
not explained.

``--keep`` reuses the results of an earlier run in ``mutants/`` (mutmut re-checks
only what changed); by default the run starts clean. MUTANT_GLOB runs a subset,
e.g. ``'dmops.sms.*'``.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import tokenize
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "tests" / "mutation_equivalent.yaml"
SURVIVORS = ROOT / "mutants" / "survivors.txt"
LOG = ROOT / "mutants" / "run.log"

KILLED = {"killed", "timeout", "caught by type check", "segfault"}


@dataclass(frozen=True)
class Mutant:
    name: str  # mutmut's, e.g. dmops.sms.x_measure__mutmut_31
    module: str  # dmops.sms
    function: str  # dmops.sms.measure, dmops.outbox.RunWriter.finish
    status: str
    diff: str

    @property
    def change(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The lines the mutation removes and adds, stripped: how it is matched against explanations."""
        lines = [line for line in self.diff.splitlines() if not line.startswith(("---", "+++", "@@"))]
        removed = tuple(line[1:].strip() for line in lines if line.startswith("-"))
        added = tuple(line[1:].strip() for line in lines if line.startswith("+"))
        return removed, added


def function_of(name: str) -> str:
    """``dmops.sms.x_measure__mutmut_3`` -> ``dmops.sms.measure``; methods keep their class."""
    stem = name.rsplit("__mutmut_", 1)[0]
    module, _, local = stem.rpartition(".")
    if local.startswith("xǁ"):  # xǁClassǁmethod
        local = ".".join(part for part in local[2:].split("ǁ") if part)
    elif local.startswith("x_"):
        local = local[2:]
    return f"{module}.{local}"


def refresh_data_files() -> None:
    """Copy the package's files that are not Python (its SQL, its word lists), and the files of mutmut's
    ``also_copy``, into ``mutants/``: mutmut regenerates only the .py files of the package, and a kept run
    would otherwise test new code against old SQL, or tests against files that did not exist then."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mutmut"]
    package = ROOT / "dmops"
    sources = [s for s in package.rglob("*") if s.suffix not in (".py", ".pyc")]
    for name in config.get("also_copy", []):
        extra = ROOT / name
        sources += [extra] if extra.is_file() else list(extra.rglob("*"))
    for source in sources:
        if source.is_file() and "__pycache__" not in source.parts:
            target = ROOT / "mutants" / source.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def recheck_sigkilled() -> None:
    """Mark mutants whose run was SIGKILLed from outside as unchecked, so that a kept run tests them again."""
    import json

    for meta in (ROOT / "mutants").rglob("*.meta"):
        data = json.loads(meta.read_text(encoding="utf-8"))
        codes = data.get("exit_code_by_key", {})
        if any(code == -9 for code in codes.values()):
            data["exit_code_by_key"] = {key: (None if code == -9 else code) for key, code in codes.items()}
            meta.write_text(json.dumps(data), encoding="utf-8")


def run_mutmut(patterns: list[str], keep: bool) -> None:
    if not keep:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    (ROOT / "mutants").mkdir(exist_ok=True)
    if keep:
        refresh_data_files()
        recheck_sigkilled()
        # mutmut collects test coverage incrementally (new tests only): an old test reaching a new or changed
        # function would go unrecorded, and its mutants would be tried against too few tests. Collect it afresh.
        (ROOT / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    mutmut = Path(sys.executable).with_name("mutmut")
    print(f"running mutmut (progress in {LOG.relative_to(ROOT)}) ...", flush=True)
    with LOG.open("w", encoding="utf-8") as log:
        done = subprocess.run([str(mutmut), "run", *patterns], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = LOG.read_text(encoding="utf-8", errors="replace")[-3000:]
        sys.exit(f"mutmut failed (exit {done.returncode}); the end of its log:\n{tail}")


def load_mutants() -> list[Mutant]:
    """Every mutant of the last run, with its status and diff (mutmut's own records, read in-process)."""
    import os

    os.chdir(ROOT)  # mutmut reads its configuration and results relative to the working directory
    from mutmut.__main__ import SourceFileMutationData, walk_mutatable_files
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    found: list[Mutant] = []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, exit_code in sorted(data.exit_code_by_key.items()):
            # SIGKILL (-9) is a kill from outside (a watchdog, the OOM killer), not a verdict of the tests:
            # such a mutant counts as not checked, never as killed.
            status = "not checked" if exit_code == -9 else status_by_exit_code[exit_code]
            diff = get_diff_for_mutant(name, path=path) if status not in KILLED else ""
            module = name.rsplit("__mutmut_", 1)[0].rpartition(".")[0]
            found.append(Mutant(name, module, function_of(name), status, diff))
    return found


def module_source(module: str) -> str:
    """The module's source, followed by the package's SQL files (where its $parameters are read)."""
    parts = [(ROOT / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")]
    parts += [p.read_text(encoding="utf-8") for p in sorted((ROOT / "dmops" / "sql").glob("*.sql"))]
    return "\n".join(parts)


def load_explanations() -> list[dict[str, str]]:
    entries = yaml.safe_load(EQUIVALENT.read_text(encoding="utf-8")) or []
    for index, entry in enumerate(entries):
        needed = {"kind", "why"} if "kind" in entry else {"function", "from", "to", "why"}
        missing = needed - set(entry)
        if missing:
            sys.exit(f"{EQUIVALENT.name}: entry {index + 1} lacks {', '.join(sorted(missing))}")
        if "kind" in entry and entry["kind"] not in KINDS:
            sys.exit(
                f"{EQUIVALENT.name}: entry {index + 1}: unknown kind {entry['kind']!r} (known: {', '.join(KINDS)})"
            )
    return entries


_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_SQL_WORD = re.compile(  # text that is SQL: it starts with a clause keyword, or holds a placeholder
    r"^\s*(SELECT|INSERT|CREATE|COPY|WITH|UPDATE|DELETE|DROP|ALTER|DESCRIBE|FORMAT|FROM|WHERE|AND|OR|ORDER|GROUP|BEGIN|COMMIT|"
    r"VALUES|JOIN|LEFT|CASE|WHEN|THEN|ELSE|END|NULL|CAST)\b|\$\w+|\?|\bIS (NOT )?NULL\b|\bTRY_CAST\(|\bNOT IN\b",
    re.I,
)


def _strings(line: str) -> list[str]:
    """The Python string literals of one line of source, as written (empty when it does not tokenize alone)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []
    return [t.string for t in tokens if t.type == tokenize.STRING]


def _sql_case(mutant: Mutant, source: str) -> bool:
    """Only the letter case of SQL changed: keywords, function names, unquoted identifiers or $parameter names.

    DuckDB reads all of these case-insensitively. A change inside a quoted SQL literal ('message') or quoted
    identifier ("Email") is not this kind: those are case-sensitive, and a test must catch it.
    """
    removed, added = mutant.change
    if not removed or len(removed) != len(added) or removed == added:
        return False
    for before, after in zip(removed, added, strict=True):
        if before == after:
            continue
        if before.casefold() != after.casefold():
            return False
        old_strings, new_strings = _strings(before), _strings(after)
        changed = [(o, n) for o, n in zip(old_strings, new_strings, strict=False) if o != n]
        if old_strings and len(old_strings) == len(new_strings):
            for old_literal, _ in changed:
                body = old_literal.strip("\"'")
                is_parameter = (  # a key of the parameters dict, {"c": ...}, that the SQL reads as $c
                    re.fullmatch(r"\w+", body) is not None
                    and re.search(re.escape(old_literal) + r"\s*:", before) is not None
                    and f"${body.lower()}" in source.lower()
                )
                if not is_parameter and not _SQL_WORD.search(body):
                    return False
                if not is_parameter and _QUOTED.findall(body) != _QUOTED.findall(
                    new_strings[old_strings.index(old_literal)].strip("\"'")
                ):
                    return False
        elif not _SQL_WORD.search(before) or _QUOTED.findall(before) != _QUOTED.findall(after):
            return False  # a line inside a multi-line SQL string: keywords may change case, quoted parts may not
    return True


def _zip_strict(mutant: Mutant, source: str) -> bool:
    """Only zip's ``strict=True`` changed (to False, None or dropped): the sequences are equal in length by
    construction, so strict only guards against a programming error no input can cause."""
    removed, added = mutant.change
    pattern = re.compile(r",?\s*strict=(True|False|None)\s*")
    return (
        bool(removed)
        and len(removed) == len(added)
        and any("strict=True" in line for line in removed)
        and [pattern.sub("", line).replace(", )", ")") for line in removed]
        == [pattern.sub("", line).replace(", )", ")") for line in added]
    )


KINDS: dict[str, Callable[[Mutant, str], bool]] = {"sql-case": _sql_case, "zip-strict": _zip_strict}


def explained(mutant: Mutant, entries: list[dict[str, str]], source: str) -> dict[str, str] | None:
    removed, added = mutant.change
    for entry in entries:
        if "kind" in entry:
            if KINDS[entry["kind"]](mutant, source):
                return entry
        elif (
            entry["function"] == mutant.function
            and tuple(line.strip() for line in str(entry["from"]).splitlines()) == removed
            and tuple(line.strip() for line in str(entry["to"]).splitlines()) == added
        ):
            return entry
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("patterns", nargs="*", help="mutant names or globs (default: every mutant)")
    parser.add_argument("--keep", action="store_true", help="reuse the results in mutants/ from an earlier run")
    parser.add_argument("--report-only", action="store_true", help="do not run mutmut; report the last run")
    parser.add_argument("--fail-under", type=float, default=90.0, help="minimum kill rate, percent (default 90)")
    args = parser.parse_args()

    if not args.report_only:
        run_mutmut(args.patterns, keep=args.keep or bool(args.patterns))
    mutants = load_mutants()
    if not mutants:
        sys.exit("no mutation results: run without --report-only first")
    entries = load_explanations()

    sources: dict[str, str] = {}
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: list[tuple[Mutant, dict[str, str] | None]] = []
    used: set[int] = set()
    for mutant in mutants:
        counts = by_module[mutant.module]
        counts["total"] += 1
        if mutant.status == "not checked":
            counts["not checked"] += 1
        elif mutant.status in KILLED:
            counts["killed"] += 1
        else:
            entry = explained(mutant, entries, sources.setdefault(mutant.module, module_source(mutant.module)))
            if entry is not None:
                used.add(id(entry))
                counts["equivalent"] += 1
            counts["survived"] += 1
            survivors.append((mutant, entry))

    def row(label: str, counts: Counter[str]) -> float:
        checked = counts["total"] - counts["not checked"]
        raw = 100 * counts["killed"] / checked if checked else 0.0
        real = checked - counts["equivalent"]
        rate = 100 * counts["killed"] / real if real else 0.0
        print(
            f"{label:<20} {counts['total']:>8} {counts['killed']:>8} {counts['survived']:>9} "
            f"{counts['equivalent']:>11} {rate:>9.1f}% {raw:>9.1f}%"
        )
        return rate

    print(
        f"\n{'module':<20} {'mutants':>8} {'killed':>8} {'survived':>9} {'equivalent':>11} {'kill rate':>10} {'raw':>10}"
    )
    total = Counter[str]()
    for module in sorted(by_module):
        total.update(by_module[module])
        row(module, by_module[module])
    score = row("all", total)
    print("kill rate = killed / (mutants - equivalent); raw = killed / mutants")
    if total["not checked"]:
        print(f"({total['not checked']} mutants not checked: the run was cut short or limited to a subset)")

    SURVIVORS.parent.mkdir(exist_ok=True)
    with SURVIVORS.open("w", encoding="utf-8") as out:
        for mutant, entry in survivors:
            label = f"equivalent: {entry['why']}" if entry else "NOT EXPLAINED: a test is missing"
            out.write(f"# {mutant.name} ({mutant.status}) -- {label}\n{mutant.diff}\n\n")
    unexplained = [m for m, entry in survivors if entry is None]
    print(
        f"\nsurvivors, with diffs: {SURVIVORS.relative_to(ROOT)} ({len(survivors)}, {len(unexplained)} not explained)"
    )
    for mutant in unexplained:
        removed, added = mutant.change
        print(f"  {mutant.name}: {' / '.join(removed)}  ->  {' / '.join(added)}")
    stale = [e for e in entries if id(e) not in used]
    if stale and not args.patterns and not total["not checked"]:
        print(f"\n{len(stale)} entries in {EQUIVALENT.name} match no surviving mutant (stale):")
        for entry in stale:
            print(f"  {entry['function']}: {entry['from']} -> {entry['to']}")

    failed = score < args.fail_under or bool(unexplained)
    if score < args.fail_under:
        print(f"\nkill rate {score:.1f}% is under {args.fail_under:g}%")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
