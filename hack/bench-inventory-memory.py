#!/usr/bin/env python3
"""pitrguard's file inventory at scale: time to ready and memory of `pitrguard serve --inventory FILE`.

usage: hack/bench-inventory-memory.py            (env: SIZES="10000 100000", RUNS=3, WRITE=0 to leave BENCHMARKS.md,
                                                  COMPARE=<another pitrguard binary> measured on the same files, each
                                                  start alternating with this checkout's)

Writes, in a temporary directory, one `kubectl get backups -A -o yaml` List and its `-o json` twin per size
(realistic Backups from hack/benchlib.py, with managedFields as kubectl prints them), then starts
`target/release/pitrguard serve --inventory FILE` RUNS times for each: wall time from spawn to the first 200 from
GET /readyz, VmRSS and VmHWM right after, and /metrics must count every Backup. Baseline in the same run: the
same binary with `--inventory examples/`. Rewrites BENCHMARKS.md between <!-- memory:begin --> and
<!-- memory:end -->. Needs `cargo build --release` (done first) and python3.
"""
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "hack"))
import benchlib  # noqa: E402

SIZES = [int(n) for n in os.environ.get("SIZES", "10000 100000").split()]
RUNS = int(os.environ.get("RUNS", "3"))
WRITE = os.environ.get("WRITE", "1") not in ("0", "false", "no", "")
NAMESPACES = 10
BIN = os.path.join(REPO, "target", "release", "pitrguard")
COMPARE = os.environ.get("COMPARE", "")


def log(*a):
    print("bench-inventory-memory:", *a, file=sys.stderr, flush=True)


def kubectl_object(i):
    """The i-th Backup as `kubectl get -o yaml` shows it: object, status and managedFields."""
    _, _, obj, status = benchlib.backup(i, NAMESPACES)
    obj = dict(obj, status=status["status"])
    meta = obj["metadata"]
    meta.update({
        "creationTimestamp": "2024-05-07T00:00:00Z", "generation": 1, "resourceVersion": str(200000 + i),
        "uid": f"0b6c{i:08x}-1d2e-4f3a-8b9c-{i:012x}", "finalizers": ["dataprotection.kubeblocks.io/finalizer"],
        "managedFields": [
            {"apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "fieldsType": "FieldsV1", "manager": "dataprotection",
             "operation": "Update", "time": "2024-05-07T00:00:00Z",
             "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubeblocks.io/cluster-snapshot": {},
                                                           "f:dataprotection.kubeblocks.io/target-pod-name": {}},
                                         "f:finalizers": {".": {}, "v:\"dataprotection.kubeblocks.io/finalizer\"": {}},
                                         "f:labels": {".": {}, **{f"f:{k}": {} for k in meta["labels"]}}},
                          "f:spec": {".": {}, "f:backupMethod": {}, "f:backupPolicyName": {}, "f:deletionPolicy": {},
                                     "f:retentionPeriod": {}}}},
            {"apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "fieldsType": "FieldsV1", "manager": "dataprotection",
             "operation": "Update", "subresource": "status", "time": "2024-05-07T00:05:00Z",
             "fieldsV1": {"f:status": {".": {}, **{f"f:{k}": {} for k in status["status"]}}}},
        ],
    })
    return obj


PLAIN = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./")


def scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if v and set(v) <= PLAIN and v not in ("true", "false", "null", "yes", "no") and not v[0].isdigit() and not v.startswith(("-", ".")):
        return v
    return json.dumps(v)


def emit(obj, pad, out):
    """Block-style YAML in go-yaml's layout (sorted keys, sequences not indented under their key)."""
    for k in sorted(obj):
        v, key = obj[k], scalar(k)
        if isinstance(v, dict) and v:
            out.append(f"{pad}{key}:\n")
            emit(v, pad + "  ", out)
        elif isinstance(v, list) and v:
            out.append(f"{pad}{key}:\n")
            for item in v:
                if isinstance(item, dict) and item:
                    part = []
                    emit(item, pad + "  ", part)
                    part[0] = pad + "- " + part[0][len(pad) + 2:]
                    out.extend(part)
                else:
                    out.append(f"{pad}- {scalar(item)}\n")
        elif isinstance(v, dict):
            out.append(f"{pad}{key}: {{}}\n")
        elif isinstance(v, list):
            out.append(f"{pad}{key}: []\n")
        else:
            out.append(f"{pad}{key}: {scalar(v)}\n")


def write_lists(n, work):
    yaml_path, json_path = os.path.join(work, f"backups-{n}.yaml"), os.path.join(work, f"backups-{n}.json")
    with open(yaml_path, "w") as y, open(json_path, "w") as j:
        y.write("apiVersion: v1\nitems:\n")
        j.write('{\n    "apiVersion": "v1",\n    "items": [\n')
        for i in range(n):
            obj = kubectl_object(i)
            part = []
            emit(obj, "  ", part)
            part[0] = "- " + part[0][2:]
            y.write("".join(part))
            text = json.dumps(obj, indent=4, sort_keys=True)
            j.write("        " + text.replace("\n", "\n        ") + (",\n" if i + 1 < n else "\n"))
        y.write('kind: List\nmetadata:\n  resourceVersion: ""\n')
        j.write('    ],\n    "kind": "List",\n    "metadata": {\n        "resourceVersion": ""\n    }\n}\n')
    return yaml_path, json_path


def mib(kib):
    return f"{kib / 1024:.1f}"


def main():
    load_before = benchlib.loadavg()
    log("cargo build --release")
    subprocess.run(["cargo", "build", "--release", "--bin", "pitrguard"], cwd=REPO, check=True)
    work = tempfile.mkdtemp(prefix="pitrguard-bench-memory.")
    try:
        rows, base, starts = [], None, iter(range(1_000_000))
        run = lambda label, args, expected, binary=BIN: dict(  # noqa: E731
            benchlib.measure_serve(binary, args, os.path.join(work, f"run-{next(starts)}-{label}"), expected), label=label)
        base_runs = [run("baseline", ["--inventory", os.path.join(REPO, "examples")], None) for _ in range(RUNS)]
        base = {k: statistics.median(r[k] for r in base_runs) for k in ("ready_s", "rss_kib", "hwm_kib")}
        log(f"baseline (examples/): ready {base['ready_s']:.2f}s, VmRSS {mib(base['rss_kib'])} MiB, VmHWM {mib(base['hwm_kib'])} MiB")
        for n in SIZES:
            started = time.monotonic()
            files = write_lists(n, work)
            log(f"{n} Backups written in {time.monotonic() - started:.0f}s")
            for path in files:
                size = os.path.getsize(path)
                runs, compared = [], []
                for _ in range(RUNS):
                    if COMPARE:
                        compared.append(run("compare", ["--inventory", path], n, COMPARE))
                    runs.append(run(os.path.basename(path), ["--inventory", path], n))
                med = {k: statistics.median(r[k] for r in runs) for k in ("ready_s", "rss_kib", "hwm_kib")}
                fmt = os.path.basename(path).rsplit(".", 1)[1].upper()
                rows.append((n, fmt, size, med, runs))
                if COMPARE:
                    cmed = {k: statistics.median(r[k] for r in compared) for k in ("ready_s", "rss_kib", "hwm_kib")}
                    rows.append((n, f"{fmt}, `COMPARE`", size, cmed, compared))
                log(f"{path}: {size / 2**20:.0f} MiB; ready {med['ready_s']:.2f}s, VmRSS {mib(med['rss_kib'])} MiB, "
                    f"VmHWM {mib(med['hwm_kib'])} MiB")
                os.remove(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    section = report(base, rows, load_before, benchlib.loadavg())
    print(section)
    if WRITE:
        benchlib.write_section("memory", section, os.path.join(REPO, "BENCHMARKS.md"))
        log("written to BENCHMARKS.md")


def report(base, rows, load_before, load_after):
    cmd = "hack/bench-inventory-memory.py"
    for k, d in (("SIZES", "10000 100000"), ("RUNS", "3")):
        if os.environ.get(k, d) != d:
            cmd = f"{k}=\"{os.environ[k]}\" {cmd}"
    if COMPARE:
        cmd = f"COMPARE={COMPARE} {cmd}"
    table = ["| Backups | file | file size MiB | ready s | VmRSS MiB | VmHWM MiB | resident bytes per Backup (over baseline) |",
             "|---:|---|---:|---:|---:|---:|---:|",
             f"| baseline (examples/) | YAML | - | {base['ready_s']:.2f} | {mib(base['rss_kib'])} | {mib(base['hwm_kib'])} | - |"]
    for n, fmt, size, med, _ in rows:
        per = (med["rss_kib"] - base["rss_kib"]) * 1024 / n
        table.append(f"| {n:,} | {fmt} | {size / 2**20:.0f} | {med['ready_s']:.2f} | {mib(med['rss_kib'])} | "
                     f"{mib(med['hwm_kib'])} | {per:.0f} |")
    return "\n".join([
        "<!-- memory:begin -->",
        "## File inventory at scale (`hack/bench-inventory-memory.py`)",
        "",
        f"Command: `{cmd}`",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; {benchlib.machine()}; "
        f"load average (1/5/15 min) {load_before} before, {load_after} after",
        f"- pitrguard: `cargo build --release` at {benchlib.commit()}; `pitrguard serve --inventory FILE`, dev "
        "certificates made at start, `RUST_LOG=info` to a file",
        f"- files: `kubectl get backups -A -o yaml` (and `-o json`) Lists written by the script: realistic Backups in "
        f"{NAMESPACES} namespaces, clusters of {benchlib.PER_CLUSTER} (1 Continuous, {benchlib.PER_CLUSTER - 1} Full), "
        "with the ~2 KB `kubeblocks.io/cluster-snapshot` annotation, status and managedFields",
        "- ready = wall time from spawning the process to the first 200 from `GET /readyz` (polled every 50 ms): "
        "process start, certificates, reading the file, the index; VmRSS and VmHWM from /proc/PID/status right after; "
        "`/metrics` then counted every Backup",
        f"- medians of {RUNS} starts each; baseline in the same run: the same binary with `--inventory examples/`",
        *([f"- `COMPARE` rows: `{COMPARE}` on the same files, each start right before this checkout's; its resident "
           "bytes per Backup are over this checkout's baseline"] if COMPARE else []),
        "",
        *table,
        "<!-- memory:end -->",
    ])


if __name__ == "__main__":
    main()
