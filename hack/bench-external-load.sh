#!/usr/bin/env bash
# The webhook under EXTERNAL load generators (wrk, h2load), next to a floor server on the same stack.
#
#   usage: hack/bench-external-load.sh
#   env:   SECS     measured seconds per run (default 10)
#          WARMUP   seconds of warm-up before every measured run (default 2)
#          REPS     floor/webhook pairs per load shape (default 3; the table reports medians)
#          WEBHOOK_LOG  RUST_LOG of the webhook (default info, as deployed; e.g. warn to see what the
#                   per-decision log line costs)
#          QUIET_WAIT  seconds to wait, before the runs, for the machine to be quiet (other processes
#                   using < 0.3 cores over 3 s; default 60; 0: do not wait); the runs start anyway after it
#          WRITE=0  print the figures but leave BENCHMARKS.md alone
#
# Servers, both started once and kept up for the whole run (the one not under load is idle):
# - webhook: the real `pitrguard serve --inventory examples/` (built by `cargo build --release --bin
#   pitrguard`), logging as manifests/base/deployment.yaml ships it (RUST_LOG=info,
#   PITRGUARD_LOG_FORMAT=json; one line per decision, to a file that is emptied after every run);
# - floor: hack/floor_server.rs (`cargo build --release --example floor-server`): the same transport
#   (serve_tls + ReloadingTls), allocator and runtime, whose POST /validate reads the body and answers a
#   constant allowed AdmissionReview, i.e. what TLS, HTTP and axum cost without pitrguard's work.
# The two are built by separate cargo commands: an example pulls in the dev-dependencies' features
# (tokio's test-util), which must not end up in the measured pitrguard binary. Both binaries are copied
# into a temp dir first, so a rebuild during the run cannot swap them.
# Both use one certificate from `pitrguard certs`; the body is examples/admission/review-denied.json
# (POST /validate, Content-Type: application/json). Before the runs, curl checks that the webhook answers
# 200 with "allowed":false (R10) and the floor 200 with "allowed":true, over HTTP/1.1 and HTTP/2.
#
# Load shapes: wrk (HTTP/1.1; 2 threads, 8 and 32 connections, a Lua script that POSTs the body; latency
# percentiles from wrk's own histogram) and h2load (HTTP/2 over ALPN h2; 1 connection x 8 streams and
# 4 connections x 8 streams; latency percentiles from its --log-file). For each shape: floor, webhook,
# floor, webhook, ... (REPS pairs, interleaved so drift shows), every run a WARMUP-second invocation of
# the same command (discarded) and then a SECS-second measured one. Per measured run: requests/s,
# latency, errors (wrk: socket errors and non-2xx answers; h2load: failed/errored/timed-out requests and
# every status other than 200 in its log), the CPU used by the server (/proc/PID/stat), by the load
# generator (bash `times`) and by everything else on the machine (/proc/stat minus those two); for the
# webhook, its decision counter (/metrics) must have counted a denial by R10 for every answered request.
# The section goes into BENCHMARKS.md between <!-- external:begin --> and <!-- external:end -->
# (appended if missing; other sections are kept); not written if any request failed.
#
# All processes started here are stopped by PID on exit (also on error or Ctrl-C); the temp dir is removed.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export SECS=${SECS:-10} WARMUP=${WARMUP:-2} REPS=${REPS:-3} WRITE=${WRITE:-1}
export WEBHOOK_LOG=${WEBHOOK_LOG:-info} QUIET_WAIT=${QUIET_WAIT:-60}
log() { echo "bench-external-load: $*" >&2; }
for v in SECS WARMUP REPS QUIET_WAIT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { log "$v=${!v} is not a whole number"; exit 2; }
done
((SECS >= 1 && WARMUP >= 1 && REPS >= 1)) || { log "SECS, WARMUP and REPS must be >= 1"; exit 2; }
for tool in wrk h2load curl python3 cargo; do
  command -v "$tool" >/dev/null || { log "$tool not found (wrk and h2load: apt-get install wrk nghttp2-client)"; exit 2; }
done
BODY=examples/admission/review-denied.json
[[ -f $BODY ]] || { log "$BODY not found"; exit 2; }
# The command line that reproduces this run, with the overrides that were given.
CMD=hack/bench-external-load.sh
for v in WRITE QUIET_WAIT WEBHOOK_LOG REPS WARMUP SECS; do
  case $v in SECS) d=10 ;; WARMUP) d=2 ;; REPS) d=3 ;; WRITE) d=1 ;; WEBHOOK_LOG) d=info ;; QUIET_WAIT) d=60 ;; esac
  [[ ${!v} == "$d" ]] || CMD="$v=${!v} $CMD"
done
export CMD BODY REPO

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pitrguard-bench-external.XXXXXX")
export WORK
WEBHOOK_PID='' FLOOR_PID='' LOAD_PID=''
# shellcheck source=hack/lib.sh
source "$REPO/hack/lib.sh" # stop_pid
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$LOAD_PID"
  [[ -n $WEBHOOK_PID ]] && { log "stopping pitrguard serve (pid $WEBHOOK_PID)"; stop_pid "$WEBHOOK_PID"; }
  [[ -n $FLOOR_PID ]] && { log "stopping floor-server (pid $FLOOR_PID)"; stop_pid "$FLOOR_PID"; }
  if ((rc != 0)); then
    log "FAILED (rc=$rc)"
    for f in webhook.log floor.log load.out; do
      [[ -s $WORK/$f ]] || continue
      log "last lines of $f:"
      tail -n 15 "$WORK/$f" >&2 || true
    done
  fi
  rm -rf -- "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build -------------------------------------------------------------------------------------------
# The other engineer's tree may be mid-edit: retry a failing build a few times before giving up.
build() {
  local attempt
  for attempt in 1 2 3 4; do
    log "cargo build --release $*"
    if cargo build --release "$@"; then return 0; fi
    ((attempt < 4)) || { log "cargo build --release $* failed $attempt times; giving up"; exit 1; }
    log "cargo build failed (attempt $attempt); retrying in 180 s"
    sleep 180
  done
}
build --bin pitrguard
cp target/release/pitrguard "$WORK/pitrguard"
build --example floor-server
cp target/release/examples/floor-server "$WORK/floor-server"
# What was built: the commit and whether the tree differed from it.
COMMIT=$(git rev-parse --short HEAD)
# BENCHMARKS.md is what the benchmarks write, not what they measure.
[[ -n $(git status --porcelain --untracked-files=no -- . ":!BENCHMARKS.md") ]] && COMMIT+=" with uncommitted changes"
export COMMIT
RUSTC_VERSION=$(rustc -V 2>/dev/null || echo "rustc ?")
WRK_VERSION=$(wrk -v 2>&1 | head -n 1 | sed -e 's/ Copyright.*//' -e 's/ *$//' || true)
H2LOAD_VERSION=$(h2load --version 2>&1 | head -n 1 || true)
export RUSTC_VERSION WRK_VERSION H2LOAD_VERSION

# --- servers -----------------------------------------------------------------------------------------
"$WORK/pitrguard" certs --out "$WORK/certs" --hosts 127.0.0.1,localhost >/dev/null
read -r PORT ADMIN_PORT FLOOR_PORT < <(python3 -c '
import socket; s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]; print(*[x.getsockname()[1] for x in s])')
# >> (O_APPEND): the log can be emptied between runs while the server writes to it.
RUST_LOG=$WEBHOOK_LOG PITRGUARD_LOG_FORMAT=json "$WORK/pitrguard" serve --inventory examples/ \
  --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" \
  --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key" \
  </dev/null >>"$WORK/webhook.log" 2>&1 &
WEBHOOK_PID=$!
"$WORK/floor-server" --addr "127.0.0.1:$FLOOR_PORT" --cert "$WORK/certs/tls.crt" --key "$WORK/certs/tls.key" \
  </dev/null >"$WORK/floor.log" 2>&1 &
FLOOR_PID=$!

post() { # url, curl flags...: prints the body, then the status code on the last line
  local url=$1
  shift
  curl -sS --max-time 5 --cacert "$WORK/certs/ca.crt" -H 'Content-Type: application/json' \
    --data-binary "@$BODY" -w '\n%{http_code}' "$@" "$url"
}
for ((i = 0; ; i++)); do
  up=0
  [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz" 2>/dev/null) == 200 ]] && up=$((up + 1))
  [[ $(post "https://127.0.0.1:$FLOOR_PORT/validate" 2>/dev/null | tail -n 1) == 200 ]] && up=$((up + 1))
  ((up == 2)) && break
  kill -0 "$WEBHOOK_PID" 2>/dev/null || { log "pitrguard serve exited before ready"; exit 1; }
  kill -0 "$FLOOR_PID" 2>/dev/null || { log "floor-server exited before ready"; exit 1; }
  ((i < 300)) || { log "servers not ready after 30 s"; exit 1; }
  sleep 0.1
done
log "ready: webhook pid $WEBHOOK_PID https://127.0.0.1:$PORT/validate (admin $ADMIN_PORT), floor pid $FLOOR_PID https://127.0.0.1:$FLOOR_PORT/validate"

# What each server answers, over both protocols: the webhook must deny (the real path), the floor allow.
for proto in --http1.1 --http2; do
  for check in "webhook $PORT false" "floor $FLOOR_PORT true"; do
    read -r name port allowed <<<"$check"
    out=$(post "https://127.0.0.1:$port/validate" "$proto") || { log "$name: curl $proto failed"; exit 1; }
    code=${out##*$'\n'}
    answer=${out%$'\n'*}
    if [[ $code != 200 || $answer != *"\"allowed\":$allowed"* ]]; then
      log "$name ($proto) answered HTTP $code: $answer"
      exit 1
    fi
  done
done
WEBHOOK_ANSWER=$(post "https://127.0.0.1:$PORT/validate" --http1.1 | sed '$d')
export WEBHOOK_ANSWER
log "checked: webhook 200 \"allowed\":false, floor 200 \"allowed\":true (HTTP/1.1 and HTTP/2)"

# wrk's script: POST the body; print the figures wrk keeps (µs) in one parseable line at the end.
LUA=$WORK/post.lua
cat >"$LUA" <<EOF
local f = assert(io.open([==[$REPO/$BODY]==], "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
function done(summary, latency, requests)
  io.write(string.format("WRK_RESULT duration_us=%d requests=%d connect=%d read=%d write=%d status=%d timeout=%d p50=%d p90=%d p99=%d max=%d\n",
    summary.duration, summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
EOF

# --- runs --------------------------------------------------------------------------------------------
cat >"$WORK/bench.py" <<'PY'
"""Helper of hack/bench-external-load.sh: parses one run (`run`), writes the section (`report`)."""
import datetime, json, os, re, statistics, subprocess, sys

WORK = os.environ["WORK"]
RESULTS = os.path.join(WORK, "results.jsonl")
HZ = os.sysconf("SC_CLK_TCK")
OTHER_LIMIT = 0.25  # cores used by other processes above which a run is marked as disturbed


def log(msg):
    print(f"bench-external-load: {msg}", file=sys.stderr, flush=True)


def clock_s(text):
    """'1m2.345s' (bash `times`) -> seconds."""
    m = re.fullmatch(r"(\d+)m([\d.]+)s", text.strip())
    return int(m.group(1)) * 60 + float(m.group(2))


def children_cpu(path):
    """Second line of bash `times`: user and system time of the shell's waited-for children."""
    lines = open(path).read().split("\n")
    return sum(clock_s(t) for t in lines[1].split())


def parse_wrk(out):
    m = re.search(r"^WRK_RESULT (.*)$", out, re.M)
    if not m:
        raise SystemExit("wrk printed no WRK_RESULT line:\n" + out[-2000:])
    v = {k: int(x) for k, x in (kv.split("=") for kv in m.group(1).split())}
    errors = v["connect"] + v["read"] + v["write"] + v["timeout"] + v["status"]
    detail = f"connect {v['connect']}, read {v['read']}, write {v['write']}, timeout {v['timeout']}, non-2xx {v['status']}"
    return dict(requests=v["requests"], seconds=v["duration_us"] / 1e6, p50=v["p50"], p90=v["p90"], p99=v["p99"],
                max=v["max"], errors=errors, error_detail=detail)


def parse_h2load(out, log_file):
    fin = re.search(r"^finished in ([\d.]+)(m?s)", out, re.M)
    req = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", out, re.M)
    codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out, re.M)
    if not (fin and req and codes):
        raise SystemExit("unexpected h2load output:\n" + out[-2000:])
    proto = re.search(r"^Application protocol: (\S+)", out, re.M)
    seconds = float(fin.group(1)) / (1000 if fin.group(2) == "ms" else 1)
    done, succeeded, failed, errored, timeout = (int(req.group(i)) for i in (3, 4, 5, 6, 7))
    lat, not200 = [], 0
    with open(log_file) as f:
        for line in f:
            _, status, us = line.split("\t")
            lat.append(int(us))
            not200 += status != "200"
    lat.sort()
    pct = lambda p: lat[min(len(lat), max(1, -(-len(lat) * p // 100))) - 1] if lat else float("nan")  # noqa: E731
    errors = failed + errored + timeout + not200 + (done - succeeded)
    detail = (f"failed {failed}, errored {errored}, timeout {timeout}, not 200 {not200}; "
              f"status codes {codes.group(1)} 2xx {codes.group(2)} 3xx {codes.group(3)} 4xx {codes.group(4)} 5xx")
    if proto is None or proto.group(1) != "h2":
        errors += 1
        detail += f"; application protocol {proto.group(1) if proto else '?'}, not h2"
    if len(lat) != done:
        detail += f"; {len(lat)} lines in --log-file for {done} done"
    return dict(requests=succeeded, seconds=seconds, p50=pct(50), p90=pct(90), p99=pct(99),
                max=lat[-1] if lat else float("nan"), errors=errors, error_detail=detail)


def run(argv):
    a = dict(kv.split("=", 1) for kv in argv)
    out = open(a["out"]).read()
    r = parse_wrk(out) if a["tool"] == "wrk" else parse_h2load(out, a["log"])
    server_s = (int(a["srv1"]) - int(a["srv0"])) / HZ
    busy_s = (int(a["busy1"]) - int(a["busy0"])) / HZ
    client_s = children_cpu(a["times1"]) - children_cpu(a["times0"])
    r.update(tool=a["tool"], proto=a["proto"], load=a["load"], server=a["server"], rep=int(a["rep"]),
             rps=r["requests"] / r["seconds"], server_cores=server_s / r["seconds"],
             client_cores=client_s / r["seconds"], other_cores=max(0.0, busy_s - server_s - client_s) / r["seconds"],
             cpu_us_per_req=server_s * 1e6 / r["requests"] if r["requests"] else float("nan"))
    if a["server"] == "webhook" and a.get("dec0") and a.get("dec1"):
        judged = int(float(a["dec1"]) - float(a["dec0"]))
        r["decisions"] = judged
        if judged < r["requests"]:
            r["errors"] += 1
            r["error_detail"] += f"; only {judged} R10 denials counted in /metrics for {r['requests']} answers"
    if r["requests"] == 0:
        r["errors"] += 1
        r["error_detail"] += "; no request completed"
    with open(RESULTS, "a") as f:
        f.write(json.dumps(r) + "\n")
    line = (f"[{int(a['idx']):>2}/{a['total']}] {a['tool']:<6} {a['proto']:<8} {a['load']:<18} {a['server']:<7} "
            f"rep {a['rep']}: {r['rps']:>7.0f} req/s  p50 {r['p50']:>5} µs  p99 {r['p99']:>6} µs  errors {r['errors']}  "
            f"cores: server {r['server_cores']:.2f}, {a['tool']} {r['client_cores']:.2f}, other {r['other_cores']:.2f}")
    if r["other_cores"] > OTHER_LIMIT:
        line += "  (!) other processes were busy"
    log(line)
    if r["errors"]:
        log(f"    errors: {r['error_detail']}")


def sh(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def ratio(a, b):
    return f"{a / b:.2f}×" if b else "-"


def report(argv):
    a = dict(kv.split("=", 1) for kv in argv)
    env = os.environ
    rows = [json.loads(l) for l in open(RESULTS)]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    shapes = []
    for r in rows:
        key = (r["tool"], r["proto"], r["load"])
        if key not in shapes:
            shapes.append(key)
    body_bytes = os.path.getsize(os.path.join(env["REPO"], env["BODY"]))
    lines = [
        "<!-- external:begin -->",
        "## Webhook under external load: wrk and h2load (`hack/bench-external-load.sh`)",
        "",
        f"Command: `{env['CMD']}`",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- machine: nproc {sh('nproc')}, {cpu}; load average (1/5/15 min) {a['load_before']} before, "
        f"{a['load_after']} after; {a['quiet']}. **Only 2 cores, shared** by the server under load, the load "
        f"generator and whatever else runs on the VM (no pinning); the CPU columns below say who used them",
        f"- build: {env['RUSTC_VERSION']}; commit {env['COMMIT']} (when built); "
        "`cargo build --release --bin pitrguard` (the measured binary) and, separately, `cargo build --release "
        "--example floor-server` (an example gets the dev-dependencies' features, e.g. tokio's test-util, which "
        "are kept out of the measured binary); mimalloc in both",
        f"- tools: {env['WRK_VERSION']}, {env['H2LOAD_VERSION']} (Debian packages)",
        f"- webhook = `RUST_LOG={env['WEBHOOK_LOG']} PITRGUARD_LOG_FORMAT=json pitrguard serve --inventory examples/ "
        "--tls-cert … --tls-key …` ("
        + ("logging as `manifests/base/deployment.yaml` ships it: one JSON line per decision, written to a file"
           if env["WEBHOOK_LOG"] == "info" else "NOT the deployed log level, which is info")
        + "); every request is denied by R10 (checked first with curl: 200 with `\"allowed\":false`, and per "
        "run through `/metrics`: an R10 denial counted for every answered request)",
        "- floor = `hack/floor_server.rs` (`target/release/examples/floor-server`): the same transport (`serve_tls`, "
        "`ReloadingTls` with its watcher), allocator and tokio runtime, `POST /validate` reads the body and answers "
        "a constant allowed AdmissionReview (200 `\"allowed\":true`, checked with curl); no logging",
        f"- both servers up for the whole run, one certificate from `pitrguard certs` (ECDSA P-256), TLS 1.3; body "
        f"`{env['BODY']}` ({body_bytes} bytes), `POST /validate`, `Content-Type: application/json`",
        f"- loads: {a['commands']}",
        f"- every run: a {env['WARMUP']} s invocation of the same command (discarded), then the measured {env['SECS']} s "
        f"one; per load shape floor, webhook, floor, webhook, … ({env['REPS']} pairs, interleaved so drift shows)",
        "- latency in µs: wrk from its own histogram (`--latency`; request written to response read, per "
        "connection); h2load nearest-rank from its `--log-file` (stream start to end of response; writing that "
        "file costs h2load some CPU, for both servers alike); errors: wrk socket errors + non-2xx answers, h2load "
        "failed/errored/timed-out requests + any status other than 200 in its log",
        "- CPU in cores over the measured run: server from /proc/PID/stat, load generator from bash `times`, other = "
        "everything else busy in /proc/stat (e.g. the idle server, builds of another session); server µs/req = "
        "server CPU time / requests",
        "",
        f"Medians of {env['REPS']} runs each:",
        "",
        "| tool | protocol | load | floor req/s | webhook req/s | webhook / floor | floor p50 / p99 µs "
        "| webhook p50 / p99 µs | server µs/req floor / webhook | per pair webhook / floor | errors |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
    summary = []
    for tool, proto, load in shapes:
        rs = [r for r in rows if (r["tool"], r["proto"], r["load"]) == (tool, proto, load)]
        fl = [r for r in rs if r["server"] == "floor"]
        wh = [r for r in rs if r["server"] == "webhook"]
        pairs = []
        for w in wh:
            f = next((f for f in fl if f["rep"] == w["rep"]), None)
            if f:
                pairs.append(f"{w['rps'] / f['rps']:.2f}")
        errs = sum(r["errors"] for r in rs)
        rr = med(wh, "rps") / med(fl, "rps")
        summary.append((tool, proto, load, rr))
        lines.append(
            f"| {tool} | {proto} | {load} | {med(fl, 'rps'):.0f} | {med(wh, 'rps'):.0f} | **{rr:.2f}×** | "
            f"{med(fl, 'p50'):.0f} / {med(fl, 'p99'):.0f} | {med(wh, 'p50'):.0f} / {med(wh, 'p99'):.0f} | "
            f"{med(fl, 'cpu_us_per_req'):.1f} / {med(wh, 'cpu_us_per_req'):.1f} | {', '.join(pairs)} | {errs} |")
    lines += [
        "",
        "Every run, in the order they ran:",
        "",
        "| tool | protocol | load | rep | server | requests | req/s | p50 µs | p90 µs | p99 µs | max µs | errors "
        "| cores: server / generator / other | server µs/req |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['tool']} | {r['proto']} | {r['load']} | {r['rep']} | {r['server']} | {r['requests']} | {r['rps']:.0f} "
            f"| {r['p50']:.0f} | {r['p90']:.0f} | {r['p99']:.0f} | {r['max']:.0f} | {r['errors']} "
            f"| {r['server_cores']:.2f} / {r['client_cores']:.2f} / {r['other_cores']:.2f}"
            f"{' **(!)**' if r['other_cores'] > OTHER_LIMIT else ''} | {r['cpu_us_per_req']:.1f} |")
    disturbed = [r for r in rows if r["other_cores"] > OTHER_LIMIT]
    lines += [
        "",
        (f"**(!)** {len(disturbed)} of {len(rows)} runs shared the cores with other processes (more than "
         f"{OTHER_LIMIT} cores of 'other'): their figures are lower than the machine gives."
         if disturbed else f"No run shared the cores with other processes (at most {OTHER_LIMIT} cores of 'other' in each)."),
        "",
        "Webhook / floor, requests/s (medians): "
        + "; ".join(f"{t} {l}: {x:.2f}×" for t, _, l, x in summary) + ".",
        "<!-- external:end -->",
    ]
    section = "\n".join(lines)
    print(section)
    errors = sum(r["errors"] for r in rows)
    if errors:
        for r in rows:
            if r["errors"]:
                log(f"errors in {r['tool']} {r['load']} {r['server']} rep {r['rep']}: {r['error_detail']}")
        log(f"{errors} errors: BENCHMARKS.md left alone")
        sys.exit(1)
    if env.get("WRITE", "1") not in ("0", "false", "no", ""):
        sys.path.insert(0, os.path.join(env["REPO"], "hack"))
        import benchlib
        benchlib.write_section("external", section, path=os.path.join(env["REPO"], "BENCHMARKS.md"))
        log("written to BENCHMARKS.md")


{"run": run, "report": report}[sys.argv[1]](sys.argv[2:])
PY

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
proc_ticks() { # utime + stime of a process, in clock ticks
  local stat f
  stat=$(<"/proc/$1/stat")
  stat=${stat##*) }
  read -r -a f <<<"$stat"
  echo $((f[11] + f[12]))
}
busy_ticks() { # all CPUs, non-idle clock ticks
  local user nice system irq softirq steal
  read -r _ user nice system _ _ irq softirq steal _ </proc/stat
  echo $((user + nice + system + irq + softirq + steal))
}
decisions() { # the webhook's R10 denials on /validate, or nothing
  curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
    awk '/^pitrguard_admission_decisions_total\{endpoint="validate",rule="R10",result="denied"\} / {print $2}'
}
run_load() { # out-file command...: runs it in the background (so a signal reaches the trap at once)
  local out=$1 rc=0
  shift
  "$@" >"$out" 2>&1 &
  LOAD_PID=$!
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=
  ((rc == 0)) || { cp "$out" "$WORK/load.out"; log "$1 exited with $rc: $*"; exit 1; }
}

# shape id, tool, protocol, load label, generator arguments (without duration, URL, output).
SHAPES=(
  "wrk8|wrk|HTTP/1.1|8 conns, 2 threads|-t2 -c8"
  "wrk32|wrk|HTTP/1.1|32 conns, 2 threads|-t2 -c32"
  "h2c1|h2load|HTTP/2|1 conn × 8 streams|-c1 -m8 -t1"
  "h2c4|h2load|HTTP/2|4 conns × 8 streams|-c4 -m8 -t2"
)
load_cmd() { # tool, args, seconds, url, [log file]: the generator's command line, one word per line
  local tool=$1 args=$2 secs=$3 url=$4 logf=${5:-}
  local -a a
  read -r -a a <<<"$args"
  if [[ $tool == wrk ]]; then
    printf '%s\n' wrk "${a[@]}" "-d${secs}s" --latency -s "$LUA" "$url"
  else
    printf '%s\n' h2load "${a[@]}" -D "$secs" -d "$BODY" -H 'content-type: application/json'
    [[ -n $logf ]] && printf '%s\n' "--log-file=$logf"
    printf '%s\n' "$url"
  fi
}
show_cmd() { # the words of a command line, those with a space in single quotes
  local w out=""
  for w in "$@"; do
    [[ $w == *" "* ]] && w="'$w'"
    out+="${out:+ }$w"
  done
  printf '%s' "$out"
}
# The load commands as the section shows them (temp paths replaced by their file names).
COMMANDS=""
for s in "${SHAPES[@]}"; do
  IFS='|' read -r _ tool _ _ args <<<"$s"
  logf=
  [[ $tool == h2load ]] && logf=requests.tsv
  mapfile -t c < <(load_cmd "$tool" "$args" "$SECS" "https://127.0.0.1:PORT/validate" "$logf")
  c=("${c[@]/#"$LUA"/post.lua}")
  COMMANDS+="${COMMANDS:+; }\`$(show_cmd "${c[@]}")\`"
done
# Wait (up to QUIET_WAIT s) for the other processes on the machine to leave the cores alone.
QUIET="no wait for a quiet machine"
if ((QUIET_WAIT > 0)); then
  waited=0
  while :; do
    b0=$(busy_ticks) s0=$(($(proc_ticks "$WEBHOOK_PID") + $(proc_ticks "$FLOOR_PID")))
    sleep 3
    b1=$(busy_ticks) s1=$(($(proc_ticks "$WEBHOOK_PID") + $(proc_ticks "$FLOOR_PID")))
    waited=$((waited + 3))
    other=$(((b1 - b0 - (s1 - s0)) * 100 / (3 * $(getconf CLK_TCK)))) # hundredths of a core
    if ((other < 30)); then
      QUIET="other processes used 0.$(printf '%02d' "$other") cores in the 3 s before the runs (waited ${waited} s for < 0.3)"
      break
    fi
    if ((waited >= QUIET_WAIT)); then
      QUIET="the machine was NOT quiet: other processes used $((other / 100)).$(printf '%02d' $((other % 100))) cores in the 3 s before the runs, after waiting ${waited} s"
      break
    fi
    log "other processes use $((other / 100)).$(printf '%02d' $((other % 100))) cores; waiting for < 0.3 (${waited}/${QUIET_WAIT} s)"
  done
  log "$QUIET"
fi
TOTAL=$((${#SHAPES[@]} * REPS * 2))
log "$TOTAL runs of ${WARMUP} s warm-up + ${SECS} s, about $((TOTAL * (WARMUP + SECS + 1) / 60 + 1)) min"
LOAD_BEFORE=$(loadavg)
idx=0
for s in "${SHAPES[@]}"; do
  IFS='|' read -r _ tool proto load args <<<"$s"
  for ((rep = 1; rep <= REPS; rep++)); do
    for server in floor webhook; do
      idx=$((idx + 1))
      if [[ $server == floor ]]; then port=$FLOOR_PORT pid=$FLOOR_PID; else port=$PORT pid=$WEBHOOK_PID; fi
      url="https://127.0.0.1:$port/validate"
      mapfile -t warm < <(load_cmd "$tool" "$args" "$WARMUP" "$url")
      run_load "$WORK/warm.out" "${warm[@]}"
      rm -f "$WORK/requests.tsv"
      mapfile -t cmd < <(load_cmd "$tool" "$args" "$SECS" "$url" "$WORK/requests.tsv")
      dec0='' dec1=''
      [[ $server == webhook ]] && dec0=$(decisions)
      srv0=$(proc_ticks "$pid") busy0=$(busy_ticks)
      times >"$WORK/times0"
      run_load "$WORK/run.out" "${cmd[@]}"
      times >"$WORK/times1"
      srv1=$(proc_ticks "$pid") busy1=$(busy_ticks)
      [[ $server == webhook ]] && dec1=$(decisions)
      kill -0 "$WEBHOOK_PID" 2>/dev/null || { log "pitrguard serve died"; exit 1; }
      kill -0 "$FLOOR_PID" 2>/dev/null || { log "floor-server died"; exit 1; }
      python3 "$WORK/bench.py" run idx="$idx" total="$TOTAL" tool="$tool" proto="$proto" load="$load" \
        server="$server" rep="$rep" out="$WORK/run.out" log="$WORK/requests.tsv" srv0="$srv0" srv1="$srv1" \
        busy0="$busy0" busy1="$busy1" times0="$WORK/times0" times1="$WORK/times1" dec0="$dec0" dec1="$dec1"
      # The webhook's log: one line per decision, ~340 bytes; keep the disk out of it.
      : >"$WORK/webhook.log"
    done
  done
done
LOAD_AFTER=$(loadavg)

python3 "$WORK/bench.py" report load_before="$LOAD_BEFORE" load_after="$LOAD_AFTER" commands="$COMMANDS" quiet="$QUIET"
