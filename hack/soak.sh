#!/usr/bin/env bash
# The soak of tests/soak.rs for longer than CI's 60 s (RELIABILITY.md, "Sustained load").
#
#   usage: hack/soak.sh [SECONDS]        default 300
#   env:   PROFILE=release|dev           default release (server, load and checker optimised; CI runs dev)
#
# Runs `cargo test [--release] --test soak -- --nocapture` with PITRGUARD_SOAK_SECS=SECONDS: the real
# `pitrguard serve` with --policy-module on a live inventory (tools/testcp's kube-apiserver + etcd), HTTPS
# load over HTTP/1.1 and HTTP/2, certificate rotations, Backup changes and module swaps; every answer checked
# against the core. Prints the test's `soak:` lines (the figures) with the machine's load average before and
# after; on a failure, the last 60 lines of its output. Everything it starts is stopped by the test itself.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300}
[[ $secs =~ ^[0-9]+$ ]] && ((secs >= 10)) || { echo "hack/soak.sh: SECONDS must be a whole number >= 10" >&2; exit 2; }
profile=${PROFILE:-release}
case $profile in release) flags=(--release) ;; dev) flags=() ;; *) echo "hack/soak.sh: PROFILE=release|dev" >&2; exit 2 ;; esac

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "hack/soak.sh: commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src crates tests || echo ' with uncommitted changes'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) before"
echo "hack/soak.sh: building (cargo test ${flags[*]} --test soak --no-run)"
cargo test "${flags[@]}" --test soak --no-run 2>"$log" || { tail -n 60 "$log"; exit 1; }
set +e
PITRGUARD_SOAK_SECS=$secs cargo test "${flags[@]}" --test soak -- --nocapture >"$log" 2>&1
rc=$?
set -e
grep -E '^soak:' "$log" || true
echo "hack/soak.sh: load average $(cut -d' ' -f1-3 /proc/loadavg) after; command: PITRGUARD_SOAK_SECS=$secs cargo test ${flags[*]} --test soak -- --nocapture"
if ((rc != 0)); then
  echo "hack/soak.sh: the soak FAILED (exit $rc); the end of its output:"
  tail -n 60 "$log"
fi
exit "$rc"
