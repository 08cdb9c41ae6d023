#!/usr/bin/env bash
# The demo: the whole loop on the repository's own sample workspace, as a marketer would run it:
# init -> validate -> plan -> send -> events import -> report.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
# The signing secret of the demo's SMS gateway (dmops.yaml: transports.sms.secret_env).
export DMOPS_GATEWAY_SECRET="whsec_ZG1vcHMtZGVtby1zaWduaW5nLXNlY3JldA=="
run() { printf '\n$ %s\n' "$*"; "$@"; }
expect_fail() { printf '\n$ %s\n' "$*"; if "$@"; then echo "expected a failure" >&2; exit 1; else echo "(exit $?)"; fi; }

run dmops --version

# A new workspace from the packaged sample; init never overwrites.
rm -rf demo-workspace
run dmops init demo-workspace
expect_fail dmops init demo-workspace
# A typo in an audience and an unquoted time: validate names file, line and key, and exits 78.
sed -i "s/tier IN ('gold', 'silver')/teir IN ('gold', 'silver')/" demo-workspace/campaigns/winback.yaml
sed -i 's/send_time: "10:00"/send_time: 10:00/' demo-workspace/campaigns/welcome.yaml
expect_fail dmops --workspace demo-workspace validate

# The repository root is the sample workspace itself: start from a clean state.
rm -rf .dmops outbox outbox-eml STOP
run dmops validate
# Content and deliverability checks: the sample lints clean; the example kept to break every rule does not.
run dmops lint
expect_fail dmops --workspace examples/lint-bad lint bad-sms

# The shop's order history: computed traits (lifecycle_stage, recency, RFM) come from it.
run dmops events import samples/events.csv
# Three weekly newsletters: the message history the fatigue report reads.
run dmops send newsletter --at 2026-11-19T09:00
run dmops send newsletter --at 2026-11-26T09:00
run dmops send newsletter --at 2026-12-03T09:00

# The win-back targets lifecycle_stage = 'at_risk'. Plan, send, and send again: the rerun sends nothing twice.
run dmops plan winback-2026-12 --at 2026-12-10T09:00
run dmops send winback-2026-12 --at 2026-12-10T09:00
run dmops send winback-2026-12 --at 2026-12-10T09:00
# A staged SMS send, then the plan shows every reason: caps from the win-back email the day before,
# the first 100 already sent, explicit cells that leave some contacts without a variant.
run dmops send flash-sale-1212 --at 2026-12-10T09:00 --limit 100
run dmops plan flash-sale-1212 --at 2026-12-10T09:00
run dmops plan flash-sale-1212 --at 2026-12-10T09:00 --explain 00006
head -c 600 outbox/flash-sale-1212/once/run-0001/messages.jsonl; echo
run dmops stop --reason "price error in the SMS"
expect_fail dmops send flash-sale-1212 --at 2026-12-10T09:00
run dmops resume
run dmops send flash-sale-1212 --at 2026-12-10T09:00
run dmops outbox export --eml outbox-eml winback-2026-12

# Delivery: a mail server and an SMS gateway on this machine (scripts/demo_servers.py) take the outbox.
run dmops deliver --dry-run --at 2026-12-13T00:00
rm -f outbox/.servers-ready
python scripts/demo_servers.py --smtp 2525 --http 8025 --ready outbox/.servers-ready &
SERVERS=$!
trap 'kill $SERVERS 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -f outbox/.servers-ready ] && break; sleep 0.1; done
run dmops deliver --at 2026-12-13T00:00
run dmops deliver --at 2026-12-13T00:00
run dmops deliver --status
kill $SERVERS; wait $SERVERS || true
trap - EXIT

# Events back from the delivery system (simulated from the outbox) and the shop's orders, then the report.
run python scripts/simulate_events.py . outbox/events.jsonl
run dmops events import outbox/events.jsonl
run dmops events import outbox/events.jsonl
run dmops events import samples/events.csv
run dmops report winback-2026-12
run dmops report flash-sale-1212 --format csv
run dmops report --format html --out outbox/report.html
run dmops report lifecycle --at 2026-12-10T09:00 --months 6
run dmops report lifecycle --at 2026-12-10T09:00 --format html --out outbox/lifecycle.html
run dmops report fatigue
run dmops report fatigue --format html --out outbox/fatigue.html
printf '\nThe HTML report is at %s\n' "$PWD/outbox/report.html"
