//! What pitrguard must never repeat. A Backup's `kubeblocks.io/cluster-snapshot` (the source
//! Cluster, credentials and all), its `dataprotection.kubeblocks.io/connection-password`, the
//! values of a Restore's `env` and `parameters`, the environment of the pitrguard process and its
//! TLS private key: each carries a distinctive marker here, and the test asserts that no marker
//! (and no line of the key) appears in any answer of the admin port (known routes and unknown
//! ones), of the webhook (denials, warnings, patches, 404s), of `pitrguard validate`, in any log
//! line of the server or the reconciler, or in any Event or condition the reconciler writes.
//! Each test also asserts that the paths it covers were taken (denials of several rules,
//! warnings, patches, each Event), so that it cannot pass by covering nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::https::Https;
use common::process::{Stopped, free_port, wait_for};
use serde_json::{Value, json};

const SNAPSHOT: &str = "snapshot-secret-7f3a9c";
const PASSWORD: &str = "password-secret-51be02";
const ENV_VALUE: &str = "env-secret-c4d81e";
const PROCESS_ENV: &str = "process-env-secret-9e27b4";
const KEY_MARKER: &str = "tls-key-secret-0a6f13";
const MARKERS: [&str; 5] = [SNAPSHOT, PASSWORD, ENV_VALUE, PROCESS_ENV, KEY_MARKER];
const PASSWORD_ANNOTATION: &str = "dataprotection.kubeblocks.io/connection-password";

/// The tests of this file run one at a time: the Events test starts a control plane whose
/// `tools/testcp/up.sh` picks free ports and binds them a moment later, and the connections of a
/// test running beside it could take one of them in between.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn examples() -> PathBuf {
    common::examples()
}

/// The secrets of one test: the markers, and the body lines of the server's private key.
struct Secrets {
    key_lines: Vec<String>,
}

impl Secrets {
    /// Panics if `text` (from `what`) contains a marker or a line of the key.
    fn assert_absent(&self, what: &str, text: &str) {
        for m in MARKERS {
            assert!(!text.contains(m), "{what} repeats the secret {m}:\n{text}");
        }
        for line in &self.key_lines {
            assert!(!text.contains(line.as_str()), "{what} repeats private key material:\n{text}");
        }
        assert!(!text.contains("PRIVATE KEY"), "{what} shows a private key:\n{text}");
    }
}

/// A Restore's env and parameters, carrying the marker.
fn with_env(mut ops: Value) -> Value {
    if let Some(restore) = ops.pointer_mut("/spec/restore").and_then(Value::as_object_mut) {
        restore.insert("env".into(), json!([{"name": "PGPASSWORD", "value": ENV_VALUE}, {"name": "X", "value": "1"}]));
        restore.insert("parameters".into(), json!([{"name": "secret", "value": ENV_VALUE}]));
    }
    ops
}

/// The examples with secrets: every Backup's cluster snapshot carries a credential and the Backup
/// a connection password; one more full Backup has the password but no snapshot (R5). Returns the
/// directory (inventory and OpsRequests) and the OpsRequests, each with env and parameters.
fn fixture(dir: &Path) -> (PathBuf, Vec<Value>) {
    let root = dir.join("fixture");
    std::fs::create_dir_all(&root).unwrap();
    for f in ["actionsets.yaml", "cluster.yaml"] {
        std::fs::copy(examples().join("postgresql").join(f), root.join(f)).unwrap();
    }
    let backups = std::fs::read_to_string(examples().join("postgresql/backups.yaml")).unwrap();
    let snapshot_env =
        format!(r#""componentDefRef":"postgresql","env":[{{"name":"PGPASSWORD","value":"{SNAPSHOT}"}}],"#);
    let mut backups = backups
        .replace(r#""componentDefRef":"postgresql","#, &snapshot_env)
        .replace("  annotations:\n", &format!("  annotations:\n    {PASSWORD_ANNOTATION}: {PASSWORD}\n"));
    assert_eq!(backups.matches(SNAPSHOT).count(), backups.matches("kubeblocks.io/cluster-snapshot:").count());
    backups.push_str(&format!(
        r#"---
apiVersion: dataprotection.kubeblocks.io/v1alpha1
kind: Backup
metadata:
  name: pg-cluster-full-nosnap
  namespace: demo
  labels:
    app.kubernetes.io/instance: pg-cluster
    apps.kubeblocks.io/component-name: postgresql
    dataprotection.kubeblocks.io/cluster-uid: 3f0c2b9e-6a53-4c1e-9d2f-0b7f5a1e8c42
    dataprotection.kubeblocks.io/backup-type: Full
  annotations:
    {PASSWORD_ANNOTATION}: {PASSWORD}
spec:
  backupPolicyName: pg-cluster-postgresql-backup-policy
  backupMethod: pg-basebackup
status:
  phase: Completed
  backupMethod: {{name: pg-basebackup, actionSetName: postgresql-basebackup}}
  startTimestamp: "2024-05-07T10:18:40Z"
  completionTimestamp: "2024-05-07T10:20:03Z"
  timeRange: {{start: "2024-05-07T10:18:40Z", end: "2024-05-07T10:20:03Z"}}
"#
    ));
    std::fs::write(root.join("backups.yaml"), backups).unwrap();

    let mut ops: Vec<Value> = std::fs::read_dir(examples().join("postgresql/restores"))
        .unwrap()
        .map(|e| serde_yaml::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    ops.sort_by_key(|o: &Value| o["metadata"]["name"].as_str().unwrap_or_default().to_string());
    let restore = |name: &str, restore: Value| {
        json!({"apiVersion": common::OPERATIONS, "kind": "OpsRequest",
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {"type": "Restore", "clusterName": format!("{name}-cluster"), "restore": restore}})
    };
    // R5: the backup has no cluster snapshot (but a password). W2: a fraction of a second. W3: close
    // to the end of a Running continuous backup.
    ops.push(restore("nosnap", json!({"backupName": "pg-cluster-full-nosnap"})));
    ops.push(restore(
        "fraction",
        json!({"backupName": "pg-cluster-archive-wal", "restorePointInTime": "2024-05-07T10:30:00.5Z"}),
    ));
    ops.push(restore(
        "edge",
        json!({"backupName": "pg-cluster-archive-wal", "restorePointInTime": "2024-05-07T10:46:50Z"}),
    ));
    let ops: Vec<Value> = ops.into_iter().map(with_env).collect();
    let restores = root.join("restores");
    std::fs::create_dir_all(&restores).unwrap();
    for o in &ops {
        let name = o["metadata"]["name"].as_str().unwrap();
        std::fs::write(restores.join(format!("{name}.json")), o.to_string()).unwrap();
    }
    (root, ops)
}

/// Development certificates in `dir` whose key file also carries the marker (PEM allows text
/// outside the BEGIN/END lines): (cert, key, ca) and the key's body lines.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf, Vec<String>) {
    let status = Command::new(env!("CARGO_BIN_EXE_pitrguard"))
        .args(["certs", "--hosts", "127.0.0.1", "--out"])
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "pitrguard certs");
    let key = dir.join("tls.key");
    let pem = std::fs::read_to_string(&key).unwrap();
    let lines: Vec<String> =
        pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16).map(String::from).collect();
    assert!(!lines.is_empty());
    std::fs::write(&key, format!("{KEY_MARKER}\n{pem}")).unwrap();
    (dir.join("tls.crt"), key, dir.join("ca.crt"), lines)
}

/// The real `pitrguard serve` on `inventory` (and `extra` arguments), with the marked key, secrets
/// in its environment, debug logs (JSON) into `dir/serve.log`: the process, the webhook port, the
/// admin port.
fn serve(dir: &Path, inventory: &Path, cert: &Path, key: &Path, extra: &[&Path]) -> (Stopped, u16, u16) {
    let (port, admin) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_pitrguard"))
        .arg("serve")
        .args(extra)
        .arg("--inventory")
        .arg(inventory)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--admin-listen", &format!("127.0.0.1:{admin}")])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .env("RUST_LOG", "debug")
        .env("PITRGUARD_LOG_FORMAT", "json")
        .env("PITRGUARD_TEST_SECRET", PROCESS_ENV)
        .env("PGPASSWORD", PROCESS_ENV)
        .env("AWS_SECRET_ACCESS_KEY", PROCESS_ENV)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("serve.out")).unwrap())
        .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let mut child = Stopped(child);
    wait_for(Duration::from_secs(60), "pitrguard serve /readyz", || {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
            panic!("pitrguard serve exited ({status}):\n{log}");
        }
        get(admin, "/readyz", &[]).0 == 200
    });
    (child, port, admin)
}

/// One curl request: (status, headers and body).
fn get(port: u16, path: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10", "--path-as-is", "-o", "-", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn the_admin_port_shows_no_key_material_and_no_environment_values() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca, key_lines) = certificates(dir.path());
    let secrets = Secrets { key_lines };
    let (_server, port, admin) = serve(dir.path(), &examples(), &cert, &key, &[]);
    // Some traffic first, so that the metrics have something to say.
    let mut client = Https::connect(port, &ca);
    let review: Value =
        serde_json::from_str(&std::fs::read_to_string(examples().join("admission/review-denied.json")).unwrap())
            .unwrap();
    assert_eq!(client.post("/validate", &review).unwrap().0, 200);

    let known = ["/healthz", "/readyz", "/metrics"];
    for path in known {
        let (status, text) = get(admin, path, &[]);
        assert_eq!(status, 200, "{path}: {text}");
        secrets.assert_absent(path, &text);
    }
    let (_, metrics) = get(admin, "/metrics", &[]);
    assert!(metrics.contains("pitrguard_admission_decisions_total"), "{metrics}");
    assert!(metrics.contains("pitrguard_tls_certificate_expiry_timestamp_seconds"), "{metrics}");
    // Anything else: 404 (or 405 for another method on a known route), and nothing in it.
    let unknown = [
        "/",
        "/env",
        "/config",
        "/debug/vars",
        "/debug/pprof/",
        "/debug/pprof/cmdline",
        "/proc/self/environ",
        "/metrics/",
        "/metrics.json",
        "/healthz/../../proc/self/environ",
        "/%2e%2e/%2e%2e/proc/self/environ",
        "/validate",
        "/mutate",
        "/tls.key",
    ];
    for path in unknown {
        let (status, text) = get(admin, path, &[]);
        assert_eq!(status, 404, "{path}: {text}");
        secrets.assert_absent(path, &text);
    }
    for (method, path) in [("POST", "/metrics"), ("PUT", "/healthz"), ("DELETE", "/readyz")] {
        let (status, text) = get(admin, path, &["-X", method]);
        assert!(matches!(status, 404 | 405), "{method} {path}: {status} {text}");
        secrets.assert_absent(&format!("{method} {path}"), &text);
    }
    // The webhook port's own unknown routes.
    for path in ["/", "/metrics", "/healthz", "/env"] {
        let out = Command::new("curl")
            .args(["-s", "-i", "--max-time", "10", "--cacert"])
            .arg(&ca)
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let status = text.split_whitespace().nth(1).unwrap_or_default();
        assert!(matches!(status, "404" | "405"), "webhook {path}: {text}");
        secrets.assert_absent(&format!("webhook {path}"), &text);
    }
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("admission decision"), "{log}");
    secrets.assert_absent("the server's log", &log);
}

/// Every fixture OpsRequest to `/validate` and `/mutate` of the server on `port`, as CREATE and as
/// an UPDATE whose old object carries the secrets too: asserts no answer (nor a decoded patch)
/// repeats a secret, and that the answers include denials of several fields, warnings, patches
/// and R5's message about the Backup without a snapshot.
fn review_all(what: &str, port: u16, ca: &Path, ops: &[Value], secrets: &Secrets) {
    let mut client = Https::connect(port, ca);
    let (mut fields, mut warnings, mut patches, mut denials) = (std::collections::BTreeSet::new(), 0, 0, 0);
    let mut r5 = false;
    for o in ops {
        let name = o["metadata"]["name"].as_str().unwrap();
        for (operation, old) in [("CREATE", Value::Null), ("UPDATE", o.clone())] {
            let review = common::review(operation, o.clone(), old);
            for endpoint in ["/validate", "/mutate"] {
                let (status, answer) = client.post(endpoint, &review).unwrap();
                let at = format!("{what}: {operation} {endpoint} {name}");
                assert_eq!(status, 200, "{at}: {answer}");
                secrets.assert_absent(&at, &answer.to_string());
                let response = &answer["response"];
                if let Some(patch) = response["patch"].as_str() {
                    let patch = base64::engine::general_purpose::STANDARD.decode(patch).unwrap();
                    secrets.assert_absent(&format!("{at}: the patch"), &String::from_utf8_lossy(&patch));
                    patches += 1;
                }
                warnings += response["warnings"].as_array().map_or(0, Vec::len);
                if let Some(message) = response["status"]["message"].as_str().filter(|_| response["allowed"] == false) {
                    denials += 1;
                    fields.insert(message.split(':').next().unwrap_or_default().to_string());
                    r5 |= message.contains("has no annotation kubeblocks.io/cluster-snapshot");
                }
            }
        }
    }
    eprintln!(
        "{what}: {} reviews; {denials} denials of the fields {fields:?}, {warnings} warnings, {patches} patches",
        ops.len() * 4
    );
    assert!(fields.len() >= 4 && r5, "{what}: denied fields {fields:?}, R5 seen: {r5}");
    assert!(warnings >= 3 && patches >= 2, "{what}: warnings {warnings}, patches {patches}");
}

#[test]
fn denials_warnings_patches_and_logs_never_repeat_the_snapshot_the_password_or_env_values() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (inventory, ops) = fixture(dir.path());
    let (cert, key, ca, key_lines) = certificates(dir.path());
    let secrets = Secrets { key_lines };
    // The built-in rules, then the same rules as the Kubewarden policy module in wasmtime (its host
    // calls are answered from the same inventory).
    let module = common::wasm::module();
    for (what, extra) in [("built-in rules", vec![]), ("--policy-module", vec![Path::new("--policy-module"), &module])]
    {
        let logs = dir.path().join(what.trim_start_matches('-'));
        std::fs::create_dir_all(&logs).unwrap();
        let (server, port, admin) = serve(&logs, &inventory, &cert, &key, &extra);
        review_all(what, port, &ca, &ops, &secrets);
        let (_, metrics) = get(admin, "/metrics", &[]);
        secrets.assert_absent(&format!("{what}: /metrics after the reviews"), &metrics);
        drop(server);
        let log = std::fs::read_to_string(logs.join("serve.log")).unwrap();
        assert!(log.matches("admission decision").count() >= ops.len() * 4, "{what}: {log}");
        secrets.assert_absent(&format!("{what}: the server's log"), &log);
        let out = std::fs::read_to_string(logs.join("serve.out")).unwrap();
        secrets.assert_absent(&format!("{what}: the server's stdout"), &out);
    }

    // The same rules offline: `pitrguard validate`, text and JSON, stdout and stderr.
    for output in ["text", "json"] {
        let out = Command::new(env!("CARGO_BIN_EXE_pitrguard"))
            .args(["validate", "--output", output])
            .arg(&inventory)
            .env("PITRGUARD_TEST_SECRET", PROCESS_ENV)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "some restores are denied");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("has no annotation kubeblocks.io/cluster-snapshot"), "{text}");
        secrets.assert_absent(&format!("pitrguard validate --output {output}"), &text);
    }
}

// ---------------------------------------------------------------------------
// Events and conditions of the reconciler, on a real kube-apiserver

mod events {
    use super::*;
    use common::cluster::*;

    const APPS_OPS: &str = "opsrequests.apps.kubeblocks.io";
    const OPS: &str = "opsrequests.operations.kubeblocks.io";
    const RESTORES: &str = "restores.dataprotection.kubeblocks.io";
    const LIMIT: Duration = Duration::from_secs(60);

    /// Every Event in `ns`, both APIs' texts: (reason, note).
    fn events(cp: &ControlPlane, ns: &str) -> Vec<(String, String)> {
        let list: Value =
            serde_json::from_str(&cp.kubectl_ok(&["get", "events.events.k8s.io", "-n", ns, "-o", "json"], None))
                .unwrap();
        let core: Value =
            serde_json::from_str(&cp.kubectl_ok(&["get", "events", "-n", ns, "-o", "json"], None)).unwrap();
        let mut all = Vec::new();
        for e in list["items"].as_array().unwrap().iter().chain(core["items"].as_array().unwrap()) {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            all.push((s("reason"), format!("{} {}", s("note"), s("message"))));
        }
        all
    }

    /// The reconciler with `mode` for this namespace's OpsRequests, secrets in its environment.
    fn reconciler(cp: &ControlPlane, ns: &str, mode: &str) -> (Stopped, PathBuf) {
        let dir = cp.scratch("secrets-reconciler-");
        let admin_port = free_port();
        let (admin, selector) = (format!("127.0.0.1:{admin_port}"), format!("pitrguard.io/test={ns}"));
        // A Lease of its own: the observer and the performer both run.
        let lease = format!("secrets-{mode}");
        let args = [
            "reconcile",
            "--mode",
            mode,
            "--admin-listen",
            &admin,
            "--reconcile-selector",
            &selector,
            "--lease-namespace",
            ns,
            "--lease-name",
            &lease,
            "--lease-identity",
            mode,
            "--lease-duration",
            "4",
            "--lease-grace",
            "1",
        ];
        let env = [
            ("RUST_LOG", "debug"),
            ("PITRGUARD_LOG_FORMAT", "json"),
            ("PITRGUARD_TEST_SECRET", PROCESS_ENV),
            ("PGPASSWORD", PROCESS_ENV),
        ];
        let child = spawn_pitrguard(cp, &dir, &args, &env);
        wait_for(LIMIT, "pitrguard reconcile /readyz", || http_get(admin_port, "/readyz").0 == 200);
        (child, dir.join("pitrguard.log"))
    }

    /// The Backups of the examples' story, each with a snapshot holding a credential and a
    /// connection password.
    fn backups(cp: &ControlPlane, ns: &str) {
        let snapshot = json!({"apiVersion": "apps.kubeblocks.io/v1", "kind": "Cluster", "metadata": {"name": "pg"},
            "spec": {"terminationPolicy": "Delete", "componentSpecs": [{"name": "postgresql",
                "componentDef": "postgresql-16", "replicas": 1,
                "env": [{"name": "PGPASSWORD", "value": SNAPSHOT}]}]}})
        .to_string();
        let annotations = json!({"kubeblocks.io/cluster-snapshot": snapshot, PASSWORD_ANNOTATION: PASSWORD});
        story_backups(&|args, stdin| _ = cp.kubectl_ok(args, stdin), ns, "pg", &annotations);
    }

    /// A Restore OpsRequest of `api` with env and parameters carrying the marker.
    fn restore_ops(api: &str, ns: &str, name: &str, time: &str, timeout: Option<u32>) -> String {
        let mut o = json!({"apiVersion": api, "kind": "OpsRequest",
            "metadata": {"name": name, "labels": {"pitrguard.io/test": ns}},
            "spec": {"type": "Restore", "clusterName": format!("{name}-cluster"),
                "restore": {"backupName": "pg-wal", "restorePointInTime": time}}});
        if let Some(t) = timeout {
            o["spec"]["timeoutSeconds"] = json!(t);
        }
        with_env(o).to_string()
    }

    fn status_patch(cp: &ControlPlane, ns: &str, resource: &str, name: &str, status: Value) {
        let patch = json!({ "status": status }).to_string();
        cp.kubectl_ok(&["patch", resource, name, "-n", ns, "--subresource=status", "--type=merge", "-p", &patch], None);
    }

    #[test]
    fn reconciler_events_and_conditions_never_repeat_the_snapshot_the_password_or_env_values() {
        let _serial = one_at_a_time();
        let cp = control_plane();
        let ns = namespace(cp, "secrets");
        backups(cp, &ns);
        let secrets = Secrets { key_lines: Vec::new() };

        // observe (KubeBlocks 0.9's API): every Event it emits, KubeBlocks playing its part.
        let (_observer, observe_log) = reconciler(cp, &ns, "observe");
        let ops = restore_ops(common::cluster::APPS, &ns, "observed", "2024-05-07T10:30:00Z", Some(4));
        cp.kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&ops));
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        status_patch(
            cp,
            &ns,
            APPS_OPS,
            "observed",
            json!({"phase": "Creating", "progress": "-/-", "startTimestamp": now}),
        );
        let cluster = json!({"apiVersion": "apps.kubeblocks.io/v1", "kind": "Cluster",
            "metadata": {"name": "observed-cluster"}, "spec": {"terminationPolicy": "Delete"}});
        cp.kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&cluster.to_string()));
        let uid = stored(cp, &ns, "clusters.apps.kubeblocks.io", "observed-cluster").unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string();
        let restore = format!("observed-cluster-postgresql-{}-preparedata", &uid[..8]);
        let manifest = json!({"apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Restore",
            "metadata": {"name": restore, "labels": {"app.kubernetes.io/instance": "observed-cluster"}},
            "spec": {"backup": {"name": "pg-wal", "namespace": ns}, "restoreTime": "2024-05-07T10:30:00Z"}});
        cp.kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest.to_string()));
        status_patch(
            cp,
            &ns,
            RESTORES,
            &restore,
            json!({"phase": "Failed", "conditions": [{"type": "PrepareData",
            "status": "False", "reason": "Failed", "message": "restore job failed: WAL segment missing",
            "lastTransitionTime": "2024-05-07T11:00:00Z"}]}),
        );
        let seen = |reason: &str| events(cp, &ns).iter().any(|(r, _)| r == reason);
        for reason in ["RestoreStarted", "RestoreFailed", "RestoreTimedOut"] {
            wait_for(LIMIT, reason, || seen(reason));
        }
        status_patch(cp, &ns, APPS_OPS, "observed", json!({"phase": "Succeed"}));
        wait_for(LIMIT, "RestoreSucceeded", || seen("RestoreSucceeded"));

        // perform (1.0's API): a restore the rules deny when the reconciler judges it again (the
        // time is after the log range): Failed with the webhook's message, as a condition and an Event.
        let (_performer, perform_log) = reconciler(cp, &ns, "perform");
        let ops = restore_ops(common::cluster::OPERATIONS, &ns, "performed", "2024-05-07T11:00:00Z", None);
        cp.kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&ops));
        let failed =
            || stored(cp, &ns, OPS, "performed").filter(|o| o.pointer("/status/phase") == Some(&json!("Failed")));
        wait_for(LIMIT, "the performed restore to fail", || failed().is_some());
        let performed = failed().unwrap();
        let conditions = performed["status"]["conditions"].to_string();
        assert!(conditions.contains("after the end of continuous backup"), "{conditions}");
        secrets.assert_absent("the OpsRequest's conditions", &conditions);
        wait_for(LIMIT, "OpsRequestFailed", || seen("OpsRequestFailed"));

        let all = events(cp, &ns);
        for (reason, note) in &all {
            secrets.assert_absent(&format!("the Event {reason}"), note);
        }
        assert!(all.len() >= 6, "{all:?}");
        let reasons: std::collections::BTreeSet<&str> = all.iter().map(|(r, _)| r.as_str()).collect();
        eprintln!("{} Events checked, reasons {reasons:?}; the Failed condition: {conditions}", all.len());
        for log in [observe_log, perform_log] {
            let text = std::fs::read_to_string(&log).unwrap();
            assert!(!text.is_empty());
            secrets.assert_absent(&format!("{}", log.display()), &text);
        }
    }
}
