#!/usr/bin/env bash
# The demo: dmops on the repository's own sample workspace, as a marketer would run it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
run() { printf '\n$ %s\n' "$*"; "$@"; }
expect_fail() { printf '\n$ %s\n' "$*"; if "$@"; then echo "expected a failure" >&2; exit 1; else echo "(exit $?)"; fi; }

run dmops --version
run dmops validate

run dmops plan winback-2026-12 --at 2026-12-10T09:00
run dmops plan flash-sale-1212 --at 2026-12-10T09:00 --format json
run dmops plan flash-sale-1212 --at 2026-12-10T09:00 --explain 00006

rm -rf demo-workspace
run dmops init demo-workspace
expect_fail dmops init demo-workspace

# A typo in an audience and an unquoted time: validate names file, line and key, and exits 78.
sed -i "s/tier IN ('gold', 'silver')/teir IN ('gold', 'silver')/" demo-workspace/campaigns/winback.yaml
sed -i 's/send_time: "10:00"/send_time: 10:00/' demo-workspace/campaigns/welcome.yaml
expect_fail dmops --workspace demo-workspace validate
