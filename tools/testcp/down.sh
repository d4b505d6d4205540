#!/usr/bin/env bash
# Stop a control plane started by up.sh DIR and remove DIR. Safe to call twice.
#   usage: tools/testcp/down.sh DIR        env: TESTCP_STOP_TIMEOUT (seconds per process, default 15)
# Stops every process whose PID is in DIR/pids/*.pid (webhook servers and other helpers of the
# tests), then DIR/apiserver.pid, then DIR/etcd.pid.
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
W=$1
[[ -d $W ]] || exit 0                      # already gone
W=$(cd "$W" && pwd)
[[ -e $W/.testcp ]] || { echo "testcp: $W was not made by up.sh (no .testcp marker); not touching it" >&2; exit 1; }

# a zombie counts as stopped (the daemons' parent, up.sh, is gone; whoever adopted them reaps them)
alive() { [[ -r /proc/$1/stat && $(awk '{print $3}' /proc/"$1"/stat 2>/dev/null) != Z ]]; }

# stop PID: TERM, wait up to the bound, then KILL. Only if the PID still runs one of our binaries
# with this DIR on its command line (guards against PID reuse after a reboot or earlier down.sh).
stop() {
  local pid=$1 i
  [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] || return 0
  tr '\0' ' ' </proc/"$pid"/cmdline | grep -qF -- "$W/" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  # kube-apiserver's graceful stop is bounded by its --request-timeout (10 s, up.sh).
  for ((i = 0; i < ${TESTCP_STOP_TIMEOUT:-15} * 10; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  echo "testcp: pid $pid ignored TERM, sending KILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

# clients first, then the apiserver, so it does not spin on a vanished etcd
for f in "$W"/pids/*.pid "$W/apiserver.pid" "$W/etcd.pid"; do
  [[ -r $f ]] && stop "$(cat "$f")"
done
rm -rf -- "$W"
