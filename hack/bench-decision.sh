#!/usr/bin/env bash
# Runs the criterion benchmark of one decision against inventories of 100, 10 000, 100 000 and
# 1 000 000 Backups, with the naive full scan as the baseline in the same run, and writes the
# figures into BENCHMARKS.md (between the decision markers).
#   usage: hack/bench-decision.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="cargo bench --bench decision -- --warm-up-time 2 --measurement-time 5"
$cmd
python3 - "$cmd" <<'PY'
import datetime, json, os, sys
sys.path.insert(0, "hack")
import benchlib
cmd = sys.argv[1]
def est(name, n, group="decision"):
    with open(f"target/criterion/{group}/{name}/{n}/new/estimates.json".replace("//", "/")) as f:
        e = json.load(f)
    return e["median"]["point_estimate"], e["median"]["confidence_interval"]
def fmt(ns):
    return f"{ns/1000:.2f} µs" if ns < 1e6 else f"{ns/1e6:.2f} ms"
builds = json.load(open("target/criterion/decision/index-build.json"))
rows = []
base_judge, base_decide, base_rules = est("judge", 100)[0], est("decide", 100)[0], est("rules", 100)[0]
def cell(ns, ci, base):
    return f"{fmt(ns)} ({fmt(ci['lower_bound'])} – {fmt(ci['upper_bound'])}) | {ns/base:.2f}×"
for n in (100, 10000, 100000, 1000000):
    j, jci = est("judge", n)
    d, dci = est("decide", n)
    r, rci = est("rules", n)
    s, _ = est("naive-scan-baseline", n)
    rows.append(f"| {n:>9,} | {cell(j, jci, base_judge)} | {cell(d, dci, base_decide)} | {cell(r, rci, base_rules)} "
                f"| {fmt(s)} | {s/j:.1f}× | {builds[str(n)]:.2f} s |")
section = f"""<!-- decision:begin -->
## One admission decision vs. inventory size

`{cmd}` (or `hack/bench-decision.sh`, which also rewrites this section) — {datetime.date.today()}, {benchlib.machine()}, {benchlib.commit()}.

`judge` = `core::judge_json` on the Restore OpsRequest's JSON text, as the CLI and an UPDATE give it (read the head, decode
the fields the rules read, R1–R13, base pick, M1–M3); `decide` = `core::judge_head` on the head already read, as
`/validate` decides once `parse_review` has read the Restore with the AdmissionReview (decode, rules, base pick,
mutations); `rules` = `rules::evaluate` alone on the decoded request.
The continuous backup is in a cluster of 50 Backups; 20 clusters per namespace; mimalloc, as the binary. Baseline in the
same run: the base-backup pick done by scanning every Backup (what a controller without an index does). Medians with
criterion's 95% interval; ratios to the same column at 100 Backups. Index build = making the facts of every Backup and
adding them to the index, once, wall time.

| Backups | `judge` (median, 95% CI) | vs. 100 | `decide` (median, 95% CI) | vs. 100 | `rules` (median, 95% CI) | vs. 100 | naive scan | scan / judge | index build |
|---:|---|---:|---|---:|---|---:|---:|---:|---:|
""" + "\n".join(rows) + """

Around the decision, the admission layer (same run, `examples/admission/review-denied.json`, 1.6 KB, denied by R10):

| step | median |
|---|---:|
""" + "\n".join(f"| {label} | {fmt(est(name, '', 'admission')[0])} |" for label, name in [
    ("parse the AdmissionReview, and the Restore's head in the same pass", "parse_review"),
    ("decide (`judge_head`: the Restore's fields, the rules, the denial)", "decide"),
    ("build and serialise the response", "respond+serialize"),
    ("all three", "end-to-end"),
]) + """
<!-- decision:end -->"""
benchlib.write_section("decision", section)
print(section)
PY
