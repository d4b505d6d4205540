#!/usr/bin/env bash
# Makes .ci/advisory-db.tar.xz, the snapshot of the RustSec advisory database that
# hack/cargo-deny.sh checks against when GitHub cannot be reached (RELIABILITY.md,
# "Dependencies: cargo deny"). Its argument is a clone of https://github.com/rustsec/advisory-db
# (bare or not, at the commit to take). The archive holds what cargo-deny reads (crates/) and the
# database's licence (CC0-1.0); git archive records the commit id (git get-tar-commit-id) and
# gives every file the commit's time, so the same commit always makes the same bytes.
set -euo pipefail
src=${1:?usage: hack/advisory-db-snapshot.sh PATH-TO-ADVISORY-DB-CLONE}
out="$(cd "$(dirname "$0")/.." && pwd)/.ci/advisory-db.tar.xz"
git -C "$src" archive --format=tar HEAD crates LICENSE.txt | xz -9 --threads=1 >"$out.tmp"
mv "$out.tmp" "$out"
echo "$out: rustsec/advisory-db@$(git -C "$src" rev-parse HEAD) of $(git -C "$src" show -s --format=%cI HEAD)," \
  "$(git -C "$src" ls-tree -r --name-only HEAD crates | grep -c '\.md$') advisories, $(stat -c %s "$out") bytes"
