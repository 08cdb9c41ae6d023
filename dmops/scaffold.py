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
    return _write_new(target, {relative: source.read_bytes() for relative, source in demo_files()})


def _write_new(target: Path, files: dict[str, bytes]) -> list[str]:
    """Write ``files`` (relative path -> bytes) under ``target``, or nothing at all if one exists; their paths."""
    clashes = [relative for relative in sorted(files) if (target / relative).exists()]
    if clashes:
        raise OutputError(
            f"{len(clashes)} file(s) already exist, e.g. {clashes[0]}",
            file=target / clashes[0],
            hint="dmops init never overwrites; choose an empty folder",
        )
    try:
        for relative, body in files.items():
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            with destination.open("xb") as handle:  # "x": fail rather than overwrite
                handle.write(body)
    except OSError as exc:
        raise OutputError(f"cannot write the workspace: {exc.strerror}", file=target) from None
    return sorted(files)


STARTER_CAMPAIGN = """\
# A first campaign over your own contacts: check it with `dmops plan first-campaign`, then edit it.
id: first-campaign
name: First campaign
channel: email
sender: {{from: "Your Shop <news@shop.example.com>"}}
unsubscribe_url: "https://shop.example.com/u/{{{{ unsubscribe_token }}}}"
variants:
  - id: a
    subject: "{greeting}"
    text: |
      {greeting}

      Unsubscribe: {{{{ unsubscribe_url }}}}
"""


def init_from_contacts(target: Path, contacts: Path, *, timezone: str | None, phone_region: str | None) -> list[str]:
    """A workspace around a real contact list: the file (copied into ``data/`` unless it is already inside
    ``target``), a ``dmops.yaml`` with the mapping ``contacts inspect`` guesses, and one starter campaign.
    Refuses to overwrite anything; the files written, relative to ``target``."""
    from dmops.errors import DataError
    from dmops.inspect import inspect_file

    found = inspect_file(contacts)
    if "contact_id" not in found.mapping:
        raise DataError(
            "no column holds a unique, non-empty id for every row",
            file=contacts,
            line=1,
            hint="add one, or write dmops.yaml by hand: `dmops contacts inspect FILE` shows the columns",
        )
    root = target.resolve()
    inside = contacts.resolve().is_relative_to(root)
    data_path = contacts.resolve().relative_to(root).as_posix() if inside else f"data/{contacts.name}"
    chinese = found.encoding == "gb18030" or any(not h.isascii() for h in found.mapping.values())
    zone = timezone or ("Asia/Shanghai" if chinese else "UTC")
    region = phone_region or ("CN" if chinese else None)
    head = f"# dmops workspace around {contacts.name}; the mapping below was guessed: check it.\n"
    head += f"version: 1\ntimezone: {zone}\n" + (f"phone_region: {region}\n" if region else "")
    name_field = found.mapping.get("first_name")
    greeting = "Hi {{ first_name | default('there') }}," if name_field else "Hello,"
    files: dict[str, bytes] = {
        "dmops.yaml": (head + found.yaml(data_path)).encode("utf-8"),
        "campaigns/first-campaign.yaml": STARTER_CAMPAIGN.format(greeting=greeting).encode("utf-8"),
    }
    if not inside:
        files[data_path] = contacts.read_bytes()
    return _write_new(target, files)
