#!/usr/bin/env bash
# What the policy module host (wasmtime via wapc + wasmtime-provider) adds to a cold
# `cargo build --release`: builds BASE (default 5f7642e, the last commit before the host)
# and HEAD from clean checkouts, each into an empty target directory, one after the other,
# and writes the wall times into BENCHMARKS.md (between the cold-build markers).
#   usage: hack/bench-cold-build.sh [BASE]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
base=${1:-5f7642e}
head=$(git rev-parse --short HEAD)
work=$(mktemp -d "${TMPDIR:-/tmp}/pitrguard-cold-build.XXXXXX")
cleanup() {
  git -C "$root" worktree remove --force "$work/base" 2>/dev/null || true
  git -C "$root" worktree remove --force "$work/head" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cargo fetch --locked >/dev/null # downloads are not build time
declare -A secs
for which in base head; do
  rev=$([[ $which == base ]] && echo "$base" || echo "$head")
  git worktree add --detach -q "$work/$which" "$rev"
  (cd "$work/$which" && cargo fetch --locked >/dev/null)
  echo "cold-build: cargo build --release --locked at $rev ($which) ..." >&2
  start=$SECONDS
  (cd "$work/$which" && CARGO_TARGET_DIR="$work/$which-target" cargo build --release --locked --quiet)
  secs[$which]=$((SECONDS - start))
  echo "cold-build: $which: ${secs[$which]} s" >&2
done
python3 - "$base" "$head" "${secs[base]}" "${secs[head]}" <<'PY'
import datetime, os, re, subprocess, sys
base, head, b, h = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout.strip()
load = open("/proc/loadavg").read().split()[:3]
section = f"""<!-- cold-build:begin -->
## What the policy module host adds to a cold release build (`hack/bench-cold-build.sh`)

Command: `hack/bench-cold-build.sh {base}` — {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {cpu}, {rustc}; load average after: {' '.join(load)}

Each: a clean `git worktree` of the commit, an empty `CARGO_TARGET_DIR`, crates already downloaded, `cargo build --release --locked`, one after the other.

| commit | what | cold `cargo build --release` |
|---|---|---:|
| {base} | before the host (no wasmtime) | {b/60:.1f} min ({b:.0f} s) |
| {head} | with `wapc` + `wasmtime-provider` 2.25 (wasmtime 48, cranelift) | {h/60:.1f} min ({h:.0f} s) |

The host adds {h-b:.0f} s ({h/b:.2f}×) to the first release build; incremental builds after a change in pitrguard's own code do not rebuild it.
<!-- cold-build:end -->"""
path = "BENCHMARKS.md"
text = open(path).read()
if "<!-- cold-build:begin -->" in text:
    text = re.sub(r"<!-- cold-build:begin -->.*?<!-- cold-build:end -->", lambda m: section, text, flags=re.S)
else:
    text = text.rstrip() + "\n\n" + section + "\n"
open(path, "w").write(text)
print(section)
PY
