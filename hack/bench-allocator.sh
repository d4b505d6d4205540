#!/usr/bin/env bash
# glibc's malloc vs mimalloc under the webhook load benchmark: runs
# `cargo bench --bench webhook_load` twice, `--no-default-features --features runtime` (glibc) and the default
# build (mimalloc), one after the other, and writes both into BENCHMARKS.md (between the
# allocator markers).
#   usage: hack/bench-allocator.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d "${TMPDIR:-/tmp}/pitrguard-bench-allocator.XXXXXX")
trap 'rm -rf "$out"' EXIT
WEBHOOK_LOAD_WRITE=0 cargo bench --bench webhook_load --no-default-features --features runtime 2>/dev/null | tee "$out/glibc.txt"
WEBHOOK_LOAD_WRITE=0 cargo bench --bench webhook_load 2>/dev/null | tee "$out/mimalloc.txt"
python3 - "$out" <<'PY'
import datetime, os, re, sys
out = sys.argv[1]
row = re.compile(r"^\s+(webhook --policy-module|webhook \(again\)|webhook|floor)\s+(HTTP/1\.1|HTTP/2)\s+([\d.]+) req/s\s+p50\s+(\d+) µs\s+p90\s+(\d+) µs\s+p99\s+(\d+) µs.*errors (\d+)")
runs = {}
for alloc in ("glibc", "mimalloc"):
    for line in open(f"{out}/{alloc}.txt"):
        m = row.match(line)
        if m:
            runs[(alloc, m[1], m[2])] = (float(m[3]), int(m[4]), int(m[6]), int(m[7]))
lines = []
for (alloc, label, proto), (rps, p50, p99, err) in runs.items():
    floor = runs[(alloc, "floor", "HTTP/1.1")][0]
    lines.append(f"| {alloc} | {label} | {proto} | {rps:.0f} | {rps / floor:.2f}× | {p50} | {p99} | {err} |")
def ratio(label):
    g, m = runs.get(("glibc", label, "HTTP/1.1")), runs.get(("mimalloc", label, "HTTP/1.1"))
    return f"{label}: req/s {m[0] / g[0]:.2f}×, p99 {m[2] / g[2]:.2f}×" if g and m else ""
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
section = f"""<!-- allocator:begin -->
## Allocator: glibc vs mimalloc (`hack/bench-allocator.sh`)

Command: `hack/bench-allocator.sh` — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {cpu}. The webhook load benchmark (setup in its
section) run twice, one build after the other: `--no-default-features --features runtime` (glibc malloc) and the default build (the whole
process, floor server and load generator included, on mimalloc). The floor/webhook ratio within each run is the fair
comparison; between runs the machine may have changed.

| allocator | run | protocol | req/s | / floor (same run) | p50 µs | p99 µs | errors |
|---|---|---|---:|---:|---:|---:|---:|
""" + "\n".join(lines) + f"""

mimalloc / glibc: {'; '.join(r for r in (ratio('webhook'), ratio('webhook --policy-module'), ratio('floor')) if r)}.
<!-- allocator:end -->"""
path = "BENCHMARKS.md"
text = open(path).read()
if "<!-- allocator:begin -->" in text:
    text = re.sub(r"<!-- allocator:begin -->.*?<!-- allocator:end -->", lambda m: section, text, flags=re.S)
else:
    text = text.rstrip() + "\n\n" + section + "\n"
open(path, "w").write(text)
print(section)
PY
