#!/usr/bin/env bash
# pitrguard's live inventory at scale: time to ready and memory with N Backups in the cluster.
#
#   usage: hack/bench-live-inventory.sh
#   env:   N           Backups to create (default 10000), in NAMESPACES namespaces (default 10),
#                      clusters of 50 Backups (1 continuous + 49 full)
#          THREADS     client threads creating them, one keep-alive connection each (default 4)
#          RUNS        measured starts of pitrguard with the N Backups (default 3)
#          WRITE=0     print the figures but leave BENCHMARKS.md alone
#          COMPARE     another pitrguard binary (say, an older commit's), measured the same way in the
#                      same run, alternating with this checkout's: its rows and medians are added
#
# Steps: cargo build --release; a throw-away control plane (tools/testcp/up.sh; stopped by
# tools/testcp/down.sh on any exit); a baseline start of `pitrguard serve` in live mode while the
# cluster holds no Backup; N Backups created and their status set through the status subresource
# (python3 stdlib over the API server's HTTPS, not kubectl); RUNS starts of `pitrguard serve` with
# the N Backups. Each start: wall time from spawning the process to GET /readyz = 200 (polled every
# 50 ms), then VmRSS and VmHWM from /proc/PID/status, then /metrics must show
# pitrguard_inventory_objects{kind="Backup"} equal to the Backups in the cluster, then SIGTERM
# (must exit 0). The figures are printed and written into BENCHMARKS.md between
# <!-- live:begin --> and <!-- live:end --> (N=10000; other sizes: live-N), other sections kept.
# Before each start, the floor of its ready time: the API server's paged list of the Backups alone.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export N=${N:-10000} NAMESPACES=${NAMESPACES:-10} THREADS=${THREADS:-4} RUNS=${RUNS:-3} WRITE=${WRITE:-1}
for v in N NAMESPACES THREADS RUNS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "bench-live-inventory: $v=${!v} is not a number" >&2; exit 2; }
done
((NAMESPACES >= 1 && THREADS >= 1 && RUNS >= 1)) || { echo "bench-live-inventory: NAMESPACES, THREADS, RUNS must be >= 1" >&2; exit 2; }
# The command line that reproduces this run, with the overrides that were given.
CMD=hack/bench-live-inventory.sh
for v in RUNS THREADS NAMESPACES N; do
  case $v in N) d=10000 ;; NAMESPACES) d=10 ;; THREADS) d=4 ;; RUNS) d=3 ;; esac
  [[ ${!v} == "$d" ]] || CMD="$v=${!v} $CMD"
done
export CMD

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pitrguard-bench-live.XXXXXX")
CP=$WORK/cp
PY_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # The python driver stops the pitrguard it started; make sure of it if we are interrupted.
  if [[ -n $PY_PID ]] && kill -0 "$PY_PID" 2>/dev/null; then
    kill -TERM "$PY_PID" 2>/dev/null || true
    wait "$PY_PID" 2>/dev/null || true
  fi
  if [[ -s $WORK/pitrguard.pid ]]; then
    pid=$(cat "$WORK/pitrguard.pid")
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  tools/testcp/down.sh "$CP" || echo "bench-live-inventory: down.sh $CP failed" >&2
  if ((rc == 0)); then
    rm -rf -- "$WORK"
  else
    echo "bench-live-inventory: FAILED (rc=$rc); pitrguard logs kept in $WORK" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== cargo build --release" >&2
cargo build --release
BIN=$REPO/target/release/pitrguard

echo "== control plane (tools/testcp/up.sh)" >&2
tools/testcp/up.sh "$CP"
# shellcheck disable=SC1091
source "$CP/env" # KUBECONFIG, TESTCP_API_URL, TESTCP_CA, TESTCP_TOKEN, TESTCP_KUBECTL
if [[ -n ${COMPARE:-} ]]; then
  [[ -x $COMPARE ]] || { echo "bench-live-inventory: COMPARE=$COMPARE is not an executable" >&2; exit 2; }
  COMPARE=$(realpath "$COMPARE")
  CMD="COMPARE=$COMPARE $CMD"
fi
export COMPARE=${COMPARE:-}
export REPO BIN WORK KUBECONFIG TESTCP_API_URL TESTCP_CA TESTCP_TOKEN TESTCP_KUBECTL

cat >"$WORK/bench.py" <<'PY'
"""Driver of hack/bench-live-inventory.sh: creates the Backups, starts and measures pitrguard, writes BENCHMARKS.md."""
import datetime, http.client, json, os, queue, re, signal, socket, ssl, statistics, subprocess, sys, threading, time
from urllib.parse import urlsplit

N, NAMESPACES, THREADS, RUNS = (int(os.environ[k]) for k in ("N", "NAMESPACES", "THREADS", "RUNS"))
WRITE = os.environ.get("WRITE", "1") not in ("0", "false", "no", "")
# One section per size: N=10000 is `live`, any other N `live-N`.
SECTION = "live" if N == 10000 else f"live-{N}"
BIN, WORK, CMD, COMPARE = os.environ["BIN"], os.environ["WORK"], os.environ["CMD"], os.environ["COMPARE"]
API = urlsplit(os.environ["TESTCP_API_URL"])
TOKEN = os.environ["TESTCP_TOKEN"]
SSL = ssl.create_default_context(cafile=os.environ["TESTCP_CA"])
GROUP = "/apis/dataprotection.kubeblocks.io/v1alpha1"


def log(*a):
    print("bench-live-inventory:", *a, file=sys.stderr, flush=True)


def on_term(signum, frame):
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, on_term)


# --- the API server ---------------------------------------------------------------------------------

class Api:
    """One keep-alive HTTPS connection to the API server, bearer token, JSON in and out."""

    def __init__(self):
        self.conn = None

    def call(self, method, path, body=None, content_type="application/json", ok=(200, 201)):
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        for attempt in range(6):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPSConnection(API.hostname, API.port, context=SSL, timeout=60)
                headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
                if data is not None:
                    headers["Content-Type"] = content_type
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                text = resp.read()
            except (OSError, http.client.HTTPException) as e:
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 5:
                    raise RuntimeError(f"{method} {path}: {e}") from e
                time.sleep(0.2 * (attempt + 1))
                continue
            if resp.status in ok:
                return resp.status, json.loads(text) if text else None
            if resp.status in (429, 500, 502, 503, 504) and attempt < 5:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {text[:500]!r}")


# --- realistic Backups (hack/benchlib.py) ---------------------------------------------------------

sys.path.insert(0, os.path.join(os.environ["REPO"], "hack"))
import benchlib  # noqa: E402
from benchlib import PER_CLUSTER, cluster_snapshot  # noqa: E402


def backup(i):
    return benchlib.backup(i, NAMESPACES)


def create(n):
    """Namespaces, then n Backups and their status, from THREADS threads; returns (seconds, bytes/object)."""
    api = Api()
    for k in range(NAMESPACES):
        api.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": f"bench-{k}"}}, ok=(201, 409))
    if n == 0:
        return 0.0, 0
    work = queue.Queue()
    for i in range(n):
        work.put(i)
    done = [0]
    lock = threading.Lock()
    failure = []
    started = time.monotonic()

    def worker():
        api = Api()
        while not failure:
            try:
                i = work.get_nowait()
            except queue.Empty:
                return
            ns, name, obj, status = backup(i)
            try:
                api.call("POST", f"{GROUP}/namespaces/{ns}/backups", obj)
                api.call("PATCH", f"{GROUP}/namespaces/{ns}/backups/{name}/status", status,
                         content_type="application/merge-patch+json")
            except Exception as e:  # noqa: BLE001 - reported and fatal
                failure.append(f"{ns}/{name}: {e}")
                return
            with lock:
                done[0] += 1
                d = done[0]
            if d % 1000 == 0 or d == n:
                el = time.monotonic() - started
                log(f"created {d}/{n} Backups (+status) in {el:.1f}s ({d / el:.0f}/s)")

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failure:
        raise SystemExit(f"creating Backups failed: {failure[0]}")
    seconds = time.monotonic() - started
    size = len(json.dumps(backup(1)[2], separators=(",", ":"))) + len(json.dumps(backup(1)[3], separators=(",", ":")))
    # The API server must now list exactly n Backups.
    _, listed = api.call("GET", f"{GROUP}/backups?limit=1")
    remaining = listed["metadata"].get("remainingItemCount", 0)
    total = len(listed["items"]) + remaining
    if total != n:
        raise SystemExit(f"the API server lists {total} Backups, expected {n}")
    return seconds, size


# --- the floor: the API server's list alone --------------------------------------------------------

def list_floor():
    """Seconds for the API server to list every Backup in pages of 500 (what kube's watcher asks for
    first), each page read whole over one keep-alive connection and not decoded: the least any
    client of the watch API spends before it holds the Backups."""
    conn = http.client.HTTPSConnection(API.hostname, API.port, context=SSL, timeout=120)
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
    started, token, pages = time.monotonic(), "", 0
    try:
        while True:
            conn.request("GET", f"{GROUP}/backups?limit=500" + (f"&continue={token}" if token else ""), headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise SystemExit(f"listing Backups: HTTP {resp.status}: {body[:300]!r}")
            pages += 1
            # The list's metadata follows its items: only the tail is looked at.
            m = re.search(rb'"continue":"([^"]*)"', body[-2048:])
            token = m.group(1).decode() if m else ""
            if not token:
                break
    finally:
        conn.close()
    seconds = time.monotonic() - started
    log(f"list floor: {pages} pages in {seconds:.2f}s")
    return seconds


# --- pitrguard -------------------------------------------------------------------------------------

def measure(label, expected_backups, binary=BIN):
    """Starts `pitrguard serve` in live mode, measures start-to-ready and memory, checks /metrics, stops it."""
    run_dir = os.path.join(WORK, f"run-{label}")
    r = benchlib.measure_serve(binary, [], run_dir, expected_backups, pid_file=os.path.join(WORK, "pitrguard.pid"))
    log(f"{label}: ready in {r['ready_s']:.2f}s, VmRSS {r['rss_kib'] / 1024:.1f} MiB, VmHWM {r['hwm_kib'] / 1024:.1f} MiB, "
        f"{r['backups']} Backups in /metrics, stopped {r['stop_s']:.2f}s after SIGTERM")
    return dict(r, label=label)


# --- report ----------------------------------------------------------------------------------------

sh, loadavg = benchlib.sh, benchlib.loadavg


def mib(kib):
    return f"{kib / 1024:.1f}"


def median_run(runs):
    """The medians of several starts, key by key."""
    return {k: statistics.median(r[k] for r in runs) for k in ("ready_s", "rss_kib", "hwm_kib")}


def per_backup(base, runs, key):
    """Median bytes of `key` (VmRSS or VmHWM) per Backup over the baseline."""
    return (statistics.median(r[key] for r in runs) - base[key]) * 1024 / N if N else float("nan")


def compared(base, runs, cmp_base, cmp_runs):
    """The rows and the summary of the COMPARE binary, measured in the same run."""
    if not COMPARE:
        return [], []
    rows = [f"| compare: N=0 (baseline, medians of {len(cmp_runs)} starts) | 0 | {cmp_base['ready_s']:.2f} | {mib(cmp_base['rss_kib'])} | {mib(cmp_base['hwm_kib'])} |"]
    for i, r in enumerate(cmp_runs, 1):
        rows.append(f"| compare: N={N}, start {i} | {r['backups']} | {r['ready_s']:.2f} | {mib(r['rss_kib'])} | {mib(r['hwm_kib'])} |")
    med = lambda rs, key: statistics.median(r[key] for r in rs)  # noqa: E731
    text = ["", f"Compared in the same run (`COMPARE={COMPARE}`, started before this checkout's binary each round): "
            f"{per_backup(cmp_base, cmp_runs, 'rss_kib'):.0f} resident bytes per Backup "
            f"({per_backup(cmp_base, cmp_runs, 'hwm_kib'):.0f} at the peak), ready in {med(cmp_runs, 'ready_s'):.2f} s; "
            f"this checkout: {per_backup(base, runs, 'rss_kib'):.0f} ({per_backup(base, runs, 'hwm_kib'):.0f}), "
            f"{med(runs, 'ready_s'):.2f} s."]
    return rows, text


def report(base, runs, floors, create_s, obj_bytes, load_before, load_after, cmp_rows=(), cmp_text=()):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    commit = sh("git", "rev-parse", "--short", "HEAD")
    dirty = sh("git", "status", "--porcelain", "--untracked-files=no") not in ("", "?")
    k8s = os.path.basename(os.path.dirname(os.environ["TESTCP_KUBECTL"]))
    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    rows = [f"| N=0 (baseline, medians of {RUNS} starts) | 0 | {base['ready_s']:.2f} | {mib(base['rss_kib'])} | {mib(base['hwm_kib'])} |"]
    for i, r in enumerate(runs, 1):
        rows.append(f"| N={N}, start {i} | {r['backups']} | {r['ready_s']:.2f} | {mib(r['rss_kib'])} | {mib(r['hwm_kib'])} |")
    rate = f"{N / create_s:.0f} Backups/s" if create_s else "-"
    lines = [
        f"<!-- {SECTION}:begin -->",
        f"## Live inventory at scale: {N:,} Backups (`hack/bench-live-inventory.sh`)",
        "",
        f"Command: `{CMD}`",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- machine: nproc {sh('nproc')}, {cpu}; load average (1/5/15 min) {load_before} before, {load_after} after",
        f"- pitrguard: `cargo build --release` at commit {commit}{' with uncommitted changes' if dirty else ''}; "
        f"`pitrguard serve` in live mode (no `--inventory`), dev certificates made at start in a fresh "
        f"`--dev-certs-dir`, `RUST_LOG=info` to a file",
        f"- control plane: `tools/testcp/up.sh` (etcd + kube-apiserver {k8s}, KubeBlocks CRDs) on the same machine",
        f"- Backups: {N} in {NAMESPACES} namespaces, clusters of {PER_CLUSTER} (1 Continuous `Running`, "
        f"{PER_CLUSTER - 1} Full `Completed`), labels as KubeBlocks sets them, a "
        f"{len(cluster_snapshot('bench-0', 0))}-byte `kubeblocks.io/cluster-snapshot` annotation; status (phase, "
        f"timeRange, start/completionTimestamp, backupMethod, ...) set through the status subresource; about "
        f"{obj_bytes} bytes of JSON sent per Backup (object + status)",
        f"- creating them: {create_s:.1f} s ({rate}; one POST and one status PATCH each, python3 http.client, "
        f"{THREADS} threads with a keep-alive connection each)",
        "- ready = wall time from spawning `pitrguard serve` to the first 200 from `GET /readyz` on the admin port "
        "(polled every 50 ms), i.e. process start, certificates, kubeconfig, the initial lists of the watches "
        "(Backups, ActionSets, Clusters) and the index; VmRSS and VmHWM read from /proc/PID/status right after; "
        "`/metrics` then showed `pitrguard_inventory_objects{kind=\"Backup\"}` equal to the Backups in the cluster",
        "- baseline: the same binary against the same control plane before any Backup was created "
        "(namespaces and CRDs present, 0 Backups), so the difference is what the Backups cost",
        "",
        "| run | Backups in inventory | ready s | VmRSS MiB | VmHWM MiB |",
        "|---|---:|---:|---:|---:|",
        *rows,
        *cmp_rows,
        "",
        f"Median of the {len(runs)} starts with {N} Backups: ready in {med('ready_s'):.2f} s, VmRSS "
        f"{mib(med('rss_kib'))} MiB, VmHWM {mib(med('hwm_kib'))} MiB; over the baseline that is "
        f"{per_backup(base, runs, 'rss_kib'):.0f} bytes of resident memory per Backup "
        f"({per_backup(base, runs, 'hwm_kib'):.0f} bytes at the peak).",
        "",
        f"Floor of the ready time, in the same run: the API server lists the {N} Backups in pages of 500 (as "
        f"kube's watcher asks), read whole by python3 and not decoded, in {statistics.median(floors):.2f} s "
        f"(median of {len(floors)}, one before each start: {', '.join(f'{f:.2f}' for f in floors)} s).",
        *cmp_text,
        f"<!-- {SECTION}:end -->",
    ]
    return "\n".join(lines)


def write_section(section):
    benchlib.write_section(SECTION, section)
    log("written to BENCHMARKS.md")


def main():
    load_before = loadavg()
    log(f"N={N} NAMESPACES={NAMESPACES} THREADS={THREADS} RUNS={RUNS}; load average {load_before}")
    create(0)  # the namespaces only
    # The baseline moves by a few MiB from start to start: its median over RUNS starts.
    bases, cmp_bases = [], []
    for i in range(1, RUNS + 1):
        if COMPARE:
            cmp_bases.append(measure(f"compare-baseline-{i}", 0, COMPARE))
        bases.append(measure(f"baseline-{i}", 0))
    base, cmp_base = median_run(bases), median_run(cmp_bases) if COMPARE else None
    log(f"creating {N} Backups ...")
    create_s, obj_bytes = create(N)
    log(f"created {N} Backups (+status) in {create_s:.1f}s")
    runs, floors, cmp_runs = [], [], []
    for i in range(1, RUNS + 1):
        floors.append(list_floor())
        if COMPARE:
            cmp_runs.append(measure(f"compare-n{N}-{i}", N, COMPARE))
        runs.append(measure(f"n{N}-{i}", N))
    section = report(base, runs, floors, create_s, obj_bytes, load_before, loadavg(),
                     *compared(base, runs, cmp_base, cmp_runs))
    print(section)
    if WRITE:
        write_section(section)


main()
PY

echo "== benchmark" >&2
python3 "$WORK/bench.py" &
PY_PID=$!
wait "$PY_PID"
PY_PID=
echo "== stopping the control plane" >&2
