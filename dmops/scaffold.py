"""``dmops init``: write the sample workspace, never overwriting anything.

The files are the repository's own demo workspace (``dmops.yaml``,
``campaigns/``, ``samples/``). A wheel carries them as ``dmops/_workspace``; a
source checkout reads them from the repository root.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from dmops.errors import OutputError

DEMO_ENTRIES = ("dmops.yaml", "campaigns", "samples")


def _source_root() -> Traversable:
    packaged = files("dmops") / "_workspace"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "dmops.yaml").is_file():
        return checkout
    raise OutputError("the sample workspace is missing from this installation", hint="reinstall dmops")


def demo_files() -> list[tuple[str, Traversable]]:
    """(relative path, source) for every file of the sample workspace, sorted."""
    root = _source_root()
    found: list[tuple[str, Traversable]] = []

    def walk(node: Traversable, relative: str) -> None:
        if node.is_dir():
            for child in node.iterdir():
                if child.name == "__pycache__" or child.name.startswith("."):
                    continue
                walk(child, f"{relative}/{child.name}")
        else:
            found.append((relative, node))

    for entry in DEMO_ENTRIES:
        walk(root / entry, entry)
    return sorted(found, key=lambda item: item[0])


def init_workspace(target: Path) -> list[str]:
    """Copy the sample workspace into ``target``; refuse if any file would be overwritten."""
    sources = demo_files()
    clashes = [relative for relative, _ in sources if (target / relative).exists()]
    if clashes:
        raise OutputError(
            f"{len(clashes)} file(s) already exist, e.g. {clashes[0]}",
            file=target / clashes[0],
            hint="dmops init never overwrites; choose an empty folder",
        )
    try:
        for relative, source in sources:
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            with destination.open("xb") as handle:  # "x": fail rather than overwrite
                handle.write(source.read_bytes())
    except OSError as exc:
        raise OutputError(f"cannot write the workspace: {exc.strerror}", file=target) from None
    return [relative for relative, _ in sources]
