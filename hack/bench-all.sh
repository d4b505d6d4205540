#!/usr/bin/env bash
# Every benchmark behind the performance table in BENCHMARKS.md, one after the other, on this
# machine; each rewrites its own section (with its floor or baseline measured in the same run),
# then hack/bench-summary.py rewrites the summary table from those sections.
#
#   usage: hack/bench-all.sh            (about 30 minutes on 2 cores, after the release build)
#   env:   LIVE_N="10000 100000"        live-inventory sizes (default 10000; 100000 adds ~10 minutes)
#
# Run it on a quiet machine: the benchmarks share its cores with whatever else runs.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n== %s  (%s)\n' "$*" "$(date -u +%H:%M:%S)" >&2; }

step "decision: 100 to 1 000 000 Backups (hack/bench-decision.sh)"
hack/bench-decision.sh
step "webhook under load, in process, against the axum+rustls floor (cargo bench --bench webhook_load)"
cargo bench --bench webhook_load
step "webhook under load, external load generators (hack/bench-external-load.sh)"
hack/bench-external-load.sh
step "file inventories of 10 000 and 100 000 Backups (hack/bench-inventory-memory.py)"
hack/bench-inventory-memory.py
for n in ${LIVE_N:-10000}; do
  step "live inventory of $n Backups (hack/bench-live-inventory.sh)"
  N=$n hack/bench-live-inventory.sh
done
step "kubectl apply --dry-run=server with and without the webhooks (hack/bench-dry-run.sh)"
hack/bench-dry-run.sh
step "instructions per decision and per request, by callgrind (hack/bench-instructions.sh, hack/bench-request-instructions.sh)"
hack/bench-instructions.sh
hack/bench-request-instructions.sh
step "summary (hack/bench-summary.py)"
hack/bench-summary.py
