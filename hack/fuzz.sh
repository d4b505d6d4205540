#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer, AddressSanitizer, debug assertions
# and overflow checks on) and runs each one, from its committed seeds (fuzz/seeds/<target>/),
# for a number of seconds or executions, one after another, one job each.
#
#   hack/fuzz.sh                          every target for 60 s
#   hack/fuzz.sh --seconds 600 loader     one target for 10 minutes
#   hack/fuzz.sh --runs 10000000 --keep-corpus time    a campaign of 10 million executions
#   hack/fuzz.sh time:600000 loader:5000  a number of executions per target (what .ci/run does);
#                                         --seed N passes libFuzzer's -seed, which does not make
#                                         two runs equal here (RELIABILITY.md, Fuzzing)
#
# wasmtime is built only for the policy_module target: without it the cold build takes half
# the time (what .ci/run builds; RELIABILITY.md, Fuzzing).
# --no-sanitizer builds without AddressSanitizer (into fuzz/target-nosan/): several times the
# executions per second, for campaigns of targets whose code has no unsafe of its own to watch
# (RELIABILITY.md, Fuzzing, says which runs used it).
# --keep-corpus grows fuzz/corpus/<target>/ (git-ignored) instead of a temp corpus that is
# deleted afterwards; --log-dir DIR keeps each target's libFuzzer output as DIR/<target>.log.
# A crash, a failed property, a timeout (25 s on one input) or running out of memory fails the
# run: the script goes on with the other targets, prints the crashing input's path (kept in
# fuzz/artifacts/<target>/, git-ignored), the input itself in base64 when it is small (a CI
# log is then enough to reproduce it), and how to reproduce it, and exits 1. It installs
# the nightly toolchain and cargo-fuzz when missing, builds the policy module for the
# policy_module target when missing (hack/build-policy.sh), and leaves no process and no temp
# file behind. Environment: PITRGUARD_FUZZ_SECONDS (default 60), PITRGUARD_FUZZ_NICE (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

all_targets=(admission policy_module loader time patch restore_annotation)
seconds=${PITRGUARD_FUZZ_SECONDS:-60}
runs=""
seed=""
keep=false
sanitize=true
log_dir=""
targets=()
while (($#)); do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --keep-corpus) keep=true; shift ;;
    --no-sanitizer) sanitize=false; shift ;;
    --log-dir) log_dir=$(realpath -m "$2"); shift 2 ;;
    -h | --help) sed -n '2,26p' "$0" | cut -c3-; exit 0 ;;
    -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
((${#targets[@]})) || targets=("${all_targets[@]}")
# TARGET:RUNS asks for a number of executions of that target (overriding --runs and --seconds).
declare -A runs_of=()
for i in "${!targets[@]}"; do
  t=${targets[$i]%%:*}
  if [[ ${targets[$i]} == *:* ]]; then
    runs_of[$t]=${targets[$i]#*:}
    [[ ${runs_of[$t]} =~ ^[0-9]+$ ]] || { echo "fuzz: $t: not a number of executions: ${runs_of[$t]}" >&2; exit 2; }
  fi
  targets[i]=$t
  [[ " ${all_targets[*]} " == *" $t "* ]] || { echo "fuzz: no target $t (${all_targets[*]})" >&2; exit 2; }
done

# --- tools -------------------------------------------------------------------------------
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: installing the nightly toolchain" >&2
  rustup toolchain install nightly --profile minimal ||
    { echo "fuzz: cannot install the nightly toolchain; cargo-fuzz needs it (-Zsanitizer)" >&2; exit 1; }
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked || { echo "fuzz: cannot install cargo-fuzz" >&2; exit 1; }
fi
if [[ " ${targets[*]} " == *" policy_module "* && -z ${PITRGUARD_POLICY_WASM:-} &&
  ! -f target/policy/pitrguard-policy.wasm ]]; then
  hack/build-policy.sh
fi

# --- a directory of this run's own --------------------------------------------------------
tmp=$(mktemp -d /tmp/pitrguard-fuzz.XXXXXX)
# The loader target writes every input as files: on tmpfs when there is one (30% more executions
# a second than on this VM's ext4 /tmp, measured).
files=$tmp/tmp
if [[ -d /dev/shm && -w /dev/shm ]]; then files=$(mktemp -d /dev/shm/pitrguard-fuzz.XXXXXX); fi
child=""
cleanup() {
  if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
    kill "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  rm -rf "$tmp" "$files"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -------------------------------------------------------------------------------
# The fuzz workspace has a target directory of its own (fuzz/target, read below), whatever
# CARGO_TARGET_DIR the caller set for the main workspace.
unset CARGO_TARGET_DIR
# One build of every target (or of the one asked for); 16 codegen units shorten the cold
# build's long poles (wasmtime, cranelift) on 2 cores.
start=$SECONDS
one=()
build=()
# wasmtime (half of the cold build) only when the policy_module target is asked for.
[[ " ${targets[*]} " == *" policy_module "* ]] && build+=(--features module-host)
target_dir=fuzz/target
$sanitize || { target_dir=fuzz/target-nosan; build+=(--sanitizer none --target-dir target-nosan); }
((${#targets[@]} == 1)) && one=("${targets[0]}")
if ! (cd fuzz && nice -n "${PITRGUARD_FUZZ_NICE:-10}" cargo +nightly fuzz build --codegen-units 16 "${build[@]}" "${one[@]}") \
  >"$tmp/build.log" 2>&1; then
  grep -vE '^\s+(Compiling|Checking|Downloaded|Downloading)' "$tmp/build.log" | tail -n 60
  echo "fuzz: the build failed" >&2
  exit 1
fi
bin_dir=$target_dir/x86_64-unknown-linux-gnu/release
for t in "${targets[@]}"; do
  [[ -x $bin_dir/$t ]] || { echo "fuzz: the build did not produce $bin_dir/$t" >&2; exit 1; }
done
echo "fuzz: built in $((SECONDS - start)) s"

# --- run ---------------------------------------------------------------------------------
failed=()
printf '%-20s %12s %10s %8s %8s %14s %6s  %s\n' target executions exec/s cov ft corpus secs result
for t in "${targets[@]}"; do
  if $keep; then corpus=$root/fuzz/corpus/$t; else corpus=$tmp/corpus/$t; fi
  artifacts=$root/fuzz/artifacts/$t
  log=${log_dir:+$log_dir/$t.log}
  log=${log:-$tmp/$t.log}
  mkdir -p "$corpus" "$artifacts" "$files" "$(dirname "$log")"
  limit=(-max_total_time="$seconds")
  [[ -n $runs ]] && limit=(-runs="$runs")
  [[ -n ${runs_of[$t]:-} ]] && limit=(-runs="${runs_of[$t]}")
  [[ -n $seed ]] && limit+=(-seed="$seed")
  began=$SECONDS
  set +e
  # The loader target writes its input files under TMPDIR: this run's own directory.
  TMPDIR=$files nice -n "${PITRGUARD_FUZZ_NICE:-10}" "$bin_dir/$t" "$corpus" "$root/fuzz/seeds/$t" \
    "${limit[@]}" -timeout=25 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$artifacts/" \
    >"$log" 2>&1 &
  child=$!
  wait "$child"
  rc=$?
  child=""
  set -e
  took=$((SECONDS - began))
  done_line=$(grep -E '^#[0-9]+\s+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1 || true)
  execs=$(grep -oP 'stat::number_of_executed_units:\s+\K[0-9]+' "$log" || true)
  rate=$(grep -oP 'stat::average_exec_per_sec:\s+\K[0-9]+' "$log" || true)
  cov=$(grep -oP 'cov: \K[0-9]+' <<<"$done_line" || true)
  ft=$(grep -oP 'ft: \K[0-9]+' <<<"$done_line" || true)
  corp=$(grep -oP 'corp: \K[0-9]+/[0-9]+[a-zA-Z]*' <<<"$done_line" || true)
  result=ok
  if ((rc != 0)); then
    result="FAILED (exit $rc)"
    failed+=("$t")
  fi
  printf '%-20s %12s %10s %8s %8s %14s %6s  %s\n' "$t" "${execs:--}" "${rate:--}" "${cov:--}" "${ft:--}" "${corp:--}" "$took" "$result"
  # One line per kind of input the module does not answer (the quoted values set aside).
  grep -h '^policy_module: no answer' "$log" | sed -E 's/"([^"\\]|\\.)*"/"…"/g; s/`[^`]*`/`…`/g' | sort -u |
    sed 's/^/  /' || true
  if ((rc != 0)); then
    echo "--- $t: the end of libFuzzer's output ---"
    grep -vE '^#[0-9]+\s+(NEW|REDUCE|pulse)' "$log" | tail -n 60
    input=$(grep -oP '(Test unit written to|artifact_prefix=.*; Test unit written to) \K\S+' "$log" | tail -n 1 || true)
    if [[ -n $input ]]; then
      echo "fuzz: $t: the crashing input is $input"
      if [[ -f $input ]] && (($(stat -c %s "$input") <= 16384)); then
        echo "fuzz: $t: the input in base64 (recreate it with: base64 -d > input <<< '...'):"
        base64 -w 0 "$input"
        echo
      fi
      echo "fuzz: reproduce: (cd fuzz && cargo +nightly fuzz run $t ${input#"$root/fuzz/"})"
    fi
    echo "---"
  fi
done
((${#failed[@]} == 0)) || { echo "fuzz: failed: ${failed[*]}" >&2; exit 1; }
echo "fuzz: every target ran without a crash"
