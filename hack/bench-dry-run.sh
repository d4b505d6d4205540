#!/usr/bin/env bash
# What pitrguard's webhooks add to `kubectl apply --dry-run=server` of a Restore OpsRequest.
#
#   usage: hack/bench-dry-run.sh
#   env:   N        measured requests per configuration with the ALLOWED restore (default 200)
#          N_DENY   measured requests per configuration with the DENIED restore (default 50)
#          BLOCK    requests per block, ALLOWED restore (default 50); DENY_BLOCK the same for DENIED (default 25)
#          WARMUP   unmeasured requests at the start of every block (default 3)
#          ALLOWED  the restore pitrguard allows (default examples/postgresql/restores/pitr-allowed.yaml)
#          DENIED   the restore pitrguard denies (default examples/postgresql/restores/pitr-after-end.yaml)
#          WRITE=0  print the figures but leave BENCHMARKS.md alone
#
# Steps: `cargo build --release --bin pitrguard` (retried while the tree does not build); the binary is
# copied into a temp dir so a rebuild during the run cannot swap it. A throw-away control plane
# (tools/testcp/up.sh; tools/testcp/down.sh on any exit) with the examples' ActionSets and Backups
# (status set through the status subresource). `pitrguard serve` in live mode with `pitrguard certs`
# certificates, RUST_LOG=info and JSON logs as manifests/base/deployment.yaml ships it; wait for /readyz.
# Then blocks that alternate WITHOUT and WITH the two webhook configurations of
# manifests/base/webhooks.yaml (clientConfig replaced by a URL to the local pitrguard and a caBundle, as
# tests/common/cluster.rs does). After every switch the script waits until the API server's behaviour
# shows it (WITH: the allowed restore comes back with pitrguard's base-backup annotation and the denied
# one is refused; WITHOUT: the denied one is accepted and the annotation is gone), runs WARMUP requests,
# and then checks over the measured block that pitrguard's decision counter moved by exactly 2 per
# request WITH (mutate + validate) and not at all WITHOUT. Per request it records the wall time of the
# kubectl process and the POST latency that kubectl prints at -v=6; per block, the API server's own
# request and webhook durations from its /metrics. The section goes into BENCHMARKS.md between
# <!-- dry-run:begin --> and <!-- dry-run:end --> (appended if missing; other sections are kept).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export N=${N:-200} N_DENY=${N_DENY:-50} BLOCK=${BLOCK:-50} DENY_BLOCK=${DENY_BLOCK:-25} WARMUP=${WARMUP:-3}
export ALLOWED=${ALLOWED:-examples/postgresql/restores/pitr-allowed.yaml}
export DENIED=${DENIED:-examples/postgresql/restores/pitr-after-end.yaml}
export WRITE=${WRITE:-1}
log() { echo "bench-dry-run: $*" >&2; }
for v in N N_DENY BLOCK DENY_BLOCK WARMUP; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { log "$v=${!v} is not a number"; exit 2; }
done
((N >= 1 && N_DENY >= 1 && BLOCK >= 1 && DENY_BLOCK >= 1)) || { log "N, N_DENY, BLOCK and DENY_BLOCK must be >= 1"; exit 2; }
for f in "$ALLOWED" "$DENIED"; do [[ -f $f ]] || { log "$f not found"; exit 2; }; done
# The command line that reproduces this run, with the overrides that were given.
CMD=hack/bench-dry-run.sh
for v in WARMUP DENY_BLOCK BLOCK N_DENY N DENIED ALLOWED; do
  case $v in
    N) d=200 ;; N_DENY) d=50 ;; BLOCK) d=50 ;; DENY_BLOCK) d=25 ;; WARMUP) d=3 ;;
    ALLOWED) d=examples/postgresql/restores/pitr-allowed.yaml ;; DENIED) d=examples/postgresql/restores/pitr-after-end.yaml ;;
  esac
  [[ ${!v} == "$d" ]] || CMD="$v=${!v} $CMD"
done
export CMD

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pitrguard-bench-dry-run.XXXXXX")
CP=$WORK/cp
PG_PID= PY_PID=
# shellcheck source=hack/lib.sh
source "$REPO/hack/lib.sh" # stop_pid
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$PY_PID"
  if [[ -n $PG_PID ]]; then
    log "stopping pitrguard (pid $PG_PID)"
    stop_pid "$PG_PID"
  fi
  if [[ -d $CP ]]; then
    log "stopping the control plane (tools/testcp/down.sh)"
    tools/testcp/down.sh "$CP" || log "down.sh $CP failed"
  fi
  if ((rc != 0)) && [[ -s $WORK/pitrguard.log ]]; then
    log "FAILED (rc=$rc); last lines of pitrguard's log:"
    tail -n 20 "$WORK/pitrguard.log" >&2 || true
  fi
  rm -rf -- "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- pitrguard ---------------------------------------------------------------------------------------
# The other engineer's tree may be mid-edit: retry a failing build a few times before giving up.
log "cargo build --release --bin pitrguard"
for attempt in 1 2 3 4; do
  if cargo build --release --bin pitrguard; then break; fi
  ((attempt < 4)) || { log "cargo build failed $attempt times; giving up"; exit 1; }
  log "cargo build failed (attempt $attempt); retrying in 180 s"
  sleep 180
done
cp target/release/pitrguard "$WORK/pitrguard"
BIN_MTIME=$(date -u -r target/release/pitrguard '+%Y-%m-%d %H:%M UTC')
export BIN_MTIME

# --- control plane -----------------------------------------------------------------------------------
log "control plane (tools/testcp/up.sh)"
tools/testcp/up.sh "$CP"
# shellcheck disable=SC1091
source "$CP/env" # KUBECONFIG, TESTCP_API_URL, TESTCP_CA, TESTCP_TOKEN, TESTCP_KUBECTL
export KUBECONFIG TESTCP_API_URL TESTCP_CA TESTCP_TOKEN TESTCP_KUBECTL
K=("$TESTCP_KUBECTL" --cache-dir "$WORK/kube-cache")

log "namespace demo, the examples' ActionSets and Backups (+ status)"
"${K[@]}" create namespace demo >/dev/null
"${K[@]}" apply -f examples/postgresql/actionsets.yaml -f examples/postgresql/backups.yaml >/dev/null
# `apply` drops .status (status subresource); write it as KubeBlocks does, through the subresource.
"${K[@]}" apply --server-side --subresource=status --field-manager=bench-dry-run \
  -f examples/postgresql/backups.yaml >/dev/null

log "pitrguard certs + serve (live mode)"
"$WORK/pitrguard" certs --out "$WORK/certs" --hosts 127.0.0.1,localhost >/dev/null
read -r PORT ADMIN_PORT < <(python3 -c '
import socket; s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]; print(*[x.getsockname()[1] for x in s])')
export PORT ADMIN_PORT
RUST_LOG=info PITRGUARD_LOG_FORMAT=json "$WORK/pitrguard" serve \
  --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" \
  --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key" \
  </dev/null >"$WORK/pitrguard.log" 2>&1 &
PG_PID=$!
for ((i = 0; ; i++)); do
  [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz" 2>/dev/null) == 200 ]] && break
  kill -0 "$PG_PID" 2>/dev/null || { log "pitrguard exited before ready"; exit 1; }
  ((i < 600)) || { log "pitrguard not ready after 60 s"; exit 1; }
  sleep 0.1
done
log "pitrguard ready (pid $PG_PID, webhook 127.0.0.1:$PORT, admin 127.0.0.1:$ADMIN_PORT)"

# The shipped webhook configurations, clientConfig pointed at the local pitrguard.
"${K[@]}" create --dry-run=client -o json -f manifests/base/webhooks.yaml | python3 -c '
import json, sys
text, dec, i, items = sys.stdin.read(), json.JSONDecoder(), 0, []
ca = open(sys.argv[2]).read().strip()
while True:
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    obj, i = dec.raw_decode(text, i)
    for w in obj["webhooks"]:
        path = w["clientConfig"]["service"]["path"]
        w["clientConfig"] = {"url": f"https://127.0.0.1:{sys.argv[1]}{path}", "caBundle": ca}
    items.append(obj)
assert len(items) == 2, items
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
' "$PORT" "$WORK/certs/ca-bundle.b64" >"$WORK/webhooks.json"
export WORK REPO

cat >"$WORK/bench.py" <<'PY'
"""Driver of hack/bench-dry-run.sh: switches the webhooks, runs kubectl, measures, writes BENCHMARKS.md."""
import datetime, http.client, json, math, os, re, signal, ssl, statistics, subprocess, sys, time
from urllib.parse import urlsplit

N, N_DENY, BLOCK, DENY_BLOCK, WARMUP = (int(os.environ[k]) for k in ("N", "N_DENY", "BLOCK", "DENY_BLOCK", "WARMUP"))
WRITE = os.environ.get("WRITE", "1") not in ("0", "false", "no", "")
WORK, CMD, REPO = os.environ["WORK"], os.environ["CMD"], os.environ["REPO"]
ALLOWED, DENIED = os.environ["ALLOWED"], os.environ["DENIED"]
KUBECTL = [os.environ["TESTCP_KUBECTL"], "--cache-dir", os.path.join(WORK, "kube-cache")]
HOOKS = os.path.join(WORK, "webhooks.json")
ADMIN = int(os.environ["ADMIN_PORT"])
API = urlsplit(os.environ["TESTCP_API_URL"])
SSL = ssl.create_default_context(cafile=os.environ["TESTCP_CA"])
TOKEN = os.environ["TESTCP_TOKEN"]
ANNOTATION = "pitrguard.io/base-backup"


def log(*a):
    print("bench-dry-run:", *a, file=sys.stderr, flush=True)


def on_term(signum, frame):
    raise SystemExit(128 + signum)  # subprocess.run kills its kubectl on the way out


signal.signal(signal.SIGTERM, on_term)


def kubectl(*args, check=True):
    p = subprocess.run([*KUBECTL, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return p


# --- metrics -------------------------------------------------------------------------------------------

SAMPLE = re.compile(r'^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if m:
            out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def total(samples, metric, /, **labels):
    return sum(v for n, l, v in samples if n == metric and all(l.get(k) == x for k, x in labels.items()))


def fetch_metrics(conn, what, headers=None):
    """GET /metrics on `conn`, parsed; `what` names the server in an error."""
    try:
        conn.request("GET", "/metrics", headers=headers or {})
        r = conn.getresponse()
        body = r.read().decode()
    finally:
        conn.close()
    if r.status != 200:
        raise SystemExit(f"{what} /metrics: HTTP {r.status}")
    return parse_metrics(body)


def pitrguard_metrics():
    return fetch_metrics(http.client.HTTPConnection("127.0.0.1", ADMIN, timeout=10), "pitrguard")


def apiserver_metrics():
    conn = http.client.HTTPSConnection(API.hostname, API.port, context=SSL, timeout=30)
    return fetch_metrics(conn, "kube-apiserver", {"Authorization": f"Bearer {TOKEN}"})


# --- one request ---------------------------------------------------------------------------------------

# kubectl >= 1.30 (klog structured):  "Response" verb="POST" url="https://..." status="201 Created" milliseconds=2
# older kubectl:                      POST https://... 201 Created in 2 milliseconds
NEW = re.compile(r'"Response" verb="POST" url="([^"]*)" status="(\d{3})[^"]*"(?: \S+=\S+)*? milliseconds=(\d+)')
OLD = re.compile(r'\bPOST (https://\S+) (\d{3})\b[^\n]*? in (\d+) milliseconds')


def post_latency(stderr):
    """(status, milliseconds) of the dry-run POST of the OpsRequest, from kubectl -v=6."""
    found = [(m.group(1), int(m.group(2)), int(m.group(3))) for rx in (NEW, OLD) for m in rx.finditer(stderr)]
    found = [(s, ms) for url, s, ms in found if "/opsrequests" in url and "dryRun=All" in url]
    if len(found) != 1:
        raise SystemExit(f"expected one dry-run POST of an OpsRequest in kubectl's -v=6 output, found {len(found)}:\n"
                         + "\n".join(stderr.splitlines()[-15:]))
    return found[0]


def dry_run(manifest, expect_status):
    started = time.perf_counter()
    p = subprocess.run([*KUBECTL, "apply", "--dry-run=server", "-v=6", "-f", manifest],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall_ms = (time.perf_counter() - started) * 1000
    status, ms = post_latency(p.stderr)
    if status != expect_status or (p.returncode == 0) != (expect_status < 300):
        raise SystemExit(f"{manifest}: POST answered {status} (kubectl exit {p.returncode}), expected {expect_status}:\n"
                         + "\n".join(p.stderr.splitlines()[-5:]))
    return wall_ms, ms


# --- switching the webhooks ---------------------------------------------------------------------------

def state():
    """(mutated, refused): does the allowed restore come back with pitrguard's annotation, is the denied one refused."""
    a = kubectl("apply", "--dry-run=server", "-o", "json", "-f", ALLOWED)
    mutated = ANNOTATION in (json.loads(a.stdout)["metadata"].get("annotations") or {})
    d = kubectl("apply", "--dry-run=server", "-f", DENIED, check=False)
    refused = d.returncode != 0
    if refused and "denied the request" not in d.stderr:
        raise SystemExit(f"{DENIED} refused, but not by a webhook: {d.stderr.strip()}")
    return mutated, refused


def switch(on):
    started = time.monotonic()
    if on:
        kubectl("apply", "-f", HOOKS)
    else:
        kubectl("delete", "--ignore-not-found", "-f", HOOKS)
    want = (True, True) if on else (False, False)
    polls = 0
    while True:
        polls += 1
        s = state()
        if s == want:
            break
        if time.monotonic() - started > 60:
            raise SystemExit(f"webhooks {'on' if on else 'off'}: the API server still shows (mutated, refused) = {s}")
        time.sleep(0.2)
    return time.monotonic() - started, polls


# --- blocks ---------------------------------------------------------------------------------------------

def group_of(manifest):
    with open(manifest) as f:
        m = re.search(r'^apiVersion:\s*([^/\s]+)/', f.read(), re.M)
    if not m:
        raise SystemExit(f"{manifest}: no apiVersion")
    return m.group(1)


def run_block(kind, manifest, on, n, idx, results):
    expect = 422 if (kind == "denied" and on) else 201
    switched_s, polls = switch(on)
    for _ in range(WARMUP):
        dry_run(manifest, expect)
    pg0, api0 = pitrguard_metrics(), apiserver_metrics()
    walls, lats = [], []
    for _ in range(n):
        w, ms = dry_run(manifest, expect)
        walls.append(w)
        lats.append(ms)
    pg1, api1 = pitrguard_metrics(), apiserver_metrics()

    # pitrguard must have been asked exactly twice per request WITH the webhooks (mutate + validate), never
    # WITHOUT. (The counter is absent from /metrics until the first decision: absent counts as 0.)
    moved = total(pg1, "pitrguard_admission_decisions_total") - total(pg0, "pitrguard_admission_decisions_total")
    want = 2 * n if on else 0
    if round(moved) != want:
        raise SystemExit(f"block {idx} ({kind}, webhooks {'on' if on else 'off'}): pitrguard_admission_decisions_total "
                         f"moved by {moved:.0f} over the block, expected {want}")
    grp = group_of(manifest)
    sel = dict(verb="POST", dry_run="All", resource="opsrequests", group=grp)
    d = lambda s0, s1, metric, /, **l: total(s1, metric, **l) - total(s0, metric, **l)  # noqa: E731
    api_count = d(api0, api1, "apiserver_request_duration_seconds_count", **sel)
    api_sum = d(api0, api1, "apiserver_request_duration_seconds_sum", **sel)
    hooks = {}
    for name in ("mutate.pitrguard.io", "validate.pitrguard.io"):
        c = d(api0, api1, "apiserver_admission_webhook_admission_duration_seconds_count", name=name)
        s = d(api0, api1, "apiserver_admission_webhook_admission_duration_seconds_sum", name=name)
        hooks[name] = (c, s)
    own = {}
    for ep in ("mutate", "validate"):
        c = d(pg0, pg1, "pitrguard_admission_request_duration_seconds_count", endpoint=ep)
        s = d(pg0, pg1, "pitrguard_admission_request_duration_seconds_sum", endpoint=ep)
        own[ep] = (c, s)
    fresh = d(pg0, pg1, "pitrguard_fresh_reads_total")
    r = dict(kind=kind, on=on, idx=idx, n=n, walls=walls, lats=lats, switched_s=switched_s, polls=polls,
             api_count=api_count, api_sum=api_sum, hooks=hooks, own=own, fresh=fresh)
    results.append(r)
    log(f"block {idx:2d} {kind:7s} webhooks {'ON ' if on else 'OFF'} n={n}: switch {switched_s:.1f}s ({polls} polls); "
        f"kubectl wall median {statistics.median(walls):.0f} ms; -v=6 POST median {statistics.median(lats):.0f} ms "
        f"(mean {statistics.fmean(lats):.2f}); API server mean {1000 * api_sum / api_count if api_count else float('nan'):.2f} ms"
        + (f"; fresh reads {fresh:.0f}" if fresh else ""))


def plan(total_n, block):
    sizes = []
    while total_n > 0:
        sizes.append(min(block, total_n))
        total_n -= sizes[-1]
    return sizes


# --- report ---------------------------------------------------------------------------------------------

def pct(xs, p):
    """Nearest rank: the smallest sample with at least p% of the samples <= it."""
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def sh(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True, cwd=REPO).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def versions():
    try:
        v = json.loads(kubectl("version", "-o", "json").stdout)
        return v["clientVersion"]["gitVersion"], v["serverVersion"]["gitVersion"]
    except (SystemExit, KeyError, ValueError):
        return "?", "?"


def merged(results, kind, on):
    rs = [r for r in results if r["kind"] == kind and r["on"] == on]
    walls = [w for r in rs for w in r["walls"]]
    lats = [x for r in rs for x in r["lats"]]
    api_c, api_s = sum(r["api_count"] for r in rs), sum(r["api_sum"] for r in rs)
    return dict(rs=rs, walls=walls, lats=lats, api_mean=1000 * api_s / api_c if api_c else float("nan"),
                api_c=api_c, hooks={k: tuple(sum(r["hooks"][k][i] for r in rs) for i in (0, 1)) for k in rs[0]["hooks"]},
                own={k: tuple(sum(r["own"][k][i] for r in rs) for i in (0, 1)) for k in rs[0]["own"]},
                fresh=sum(r["fresh"] for r in rs))


def f1(x):
    return f"{x:.1f}"


def rows_for(kind, results, label):
    off, on = merged(results, kind, False), merged(results, kind, True)
    out = []
    for name, m in (("without webhooks", off), ("with webhooks", on)):
        out.append(f"| {label} | {name} | {len(m['lats'])} | {f1(statistics.median(m['walls']))} | {f1(pct(m['walls'], 90))} | "
                   f"{f1(pct(m['walls'], 99))} | {statistics.median(m['lats']):g} | {pct(m['lats'], 90):g} | "
                   f"{pct(m['lats'], 99):g} | {statistics.fmean(m['lats']):.2f} | {m['api_mean']:.2f} |")
    dw = statistics.median(on["walls"]) - statistics.median(off["walls"])
    dl = statistics.median(on["lats"]) - statistics.median(off["lats"])
    dm = statistics.fmean(on["lats"]) - statistics.fmean(off["lats"])
    da = on["api_mean"] - off["api_mean"]
    out.append(f"| {label} | **with − without** | | **{dw:+.1f}** | | | **{dl:+g}** | | | {dm:+.2f} | {da:+.2f} |")
    return out, off, on, dl, da


def hook_line(m):
    parts = []
    for name, (c, s) in m["hooks"].items():
        if c:
            parts.append(f"`{name}` {1000 * s / c:.2f} ms ({c:.0f} calls)")
    own = []
    for ep, (c, s) in m["own"].items():
        if c:
            own.append(f"{ep} {1e6 * s / c:.0f} µs")
    return "; ".join(parts) + (f"; pitrguard's own time per request (admission_request_duration): {', '.join(own)}" if own else "")


def report(results, load_before, load_after, kubectl_v, apiserver_v, started):
    commit = sh("git", "rev-parse", "--short", "HEAD")
    dirty = sh("git", "status", "--porcelain", "--untracked-files=no") not in ("", "?")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    allow_rows, a_off, a_on, a_dl, a_da = rows_for("allowed", results, f"allowed (`{os.path.basename(ALLOWED)}`)")
    deny_rows, d_off, d_on, d_dl, d_da = rows_for("denied", results, f"denied (`{os.path.basename(DENIED)}`)")
    verdict = "met" if a_dl < 5 else "NOT met"
    blocks = [f"| {r['idx']} | {r['kind']} | {'on' if r['on'] else 'off'} | {r['n']} | {statistics.median(r['walls']):.0f} | "
              f"{statistics.median(r['lats']):g} | {statistics.fmean(r['lats']):.2f} | "
              f"{1000 * r['api_sum'] / r['api_count'] if r['api_count'] else float('nan'):.2f} | {r['switched_s']:.1f} |"
              for r in results]
    lines = [
        "<!-- dry-run:begin -->",
        "## What the webhooks add to `kubectl apply --dry-run=server` (`hack/bench-dry-run.sh`)",
        "",
        f"Command: `{CMD}`",
        "",
        f"- date: {started:%Y-%m-%d %H:%M UTC}; run took {(datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 60:.1f} min",
        f"- machine: nproc {sh('nproc')}, {cpu}; load average (1/5/15 min) {load_before} before, {load_after} after",
        f"- pitrguard: `cargo build --release --bin pitrguard` at commit {commit}"
        f"{' with uncommitted changes (the working tree as built)' if dirty else ''}, binary of {os.environ['BIN_MTIME']}; "
        "`pitrguard serve` in live mode, `pitrguard certs` certificates, `RUST_LOG=info`, JSON logs to a file "
        "(as manifests/base/deployment.yaml)",
        f"- control plane: `tools/testcp/up.sh` on the same machine: kube-apiserver {apiserver_v} + etcd, "
        f"kubectl {kubectl_v}; the examples' 2 ActionSets and 5 Backups (status through the status subresource)",
        "- webhooks: the two configurations of manifests/base/webhooks.yaml (matchConditions, failurePolicy Fail, "
        "timeoutSeconds 5), clientConfig = URL of the local pitrguard + caBundle. *Without* = the same control plane "
        "with both configurations deleted",
        f"- requests: `kubectl apply --dry-run=server -v=6 -f <restore>`, one process each, run one after another; "
        f"blocks alternate without/with ({BLOCK} per block for the allowed restore, {DENY_BLOCK} for the denied one), "
        f"{WARMUP} unmeasured requests open every block. After each switch the script waits until the API server "
        "shows it (with: the allowed restore comes back with the `pitrguard.io/base-backup` annotation and the denied "
        "one is refused; without: neither); over every measured block pitrguard's `pitrguard_admission_decisions_total` "
        "moved by exactly 2 per request with the webhooks (mutate + validate) and by 0 without them",
        "- columns: *wall* = the whole kubectl process (start, kubeconfig, cached discovery/OpenAPI, GET of the "
        "object, GET of the namespace, the POST), measured around the process; *POST* = the dry-run POST's latency "
        "as kubectl -v=6 prints it (`milliseconds=`, whole milliseconds, truncated: hence the mean as well); "
        "*API server mean* = `apiserver_request_duration_seconds` sum/count for these POSTs from the API server's "
        "/metrics over the measured blocks (server side, no client, full resolution). p90/p99 are nearest-rank",
        "",
        "| restore | configuration | n | wall median ms | wall p90 | wall p99 | POST median ms | POST p90 | POST p99 | POST mean | API server mean ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *allow_rows,
        *deny_rows,
        "",
        f"**Target (the webhooks add under 5 ms at the median of the POST, allowed restore): {verdict}** — "
        f"{a_dl:+g} ms at the median of kubectl's -v=6 POST latency, {a_da:+.2f} ms in the API server's mean.",
        "",
        f"- where the time goes, allowed restore with webhooks (API server's "
        f"`apiserver_admission_webhook_admission_duration_seconds`, mean per call): {hook_line(a_on)}",
        f"- denied restore with webhooks: {hook_line(d_on)}; pitrguard confirmed "
        f"{d_on['fresh']:.0f} denials against the API server (read-your-writes, `pitrguard_fresh_reads_total`) "
        f"for {len(d_on['lats'])} requests",
        "",
        "<details><summary>Per block (in the order run: drift shows in both configurations)</summary>",
        "",
        "| block | restore | webhooks | n | wall median ms | POST median ms | POST mean ms | API server mean ms | switch s |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
        *blocks,
        "",
        "</details>",
        "<!-- dry-run:end -->",
    ]
    return "\n".join(lines)


def write_section(section):
    """Replaces the dry-run section of BENCHMARKS.md (hack/benchlib.py); every other byte is kept."""
    sys.path.insert(0, os.path.join(REPO, "hack"))
    import benchlib
    benchlib.write_section("dry-run", section, os.path.join(REPO, "BENCHMARKS.md"))


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = loadavg()
    kubectl_v, apiserver_v = versions()
    log(f"N={N} N_DENY={N_DENY} BLOCK={BLOCK} DENY_BLOCK={DENY_BLOCK} WARMUP={WARMUP}; load average {load_before}; "
        f"kubectl {kubectl_v}, kube-apiserver {apiserver_v}")
    results = []
    idx = 0
    # Allowed restore: off, on, off, on, ... so that drift falls on both.
    for n in plan(N, BLOCK):
        for on in (False, True):
            idx += 1
            run_block("allowed", ALLOWED, on, n, idx, results)
    for n in plan(N_DENY, DENY_BLOCK):
        for on in (False, True):
            idx += 1
            run_block("denied", DENIED, on, n, idx, results)
    section = report(results, load_before, loadavg(), kubectl_v, apiserver_v, started)
    print(section)
    if WRITE:
        write_section(section)


main()
PY

log "benchmark"
python3 "$WORK/bench.py" &
PY_PID=$!
wait "$PY_PID"
PY_PID=
log "done"
