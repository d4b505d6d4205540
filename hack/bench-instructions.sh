#!/usr/bin/env bash
# Instructions per decision (`judge_json`), counted by callgrind: unlike seconds, the count does
# not move with the load of the machine, so two commits compare exactly.
#   hack/bench-instructions.sh            # this checkout
#   BASE=<commit> hack/bench-instructions.sh   # and <commit>, built in a temporary worktree, in the same run
# Writes the section "instructions" of BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
N=${N:-2000}
ALLOWED=2024-05-07T12:34:56Z DENIED=2024-05-09T12:34:56Z

count() { # binary time [function pattern...] -> instructions per call of judge_json (or of those)
  local out toggles=() f; out=$(mktemp)
  for f in "${@:3}"; do toggles+=(--toggle-collect="$f"); done
  ((${#toggles[@]})) || toggles=(--toggle-collect='*judge_json*')
  valgrind --tool=callgrind --callgrind-out-file="$out" "${toggles[@]}" "$1" "$2" "$N" >/dev/null 2>&1
  awk -v n="$N" '/^summary:/ {printf "%.0f", $2 / n}' "$out"
  rm -f "$out"
}

cargo build --release -q -p pitrguard-core --example decision_instructions
rows=("| build | allowed (with a base) | denied by R10 |" "|---|---|---|")
rows+=("| $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates/pitrguard-core || echo '+changes') | $(count target/release/examples/decision_instructions $ALLOWED) | $(count target/release/examples/decision_instructions $DENIED) |")
if [[ -n ${BASE:-} ]]; then
  wt=$(mktemp -d)
  trap 'git worktree remove --force "$wt"; rm -rf "$wt-target"' EXIT
  git worktree add -q --detach "$wt" "$BASE"
  # The driver is this checkout's; only the core under it is the base's.
  mkdir -p "$wt/crates/pitrguard-core/examples"
  cp crates/pitrguard-core/examples/decision_instructions.rs "$wt/crates/pitrguard-core/examples/"
  (cd "$wt" && CARGO_TARGET_DIR="$wt-target" cargo build --release -q -p pitrguard-core --example decision_instructions)
  bin="$wt-target/release/examples/decision_instructions"
  rows+=("| $(git rev-parse --short "$BASE") (base) | $(count "$bin" $ALLOWED) | $(count "$bin" $DENIED) |")
fi
# Where one allowed decision of this checkout goes, next to the floor of its decoding half.
bin=target/release/examples/decision_instructions
parts=("| part of one allowed \`judge_json\` ($(git rev-parse --short HEAD)) | instructions |" "|---|---|"
  "| reading the Restore (\`request::decode_json\`: \`head\` + \`Head::decode\`, called on its own) | $(count $bin $ALLOWED '*read_restore') |"
  "| the rules (\`rules::evaluate\`) | $(count $bin $ALLOWED '*rules::evaluate') |"
  "| floor: serde_json reading the same 212-byte text into \`IgnoredAny\` | $(count $bin $ALLOWED '*read_floor') |"
  "| for the webhook: serde_json reading the 1 588-byte AdmissionReview \`examples/admission/review-denied.json\` into \`IgnoredAny\` | $(count $bin $ALLOWED '*read_review_floor') |")
# The whole admission layer on one request, as /validate runs it (without the metrics and the log line).
cargo build --release -q --example admission-instructions
adm=target/release/examples/admission-instructions
admission=("| one request through the admission layer ($(git rev-parse --short HEAD)): parse the review, judge, respond, serialise | instructions |" "|---|---|"
  "| \`examples/admission/review-denied.json\` (denied by R10) | $(N=1000 count $adm examples/admission/review-denied.json '*one_request*') |"
  "| \`examples/admission/review-allowed.json\` (allowed; its time in the kbcli layout) | $(N=1000 count $adm examples/admission/review-allowed.json '*one_request*') |")
section=$(printf '%s\n' "<!-- instructions:begin -->" "## Instructions per decision" "" \
  "Instructions per \`judge_json\` (callgrind, $N decisions each, 1 000 Backups, the Restore as JSON text), $(date -u +%F):" \
  "" "${rows[@]}" "" "${parts[@]}" "" "${admission[@]}" "" \
  "Command: \`${BASE:+BASE=$BASE }hack/bench-instructions.sh\`" "<!-- instructions:end -->")
SECTION=$section python3 -c 'import os, sys; sys.path.insert(0, "hack"); import benchlib; benchlib.write_section("instructions", os.environ["SECTION"])'
echo "$section"
