#!/usr/bin/env bash
# Start a throw-away control plane (etcd + kube-apiserver, no controller-manager) on free loopback
# ports, with its own PKI, and install the KubeBlocks + cert-manager CRDs.
#   usage: tools/testcp/up.sh DIR        (DIR must not exist or be empty; stop with down.sh DIR)
#   then:  source DIR/env                (KUBECONFIG, TESTCP_API_URL, TESTCP_CA, TESTCP_CA_KEY,
#                                         TESTCP_TOKEN, ETCD_PID, API_PID, TESTCP_KUBECTL, ...)
#          Processes that belong to the control plane's life (a restarted kube-apiserver, a webhook
#          server) are tracked by writing their PID to DIR/apiserver.pid or DIR/pids/NAME.pid:
#          down.sh stops them all.
#   env:   PITRGUARD_SHARED (default <repo>/../shared), PITRGUARD_TESTCP_CACHE (see build.sh),
#          TESTCP_START_TIMEOUT (seconds, default 180)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SHARED=${PITRGUARD_SHARED:-$REPO/../shared}
TIMEOUT=${TESTCP_START_TIMEOUT:-180}
T0=$SECONDS
log() { echo "testcp: $*" >&2; }
die() { echo "testcp: ERROR: $*" >&2; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 DIR"
KB=$SHARED/kubeblocks/crds CM=$SHARED/cert-manager/crds
[[ -d $KB/v0.9.5 && -d $KB/v1.0.2 && -d $CM ]] || die "CRDs not found under $SHARED (set PITRGUARD_SHARED)"
mkdir -p "$1"; W=$(cd "$1" && pwd)
[[ -z $(ls -A "$W") ]] || die "$W is not empty (stale control plane? run down.sh $W first)"

eval "$("$HERE/build.sh")"            # seconds when cached; sets TESTCP_K8S_BIN, TESTCP_ETCD_BIN
KUBECTL=$TESTCP_K8S_BIN/kubectl
touch "$W/.testcp"                    # marker: down.sh only deletes directories carrying it

# If anything below fails, stop what we started (down.sh would need DIR/env, written last).
ETCD_PID= API_PID=
on_exit() {
  local rc=$?; [[ $rc -eq 0 ]] && return
  for p in $API_PID $ETCD_PID; do kill -KILL "$p" 2>/dev/null || true; done
  log "up.sh failed (rc=$rc); logs are in $W"
}
trap on_exit EXIT

# --- PKI (recipe §3): CA, apiserver serving cert, SA key pair, static admin token -----------------
P=$W/pki; mkdir -p "$P"
(
  cd "$P"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=testcp-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver"
  # Leaf must be CA:FALSE with SANs (Go ignores CN; rustls rejects a CA cert as end entity).
  printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature,keyEncipherment' \
    'extendedKeyUsage=serverAuth' \
    'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc' \
    > apiserver.ext
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt \
    -days 3650 -extfile apiserver.ext
  openssl genrsa -out sa.key 2048 && openssl rsa -in sa.key -pubout -out sa.pub
) >"$W/pki.log" 2>&1 || { cat "$W/pki.log" >&2; die "PKI generation failed"; }
TOKEN=$(openssl rand -hex 16)
# system:masters bypasses RBAC, so the admin can do everything under --authorization-mode=RBAC.
echo "$TOKEN,admin,admin-uid,\"system:masters\"" >"$P/tokens.csv"
chmod 600 "$P"/*.key "$P/tokens.csv"

# --- free ports: three distinct ones below the kernel's ephemeral range (32768-60999), where a port
# released here cannot be taken as the source port of an outgoing connection before etcd and the
# API server bind it (tests next to this make thousands of connections). --------------------------
read -r ETCD_PORT PEER_PORT API_PORT < <(python3 -c '
import random, socket
def free(p):
    try:
        with socket.socket() as s: s.bind(("127.0.0.1", p)); return True
    except OSError: return False
print(*[p for p in random.sample(range(20000, 32000), 200) if free(p)][:3])')
API_URL=https://127.0.0.1:$API_PORT ETCD_URL=http://127.0.0.1:$ETCD_PORT

# Daemons get their own session (setsid) and no inherited stdio, so callers that wait for the
# pipes to close (CI, test harnesses) return, and a Ctrl-C in the caller does not kill them.
setsid "$TESTCP_ETCD_BIN/etcd" --name=default --data-dir="$W/etcd" \
  --listen-client-urls="$ETCD_URL" --advertise-client-urls="$ETCD_URL" \
  --listen-peer-urls="http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$PEER_PORT" \
  --initial-cluster="default=http://127.0.0.1:$PEER_PORT" \
  --unsafe-no-fsync=true --log-level=warn </dev/null >"$W/etcd.log" 2>&1 &
ETCD_PID=$!; echo "$ETCD_PID" >"$W/etcd.pid"
for ((i = 0; ; i++)); do
  curl -sf "$ETCD_URL/health" >/dev/null 2>&1 && break
  kill -0 "$ETCD_PID" 2>/dev/null || { tail -50 "$W/etcd.log" >&2; die "etcd died"; }
  ((i < 120)) || { tail -50 "$W/etcd.log" >&2; die "etcd not healthy after 60s"; }
  sleep 0.5
done
log "etcd up on $ETCD_URL (pid $ETCD_PID)"

# --endpoint-reconciler-type=none: 1.37's default (lease) reconciler refuses a loopback advertise
# address ("may not be in the loopback range"); 'none' only skips the kubernetes Endpoints writes.
# --request-timeout also bounds a graceful stop (ShutdownTimeout = RequestTimeout, 60 s by default:
# long-running watches keep the server waiting that long); --shutdown-delay-duration=0s says so.
setsid "$TESTCP_K8S_BIN/kube-apiserver" \
  --request-timeout=10s --shutdown-delay-duration=0s \
  --etcd-servers="$ETCD_URL" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
  --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --client-ca-file="$P/ca.crt" --token-auth-file="$P/tokens.csv" \
  --service-account-issuer="$API_URL" \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --authorization-mode=RBAC --endpoint-reconciler-type=none \
  --disable-admission-plugins=ServiceAccount \
  --allow-privileged=true \
  --cert-dir="$W/pki-gen" --v=1 </dev/null >"$W/apiserver.log" 2>&1 &
API_PID=$!; echo "$API_PID" >"$W/apiserver.pid"

cat >"$W/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: testcp, cluster: {server: "$API_URL", certificate-authority: "$P/ca.crt"}}]
users: [{name: admin, user: {token: "$TOKEN"}}]
contexts: [{name: testcp, context: {cluster: testcp, user: admin, namespace: default}}]
current-context: testcp
EOF
export KUBECONFIG=$W/kubeconfig

# Authenticated /readyz: anonymous requests may get 401/403 while RBAC bootstraps.
api_dead() { tail -50 "$W/apiserver.log" >&2; die "$1"; }
for ((i = 0; ; i++)); do
  [[ $(curl -s --max-time 5 --cacert "$P/ca.crt" -H "Authorization: Bearer $TOKEN" "$API_URL/readyz" 2>/dev/null) == ok ]] && break
  kill -0 "$API_PID" 2>/dev/null || api_dead "kube-apiserver died"
  ((i < TIMEOUT * 2)) || api_dead "kube-apiserver not ready after ${TIMEOUT}s"
  sleep 0.5
done
for ((i = 0; ; i++)); do   # created asynchronously by the apiserver's kubernetesservice controller
  "$KUBECTL" get namespace default >/dev/null 2>&1 && break
  kill -0 "$API_PID" 2>/dev/null || api_dead "kube-apiserver died"
  ((i < 120)) || api_dead "namespace 'default' missing after 60s"
  sleep 0.5
done
log "kube-apiserver ready on $API_URL (pid $API_PID) after $((SECONDS - T0))s"

# --- CRDs --------------------------------------------------------------------------------------------
# dataprotection + clusters from 1.0.2, plus BOTH opsrequests CRDs (different groups).
# Server-side apply: the clusters CRD (>1 MB) is too big for the last-applied annotation.
CRDS=("$KB"/v1.0.2/*.yaml "$KB/v0.9.5/apps.kubeblocks.io_opsrequests.yaml" "$CM"/*.yaml)
"$KUBECTL" apply --server-side --force-conflicts --field-manager=testcp "${CRDS[@]/#/-f}" >"$W/crds.log" 2>&1 ||
  { cat "$W/crds.log" >&2; die "applying CRDs failed"; }
"$KUBECTL" wait --for=condition=Established crd --all --timeout=120s >>"$W/crds.log" 2>&1 ||
  { cat "$W/crds.log" >&2; die "CRDs not Established"; }
# Established can precede discovery/REST by a moment; list every CRD's resource until all answer.
RES=$("$KUBECTL" get crd -o jsonpath='{range .items[*]}{.metadata.name}{","}{end}'); RES=${RES%,}
for ((i = 0; ; i++)); do
  "$KUBECTL" get "$RES" -A >/dev/null 2>&1 && break
  ((i < 60)) || { "$KUBECTL" get "$RES" -A >&2 || true; die "CRD resources not served"; }
  sleep 0.5
done
log "$(wc -w <<<"${RES//,/ }") CRDs established"

# --- env (written last: its presence means 'up') -----------------------------------------------------
{
  printf 'export %s=%q\n' KUBECONFIG "$W/kubeconfig" TESTCP_DIR "$W" TESTCP_API_URL "$API_URL" \
    TESTCP_ETCD_URL "$ETCD_URL" TESTCP_CA "$P/ca.crt" TESTCP_CA_KEY "$P/ca.key" TESTCP_TOKEN "$TOKEN" \
    ETCD_PID "$ETCD_PID" API_PID "$API_PID" TESTCP_KUBECTL "$KUBECTL"
} >"$W/env.tmp" && mv "$W/env.tmp" "$W/env"
log "up in $((SECONDS - T0))s; source $W/env"
