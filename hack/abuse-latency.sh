#!/usr/bin/env bash
# The latency figures of RELIABILITY.md, "Slow and abusive clients": tests/abuse.rs with longer phases, on
# a release build, one attack at a time.
#
#   usage: hack/abuse-latency.sh [SECONDS]   seconds under each attack (default 30; the baseline before it
#                                            takes half as long)
#   env:   PROFILE=release|dev               default release
#          PITRGUARD_ABUSE_IDLE=N            idle connections (default 3000)
#
# Each test starts the real `pitrguard serve --inventory examples/`, measures well-behaved clients (one
# HTTP/1.1 and one HTTP/2 keep-alive connection, and a new TLS connection per request; one request, then
# 10 ms pause, each) without the attack, then under it; the attacker runs on one thread of its own. Prints
# the tests' `abuse:` lines (p50/p99 without and under each attack, and what the attackers saw) with the
# machine's load average before and after. The tests assert functional outcomes only, never latency.
# It also runs the ignored measurement rapid_reset_after_a_request_is_measured.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
[[ $secs =~ ^[0-9]+$ ]] && ((secs >= 2)) || { echo "hack/abuse-latency.sh: SECONDS must be a whole number >= 2" >&2; exit 2; }
profile=${PROFILE:-release}
case $profile in release) flags=(--release) ;; dev) flags=() ;; *) echo "hack/abuse-latency.sh: PROFILE=release|dev" >&2; exit 2 ;; esac

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "hack/abuse-latency.sh: commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src crates tests || echo ' with uncommitted changes'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) before"
cargo test "${flags[@]}" --test abuse --no-run 2>"$log" || { tail -n 60 "$log"; exit 1; }
set +e
PITRGUARD_ABUSE_SECS=$secs cargo test "${flags[@]}" --test abuse -- --nocapture --test-threads=1 --include-ignored >"$log" 2>&1
rc=$?
set -e
grep -E '^abuse:' "$log" || true
echo "hack/abuse-latency.sh: load average $(cut -d' ' -f1-3 /proc/loadavg) after; command: PITRGUARD_ABUSE_SECS=$secs cargo test ${flags[*]} --test abuse -- --nocapture --test-threads=1 --include-ignored"
if ((rc != 0)); then
  echo "hack/abuse-latency.sh: FAILED (exit $rc); the end of the output:"
  tail -n 60 "$log"
fi
exit "$rc"
