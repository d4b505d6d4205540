#!/usr/bin/env bash
# Build kube-apiserver, kubectl (k8s.io/kubernetes) and etcd (go.etcd.io/etcd/server/v3) from the
# Go module proxy into a per-version cache; skip whatever is already there.
#   usage: tools/testcp/build.sh            progress on stderr; on stdout, shell assignments:
#            TESTCP_K8S_BIN=<dir with kube-apiserver, kubectl>  TESTCP_ETCD_BIN=<dir with etcd>
#   env:   PITRGUARD_TESTCP_CACHE  (default $HOME/.cache/pitrguard-testcp)
# Versions come from tools/testcp/{k8s,etcd}/go.mod; change them there (see README.md).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
START=$SECONDS
log() { echo "testcp: $*" >&2; }
die() { echo "testcp: ERROR: $*" >&2; exit 1; }

# --- Go toolchain check (first, as the recipe asks) ------------------------------------------------
command -v go >/dev/null 2>&1 || PATH=/usr/local/go/bin:$PATH
command -v go >/dev/null 2>&1 || die "'go' not found (need Go >= 1.26, e.g. /usr/local/go/bin/go)"
GOV=$(go env GOVERSION 2>/dev/null) || die "'go env GOVERSION' failed: $(go version 2>&1)"
[[ $GOV =~ ^go1\.([0-9]+) ]] && (( BASH_REMATCH[1] >= 26 )) ||
  die "Go >= 1.26 is required, found '$GOV' ($(command -v go))"
# Never let the go command fetch another toolchain behind our back; an explicit GOTOOLCHAIN wins.
export GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0

# --- versions and cache paths --------------------------------------------------------------------
modver() { awk -v m="$2" '$1==m && $2 ~ /^v/ {print $2; exit}' "$1"; }
K8S=$(modver "$HERE/k8s/go.mod" k8s.io/kubernetes)
ETCD=$(modver "$HERE/etcd/go.mod" go.etcd.io/etcd/server/v3)
[[ -n $K8S && -n $ETCD ]] || die "cannot read versions from $HERE/{k8s,etcd}/go.mod"
CACHE=${PITRGUARD_TESTCP_CACHE:-$HOME/.cache/pitrguard-testcp}
K8S_BIN=$CACHE/$K8S ETCD_BIN=$CACHE/etcd-$ETCD
assignments() { printf 'TESTCP_K8S_BIN=%q\nTESTCP_ETCD_BIN=%q\n' "$K8S_BIN" "$ETCD_BIN"; }
# Cached (binaries are renamed into place whole): say nothing, every test binary calls this.
if [[ -x $ETCD_BIN/etcd && -x $K8S_BIN/kube-apiserver && -x $K8S_BIN/kubectl ]]; then
  assignments
  exit 0
fi
mkdir -p "$CACHE"
log "building the test control plane (etcd, kube-apiserver, kubectl) from the Go module proxy, once:"
log "a cold build takes 10-18 min on 2 cores; the binaries are cached in $CACHE"
exec 9>"$CACHE/.lock"; flock 9   # serialise concurrent builds on one machine

# build NAME DESTDIR MODDIR PKG LDFLAGS: go build into a temp file, then rename (no half binaries)
build() {
  local name=$1 dest=$2 moddir=$3 pkg=$4 ldf=$5 t0=$SECONDS
  if [[ -x $dest/$name ]]; then log "$name present: $dest/$name"; return; fi
  log "building $name ($pkg) ..."
  mkdir -p "$dest"
  # go build prints nothing for minutes: a line every 30 s says it is still working.
  ( while sleep 30; do log "... still building $name ($((SECONDS - t0))s)"; done ) &
  local beat=$!
  local ok=0
  ( cd "$moddir" && go build -mod=readonly -buildvcs=false -trimpath \
      -tags=selinux,notest,grpcnotrace -ldflags="$ldf" -o "$dest/.$name.tmp" "$pkg" ) || ok=$?
  kill "$beat" 2>/dev/null; wait "$beat" 2>/dev/null || true
  ((ok == 0)) || die "building $name failed (module $moddir)"
  mv -f "$dest/.$name.tmp" "$dest/$name"
  log "built $name in $((SECONDS - t0))s -> $dest/$name"
}

# Same -X flags as upstream hack/lib/version.sh, so /version and kubectl's skew check are right.
MINOR=${K8S#v1.}; MINOR=${MINOR%%.*}
KLDF="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  KLDF+=" -X $pkg.gitVersion=$K8S -X $pkg.gitMajor=1 -X $pkg.gitMinor=$MINOR -X $pkg.gitTreeState=clean"
  KLDF+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done

log "go $GOV, kubernetes $K8S, etcd $ETCD, cache $CACHE"
build etcd           "$ETCD_BIN" "$HERE/etcd" go.etcd.io/etcd/server/v3 "-s -w"
build kube-apiserver "$K8S_BIN"  "$HERE/k8s"  k8s.io/kubernetes/cmd/kube-apiserver "$KLDF"
build kubectl        "$K8S_BIN"  "$HERE/k8s"  k8s.io/kubernetes/cmd/kubectl "$KLDF"
log "done in $((SECONDS - START))s"

assignments
