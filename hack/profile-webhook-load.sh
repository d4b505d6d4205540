#!/usr/bin/env bash
# Where the webhook's CPU goes under load: a `perf record` with DWARF call graphs of the webhook run of
# benches/webhook_load.rs, folded into the share of each step of the handler.
#
#   usage: hack/profile-webhook-load.sh        (needs perf: apt-get install linux-perf)
#   env:   SECS  seconds recorded, from 4 s into the webhook run (default 5)
#
# Runs the bench binary (built by `cargo bench --no-run`), records the process while its first run (the
# webhook, HTTP/1.1, 8 connections) is under load, stops it, and prints: how many samples fell in the
# server's connections, in the handler, and in each step of the handler (the shares count a sample once
# per step whose function is on its stack; a part of a step only under that step). Nothing is written to BENCHMARKS.md; the figures are
# proportions, so they hold on a busy machine too.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh
SECS=${SECS:-5}
[[ $SECS =~ ^[0-9]+$ ]] && ((SECS >= 1 && SECS <= 8)) || { echo "profile-webhook-load: SECS must be 1..8" >&2; exit 2; }
command -v perf >/dev/null || { echo "profile-webhook-load: needs perf (apt-get install linux-perf)" >&2; exit 2; }

bench=$(cargo bench --bench webhook_load --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "webhook_load" and m.get("executable"):
        print(m["executable"])')
[[ -x $bench ]] || { echo "profile-webhook-load: no bench binary" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/pitrguard-profile.XXXXXX")
pid=
cleanup() {
  stop_pid "$pid"
  rm -rf -- "$work"
}
trap cleanup EXIT

# TMPDIR: the bench's certificate directory lands in $work, which goes even though the bench is stopped.
TMPDIR=$work WEBHOOK_LOAD_WRITE=0 WEBHOOK_LOAD_H2=0 WEBHOOK_LOAD_CONNS_HIGH=0 "$bench" --bench >"$work/bench.out" 2>&1 &
pid=$!
sleep 4 # dev certificates, the policy module's compile, the 2 s warm-up: then the webhook run
perf record -q -F 499 --call-graph dwarf,16384 -p "$pid" -o "$work/perf.data" -- sleep "$SECS" >/dev/null 2>&1
stop_pid "$pid"
pid=
grep -q "webhook_load:" "$work/bench.out" || { cat "$work/bench.out" >&2; exit 1; }
perf script -i "$work/perf.data" -F ip,sym 2>/dev/null | python3 -c '
import sys
samples, cur = [], []
for line in sys.stdin:
    if not line.strip():
        if cur:
            samples.append(cur)
        cur = []
    else:
        cur.append(line.strip().split(None, 1)[-1])
if cur:
    samples.append(cur)
on = lambda s, pats: any(p in f for f in s for p in pats.split("|"))
handler = [s for s in samples if on(s, "Handler<(M,T1,T2,T3),S>>::call")]
conn = [s for s in samples if on(s, "transport::connection")]
print(f"samples: {len(samples)} in the process (servers and load generator), {len(conn)} in the server connections, "
      f"{len(handler)} in the handler ({100 * len(handler) / max(1, len(samples)):.1f}% of the process)")
# (step, functions on the stack, functions of the step it is part of: a part counts only under it)
judge = "judge_head|judge_json|admission::decide"
# The head of the Restore is read inside parse_review, inlined there: perf cannot tell it apart
# (hack/bench-instructions.sh counts the parts exactly).
steps = [("parse the AdmissionReview (and the Restore in it)", "parse_review", None),
         ("judge (judge_head)", judge, None), ("  of which the rules", "rules::evaluate", judge),
         ("  of which the window", "window::window", judge), ("  of which format!", "format_inner", judge),
         ("write the answer", "review_body", None),
         ("metrics", "prometheus", None), ("malloc and free (mimalloc)", "mi_free|mi_malloc|_mi_page|mi_theap", None)]
print("| step of the handler | share of its samples |")
print("|---|---:|")
for name, pat, parent in steps:
    within = [s for s in handler if on(s, parent)] if parent else handler
    n = sum(on(s, pat) for s in within)
    print(f"| {name} | {100 * n / max(1, len(handler)):.1f}% |")'
