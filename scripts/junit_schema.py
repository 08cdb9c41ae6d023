"""Fetch the JUnit XML schema the tests validate ``--format junit`` against: ``junit-10.xsd``, the schema of
Jenkins's xUnit plugin (MIT licence, by Gregory Boissinot), the JUnit dialect Jenkins, GitLab and GitHub's
test reporters read. pytest validates its own JUnit output against a copy of it, shipped in pytest's source
distribution on PyPI; this takes it from there, pinned by the archive's SHA-256.

    python scripts/junit_schema.py TARGET      # make does this when it creates .venv
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

SDIST = (
    "https://files.pythonhosted.org/packages/79/42/bb4641652e58dedeac2ec51abc1f8cae4fee4ec63899a0999016229a0f2a/"
    "pytest-9.2.0.tar.gz"
)
SHA256 = "97c4f3b1f3c7414aa36465e09b8220f1d03627993bd51b1282e193753c80557b"
MEMBER = "pytest-9.2.0/testing/example_scripts/junit-10.xsd"


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    target = Path(sys.argv[1])
    with urllib.request.urlopen(SDIST, timeout=120) as response:
        data = response.read()
    found = hashlib.sha256(data).hexdigest()
    if found != SHA256:
        sys.exit(f"{SDIST}: SHA-256 {found}, expected {SHA256}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        member = archive.extractfile(MEMBER)
        if member is None:
            sys.exit(f"{SDIST} holds no {MEMBER}")
        schema = member.read()
    staging = target.with_name(target.name + ".tmp")
    staging.write_bytes(schema)
    staging.replace(target)
    print(f"wrote {target} ({len(schema):,} bytes, from {SDIST.rsplit('/', 1)[1]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
