#!/usr/bin/env bash
# Instructions per request in user space, `pitrguard serve` next to the floor server, counted by
# callgrind: where the webhook's extra work goes, in a count that does not move with the load of
# the machine (req/s on this 2-core VM do; BENCHMARKS.md, "external" and "load").
#
#   hack/bench-request-instructions.sh        # writes the section "request-instructions" of BENCHMARKS.md
#   env: N (default 1000) requests measured; WRITE=0 prints the section and leaves BENCHMARKS.md alone
#
# Each server (the real `pitrguard serve --inventory examples/`, logging as deployed: RUST_LOG=info,
# PITRGUARD_LOG_FORMAT=json, to a file; hack/floor_server.rs, the same transport answering a
# constant allow; and the same floor with --read-review, which also reads the body with serde_json
# into nothing, the least any webhook that reads the request pays) runs under callgrind twice: once for 100 requests, once for 100 + N. h2load sends
# examples/admission/review-denied.json (an R10 denial) to POST /validate on one connection, one
# request at a time, over HTTP/1.1 and over HTTP/2. The difference of the two runs' totals, over N,
# is one request's instructions without the start, the TLS handshake and the shutdown, which both
# runs share. The kernel's part (loopback, syscalls) is not counted: callgrind sees user space only.
# Every process started here is stopped by its PID; the temp dir is removed.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
N=${N:-1000} WRITE=${WRITE:-1}
[[ $N =~ ^[0-9]+$ ]] && ((N >= 100)) || { echo "N=$N: a whole number >= 100" >&2; exit 2; }
for tool in valgrind callgrind_annotate h2load curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install valgrind nghttp2-client curl)" >&2; exit 2; }
done
BODY=examples/admission/review-denied.json
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pitrguard-bench-reqinstr.XXXXXX")
SERVER_PID=''
# shellcheck source=hack/lib.sh
source "$REPO/hack/lib.sh" # stop_pid
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$SERVER_PID"
  ((rc == 0)) || { echo "bench-request-instructions: FAILED; the server's log:" >&2; tail -n 20 "$WORK/server.log" >&2 2>/dev/null || true; }
  rm -rf -- "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cargo build --release -q --bin pitrguard
cp target/release/pitrguard "$WORK/pitrguard"
cargo build --release -q --example floor-server
cp target/release/examples/floor-server "$WORK/floor-server"
COMMIT=$(git rev-parse --short HEAD)
# BENCHMARKS.md is what the benchmarks write, not what they measure.
[[ -n $(git status --porcelain --untracked-files=no -- . ":!BENCHMARKS.md") ]] && COMMIT+=" with uncommitted changes"
"$WORK/pitrguard" certs --out "$WORK/certs" --hosts 127.0.0.1,localhost >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=https://127.0.0.1:$PORT/validate

# total SERVER PROTOCOL REQUESTS -> the server's instructions for its whole life, all threads
total() {
  local server=$1 proto=$2 n=$3 out=$WORK/callgrind.out i
  local cmd=("$WORK/floor-server" --addr "127.0.0.1:$PORT" --cert "$WORK/certs/tls.crt" --key "$WORK/certs/tls.key")
  [[ $server == reading ]] && cmd+=(--read-review)
  [[ $server == webhook ]] && cmd=("$WORK/pitrguard" serve --inventory examples/ --listen "127.0.0.1:$PORT"
    --admin-listen 127.0.0.1:0 --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key")
  rm -f "$out"
  RUST_LOG=info PITRGUARD_LOG_FORMAT=json valgrind --tool=callgrind --callgrind-out-file="$out" "${cmd[@]}" \
    </dev/null >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for ((i = 0; i < 600; i++)); do # valgrind starts slowly: up to 60 s
    curl -s -o /dev/null --max-time 2 --cacert "$WORK/certs/ca.crt" "$URL" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "$server exited before it answered" >&2; exit 1; }
    sleep 0.1
  done
  local flags=(-n "$n" -c 1 -m 1 -d "$BODY" -H 'content-type: application/json')
  [[ $proto == http1.1 ]] && flags+=(--h1)
  h2load "${flags[@]}" "$URL" >"$WORK/h2load.out" 2>&1
  grep -q "requests: $n total, $n started, $n done, $n succeeded" "$WORK/h2load.out" ||
    { cat "$WORK/h2load.out" >&2; echo "$server: not every request succeeded" >&2; exit 1; }
  stop_pid "$SERVER_PID" # SIGTERM: a graceful shutdown, after which callgrind writes its file
  SERVER_PID=''
  awk '/^summary:/ {print $2}' "$out"
}

rows=("| protocol | floor | floor + serde_json | webhook | webhook − floor | webhook ÷ floor | (floor + serde_json) ÷ floor |"
  "|---|---:|---:|---:|---:|---:|---:|")
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
for proto in http1.1 h2; do
  declare -A per=()
  for server in floor reading webhook; do
    a=$(total $server $proto 100)
    b=$(total $server $proto $((100 + N)))
    per[$server]=$(((b - a) / N))
    echo "bench-request-instructions: $server over $proto: ${per[$server]} instructions per request" >&2
  done
  rows+=("| $proto | ${per[floor]} | ${per[reading]} | ${per[webhook]} | $((per[webhook] - per[floor])) | $(ratio "${per[webhook]}" "${per[floor]}") | $(ratio "${per[reading]}" "${per[floor]}") |")
done
section=$(printf '%s\n' "<!-- request-instructions:begin -->" "## Instructions per request, webhook and floors" "" \
  "User-space instructions of the server per POST /validate of \`$BODY\` (an R10 denial), callgrind, one connection, one request at a time, $N requests (the difference of a run of 100 and one of $((100 + N))), commit $COMMIT, $(date -u +%F):" \
  "" "${rows[@]}" "" \
  "The counts include every thread of the server (the runtime's idle loop, the log writer), whose work depends on timing: the floor's count, with no change to its code, was 29 741 over HTTP/1.1 in an earlier run and 33 341 in a later one, so differences of a few thousand are noise." \
  "" "Command: \`hack/bench-request-instructions.sh\`" "<!-- request-instructions:end -->")
if [[ $WRITE == 1 ]]; then
  SECTION=$section python3 -c 'import os, sys; sys.path.insert(0, "hack"); import benchlib; benchlib.write_section("request-instructions", os.environ["SECTION"])'
fi
echo "$section"
