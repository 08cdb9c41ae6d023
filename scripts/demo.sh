#!/usr/bin/env bash
# The demo: dmops on the repository's own sample workspace, as a marketer would run it.
set -euo pipefail
cd "$(dirname "$0")/.."
dmops=".venv/bin/dmops"
run() { printf '\n$ %s\n' "$*"; "$@"; }

run "$dmops" --version
run "$dmops" validate
rm -rf demo-workspace
run "$dmops" init demo-workspace
run "$dmops" --workspace demo-workspace validate winback-2026-12
printf '\n$ dmops init demo-workspace   # a second time: refuses to overwrite\n'
if "$dmops" init demo-workspace; then echo "init overwrote files" >&2; exit 1; else echo "(exit $?, as expected)"; fi
