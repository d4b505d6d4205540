#!/usr/bin/env bash
# `cargo deny check` on the whole workspace with deny.toml: licences, security advisories, bans
# (duplicate versions, wildcards) and sources. Installs cargo-deny from crates.io when missing.
#
# The advisory database: cargo-deny clones https://github.com/rustsec/advisory-db. Where GitHub
# cannot be reached (this project's machines and its CI reach only package registries), the
# database is the snapshot committed in .ci/advisory-db.tar.xz (hack/advisory-db-snapshot.sh),
# unpacked where cargo-deny keeps its clone, with the snapshot's commit time as the time of the
# last fetch, and cargo-deny runs with --offline: it then refuses a snapshot older than
# deny.toml's maximum-db-staleness. The line "advisory database:" says which database was used and
# how old it is. RELIABILITY.md ("Dependencies: cargo deny") explains.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.20.2
if [[ $(cargo deny --version 2>/dev/null) != "cargo-deny $version" ]]; then
  echo "installing cargo-deny $version from crates.io (about 5 minutes on 2 cores)"
  start=$SECONDS
  cargo install cargo-deny --locked --version "$version" --quiet
  echo "installed cargo-deny $version in $((SECONDS - start)) s"
fi

url=https://github.com/rustsec/advisory-db
if timeout 30 git ls-remote --exit-code "$url" HEAD >/dev/null 2>&1; then
  echo "advisory database: $url, fetched by cargo-deny"
  exec cargo deny --workspace check
fi

# cargo-deny's directory for the default database URL (advisory-db-<hash of the URL>).
db="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-3157b0e258782691"
snapshot=.ci/advisory-db.tar.xz
snapshot_commit=$(git get-tar-commit-id < <(xz -dc "$snapshot"))  # reads the head only
# git archive gives every file the commit's time.
snapshot_time=$(xz -dc "$snapshot" | TZ=UTC tar -tv --full-time LICENSE.txt | awk '{print $4 "T" $5 "Z"}')
snapshot_time=$(date -u -d "$snapshot_time" +%s)
have_time=$(git -C "$db" show -s --format=%ct HEAD 2>/dev/null || echo 0)
if ((have_time < snapshot_time)); then
  # A git repository as cargo-deny's own clone is, so that a later online run fetches into it.
  new=$(mktemp -d "${TMPDIR:-/tmp}/advisory-db.XXXXXX")
  trap 'rm -rf "$new"' EXIT
  xz -dc "$snapshot" | tar -x -C "$new"
  git -C "$new" init -q -b main
  git -C "$new" remote add origin "$url"
  git -C "$new" add -A
  GIT_AUTHOR_DATE="@$snapshot_time" GIT_COMMITTER_DATE="@$snapshot_time" \
    git -C "$new" -c user.name=pitrguard -c user.email=pitrguard@invalid commit -q \
    -m "rustsec/advisory-db@$snapshot_commit, from $snapshot"
  # cargo-deny takes the time of the last fetch from .git/HEAD when there is no FETCH_HEAD:
  # the snapshot's commit time, so that maximum-db-staleness measures the snapshot's real age.
  touch -d "@$snapshot_time" "$new/.git/HEAD"
  mkdir -p "$(dirname "$db")"
  rm -rf "$db"
  mv "$new" "$db"
  trap - EXIT
fi
what=$(git -C "$db" log -1 --format=%s)
[[ $what == rustsec/advisory-db@* ]] || what="the clone in $db at $(git -C "$db" rev-parse HEAD)"
when=$(git -C "$db" show -s --format=%ct HEAD)
echo "advisory database: $url cannot be reached; using $what of $(date -u -d "@$when" +%F)" \
  "($(( ($(date +%s) - when) / 86400 )) days old): advisories published after that day are not checked"
# --offline: cargo metadata must find every package of Cargo.lock (all platforms) downloaded.
cargo fetch --locked --quiet
cargo deny --offline --workspace check
