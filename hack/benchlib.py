"""What the benchmark scripts share (hack/bench-live-inventory.sh, hack/bench-inventory-memory.py).

- backup(i, namespaces): the i-th realistic KubeBlocks Backup: clusters of PER_CLUSTER (one continuous, the rest
  full backups every 30 minutes), labels and the ~2 KB kubeblocks.io/cluster-snapshot annotation as KubeBlocks
  sets them; returns (namespace, name, object, status).
- write_section(name, text): replaces BENCHMARKS.md's section between <!-- name:begin --> and <!-- name:end -->.
- proc_memory(pid): VmRSS and VmHWM in KiB.
- measure_serve(...): starts `pitrguard serve`, times it to /readyz, reads its memory, checks /metrics, stops it.
"""
import datetime
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time

PER_CLUSTER = 50
T0 = datetime.datetime(2024, 5, 7, tzinfo=datetime.timezone.utc)


def ts(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def cluster_uid(c):
    return f"6f1c6e1d-{c:04x}-4000-8000-{c:012x}"


def cluster_snapshot(ns, c):
    """What KubeBlocks keeps of the Cluster in the kubeblocks.io/cluster-snapshot annotation (~2 KB)."""
    name = f"pg-{c:03d}"
    snap = {
        "metadata": {
            "name": name, "namespace": ns, "uid": cluster_uid(c), "resourceVersion": str(100000 + c), "generation": 3,
            "creationTimestamp": ts(T0 - datetime.timedelta(days=3)),
            "labels": {"app.kubernetes.io/instance": name, "clusterdefinition.kubeblocks.io/name": "postgresql",
                       "clusterversion.kubeblocks.io/name": ""},
            "annotations": {"kubeblocks.io/crd-api-version": "apps.kubeblocks.io/v1",
                            "kubeblocks.io/ops-request": ""},
            "finalizers": ["cluster.kubeblocks.io/finalizer"],
        },
        "spec": {
            "clusterDef": "postgresql", "topology": "replication", "terminationPolicy": "Delete",
            "componentSpecs": [{
                "name": "postgresql", "componentDef": "postgresql-16-1.0.0", "serviceVersion": "16.4.0",
                "labels": {"apps.kubeblocks.postgres.patroni/scope": f"{name}-postgresql"},
                "replicas": 2, "disableExporter": False,
                "resources": {"limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}},
                "volumeClaimTemplates": [{"name": "data", "spec": {
                    "accessModes": ["ReadWriteOnce"], "storageClassName": "standard-rwo",
                    "resources": {"requests": {"storage": "50Gi"}}}}],
                "systemAccounts": [{"name": "postgres", "passwordConfig": {"length": 16, "numDigits": 4,
                                                                           "numSymbols": 0, "letterCase": "MixedCases"}}],
                "env": [{"name": "PGTZ", "value": "UTC"}, {"name": "ALLOW_NOSSL", "value": "true"}],
                "schedulingPolicy": {"tolerations": [{"key": "kb-data", "operator": "Equal", "value": "true",
                                                      "effect": "NoSchedule"}],
                                     "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                                         "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                                            "labelSelector": {"matchLabels": {
                                                                                "app.kubernetes.io/instance": name,
                                                                                "apps.kubeblocks.io/component-name": "postgresql"}}}}]}}},
                "serviceAccountName": f"kb-{name}",
                "instanceUpdateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"replicas": 1}},
            }],
            "services": [{"name": "postgresql", "serviceName": "postgresql", "componentSelector": "postgresql",
                          "spec": {"type": "ClusterIP", "ports": [{"name": "tcp-postgresql", "port": 5432,
                                                                   "targetPort": "tcp-postgresql"}]}}],
            "backup": {"enabled": True, "retentionPeriod": "7d", "method": "pg-basebackup", "cronExpression": "0 18 * * *",
                       "pitrEnabled": True, "continuousMethod": "archive-wal", "repoName": "s3-repo"},
        },
    }
    return json.dumps(snap, separators=(",", ":"))


def backup(i, namespaces):
    """The i-th Backup: clusters of 50 (one continuous, 49 full backups every 30 minutes)."""
    c, k = divmod(i, PER_CLUSTER)
    ns = f"bench-{c % namespaces}"
    cluster = f"pg-{c:03d}"
    continuous = k == 0
    method = "archive-wal" if continuous else "pg-basebackup"
    if continuous:
        start, end, phase = T0, T0 + datetime.timedelta(hours=25), "Running"
        name = f"{cluster}-postgresql-archive-wal"
    else:
        end = T0 + datetime.timedelta(minutes=30 * k + 5)
        start, phase = end - datetime.timedelta(minutes=5), "Completed"
        name = f"{cluster}-postgresql-pg-basebackup-{start:%Y%m%d%H%M%S}"
    policy = f"{cluster}-postgresql-backup-policy"
    obj = {
        "apiVersion": "dataprotection.kubeblocks.io/v1alpha1",
        "kind": "Backup",
        "metadata": {
            "name": name, "namespace": ns,
            "labels": {
                "app.kubernetes.io/instance": cluster,
                "app.kubernetes.io/managed-by": "kubeblocks-dataprotection",
                "apps.kubeblocks.io/component-name": "postgresql",
                "dataprotection.kubeblocks.io/backup-policy": policy,
                "dataprotection.kubeblocks.io/backup-repo-name": "s3-repo",
                "dataprotection.kubeblocks.io/backup-type": "Continuous" if continuous else "Full",
                "dataprotection.kubeblocks.io/cluster-uid": cluster_uid(c),
            },
            "annotations": {
                "kubeblocks.io/cluster-snapshot": cluster_snapshot(ns, c),
                "dataprotection.kubeblocks.io/target-pod-name": f"{cluster}-postgresql-0",
            },
        },
        "spec": {"backupPolicyName": policy, "backupMethod": method, "deletionPolicy": "Delete",
                 "retentionPeriod": "8d" if continuous else "7d"},
    }
    status = {"status": {
        "phase": phase,
        "timeRange": {"start": ts(start), "end": ts(end)},
        "startTimestamp": ts(start),
        "completionTimestamp": ts(end),
        "backupRepoName": "s3-repo",
        "path": f"/{ns}/{cluster}-{cluster_uid(c)}/postgresql/{name}",
        "totalSize": "1287Mi" if not continuous else "312Mi",
        "formatVersion": "0.1.0",
        "backupMethod": {"name": method,
                         "actionSetName": "postgresql-for-pitr" if continuous else "postgresql-basebackup",
                         "snapshotVolumes": False,
                         "targetVolumes": {"volumeMounts": [{"name": "data", "mountPath": "/home/postgres/pgdata"}]}},
    }}
    if not continuous:
        status["status"]["duration"] = "5m0s"
    return ns, name, obj, status


def proc_memory(pid):
    """VmRSS, VmHWM and Threads of a process, from /proc/PID/status (KiB)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    return out


def write_section(name, section, path="BENCHMARKS.md"):
    """Replaces the section `name` of BENCHMARKS.md (appends it when missing); other sections are kept."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    else:
        text = "# Benchmarks\n\nEvery figure here comes with the command that reproduces it.\n"
    b, e = text.find(begin), text.find(end)
    if 0 <= b < e:
        text = text[:b] + section + text[e + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = path + f".{name}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def free_ports(k):
    socks = [socket.socket() for _ in range(k)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def http_get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def measure_serve(binary, extra_args, run_dir, expected_backups, pid_file=None, timeout_s=600):
    """Starts `pitrguard serve EXTRA_ARGS` (dev certificates in RUN_DIR, log in RUN_DIR/pitrguard.log), measures
    the wall time from spawn to the first 200 from GET /readyz (polled every 50 ms), then VmRSS and VmHWM; checks
    that /metrics counts EXPECTED_BACKUPS Backups; stops it with SIGTERM (must exit 0). The PID is written to
    PID_FILE while it runs, so that a shell trap can kill it."""
    port, admin = free_ports(2)
    os.makedirs(run_dir)
    log_path = os.path.join(run_dir, "pitrguard.log")
    tail = lambda: "".join(open(log_path).readlines()[-30:])  # noqa: E731
    args = [binary, "serve", "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
            "--dev-certs-dir", os.path.join(run_dir, "dev-certs"), *extra_args]
    env = dict(os.environ, RUST_LOG="info")
    with open(log_path, "w") as logf:
        started = time.monotonic()
        proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        if pid_file:
            with open(pid_file, "w") as f:
                f.write(str(proc.pid))
        try:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"pitrguard exited with {proc.returncode} before ready:\n{tail()}")
                try:
                    if http_get(admin, "/readyz")[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() - started > timeout_s:
                    raise SystemExit(f"pitrguard not ready after {timeout_s}s:\n{tail()}")
                time.sleep(0.05)
            ready = time.monotonic() - started
            mem = proc_memory(proc.pid)
            status, metrics = http_get(admin, "/metrics")
            m = re.search(r'^pitrguard_inventory_objects\{kind="Backup"\} (\d+)$', metrics, re.M)
            if status != 200 or not m:
                raise SystemExit(f"/metrics: HTTP {status}, no pitrguard_inventory_objects{{kind=\"Backup\"}}")
            if expected_backups is not None and int(m.group(1)) != expected_backups:
                raise SystemExit(f"/metrics shows {m.group(0)!r}, expected {expected_backups} Backups")
            stop = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=60)
            stopped = time.monotonic() - stop
            if rc != 0:
                raise SystemExit(f"pitrguard exited with {rc} after SIGTERM:\n{tail()}")
            return {"backups": int(m.group(1)), "ready_s": ready, "rss_kib": mem["VmRSS"], "hwm_kib": mem["VmHWM"],
                    "threads": mem["Threads"], "stop_s": stopped}
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if pid_file and os.path.exists(pid_file):
                os.remove(pid_file)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def sh(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return f"nproc {sh('nproc')}, {cpu}"


def commit():
    dirty = sh("git", "status", "--porcelain", "--untracked-files=no") not in ("", "?")
    return f"commit {sh('git', 'rev-parse', '--short', 'HEAD')}{' with uncommitted changes' if dirty else ''}"
