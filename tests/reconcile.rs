//! The bundled reconciler on a real kube-apiserver with the KubeBlocks CRDs: the real
//! `pitrguard reconcile` binary, OpsRequests applied with kubectl through the registered
//! webhooks, and the test playing KubeBlocks' part (Cluster status, DataProtection Restores).
//!
//! Each test has its own namespace, its own reconciler(s) narrowed to it by
//! `--reconcile-selector pitrguard.io/test=<namespace>`, and its own Lease in that namespace.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::process::Stopped;
use serde_json::{Value, json};

const OPS: &str = "opsrequests.operations.kubeblocks.io";
const APPS_OPS: &str = "opsrequests.apps.kubeblocks.io";
const CLUSTERS: &str = "clusters.apps.kubeblocks.io";
const RESTORES: &str = "restores.dataprotection.kubeblocks.io";
const LIMIT: Duration = Duration::from_secs(60);

/// One webhook for the whole test binary, registered once: every OpsRequest is admitted by it.
fn cp() -> &'static ControlPlane {
    static HOOK: OnceLock<Webhook> = OnceLock::new();
    let cp = control_plane();
    HOOK.get_or_init(|| {
        let hook = start_webhook(cp, &[], &[]);
        register_webhooks(cp, &hook);
        hook
    });
    cp
}

// === the reconciler process ===

struct Reconciler {
    child: Stopped,
    admin_port: u16,
    log: PathBuf,
    identity: String,
}

impl Reconciler {
    fn start(cp: &ControlPlane, ns: &str, mode: &str, identity: &str, env: &[(&str, &str)]) -> Reconciler {
        let dir = cp.scratch("reconciler-");
        let admin_port = free_port();
        let (admin, selector) = (format!("127.0.0.1:{admin_port}"), format!("pitrguard.io/test={ns}"));
        let args = ["reconcile", "--mode", mode, "--admin-listen", &admin, "--reconcile-selector", &selector];
        let lease =
            ["--lease-namespace", ns, "--lease-identity", identity, "--lease-duration", "4", "--lease-grace", "1"];
        let mut all_env = vec![("RUST_LOG", "info"), ("PITRGUARD_LOG_FORMAT", "json")];
        all_env.extend(env);
        let child = spawn_pitrguard(cp, &dir, &[&args[..], &lease[..]].concat(), &all_env);
        let r = Reconciler { child, admin_port, log: dir.join("pitrguard.log"), identity: identity.into() };
        wait_for(LIMIT, "pitrguard reconcile /readyz", || http_get(admin_port, "/readyz").0 == 200);
        r
    }

    fn log_lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    fn logged(&self, message: &str) -> bool {
        self.log_lines().iter().any(|l| l["message"] == message)
    }

    /// When the reconciler logged `message` (with `field` = `value`) first.
    fn logged_at(&self, message: &str, field: &str, value: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        self.log_lines().iter().filter(|l| l["message"] == message && l[field] == value).find_map(|l| {
            chrono::DateTime::parse_from_rfc3339(l["timestamp"].as_str()?).ok().map(|t| t.with_timezone(&chrono::Utc))
        })
    }

    fn leading(&self) -> bool {
        http_get(self.admin_port, "/metrics").1.lines().any(|l| l == "pitrguard_reconcile_leader 1")
    }

    fn sigkill(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
        let _ = self.child.wait();
    }
}

// === objects ===

/// A Cluster snapshot as KubeBlocks 1.0 stores it in a Backup, with what a restore must change.
fn snapshot() -> String {
    json!({
        "apiVersion": "apps.kubeblocks.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "annotations": {"team": "db"}},
        "spec": {
            "terminationPolicy": "Delete",
            "componentSpecs": [{"name": "postgresql", "componentDef": "postgresql-16", "replicas": 2,
                "offlineInstances": ["pg-postgresql-1"]}],
            "services": [
                {"name": "lb", "spec": {"type": "LoadBalancer", "ports": [{"port": 5432}]}},
                {"name": "np", "spec": {"type": "NodePort", "ports": [{"port": 5432, "nodePort": 30001}],
                    "selector": {"app.kubernetes.io/instance": "pg", "role": "primary"}}}
            ]
        }
    })
    .to_string()
}

/// The examples' story, with a snapshot a Cluster can be built from: WAL 10:07:45..10:47:14, a
/// full backup ending 10:20:03.
fn story(prefix: &str) -> (&'static ControlPlane, String) {
    let cp = cp();
    let ns = namespace(cp, prefix);
    backups(cp, &ns, "pg", &snapshot());
    (cp, ns)
}

/// `{prefix}-wal` (Continuous) and `{prefix}-full` (Full), both carrying `snapshot`.
fn backups(cp: &ControlPlane, ns: &str, prefix: &str, snapshot: &str) {
    let annotations = json!({"kubeblocks.io/cluster-snapshot": snapshot});
    story_backups(&|args, stdin| _ = cp.kubectl_ok(args, stdin), ns, prefix, &annotations);
}

/// A 1.0 Restore OpsRequest, labelled for this test's reconciler.
fn restore_ops(api: &str, ns: &str, name: &str, cluster: &str, timeout: Option<u32>) -> String {
    let timeout = timeout.map(|t| format!("\n  timeoutSeconds: {t}")).unwrap_or_default();
    format!(
        "apiVersion: {api}\nkind: OpsRequest\nmetadata:\n  name: {name}\n  labels:\n    pitrguard.io/test: {ns}\nspec:\n  type: Restore\n  clusterName: {cluster}{timeout}\n  restore:\n    backupName: pg-wal\n    restorePointInTime: \"2024-05-07T10:30:00Z\"\n"
    )
}

fn apply_ok(cp: &ControlPlane, ns: &str, manifest: &str) {
    let (ok, _, stderr) = apply(cp, ns, manifest, false);
    assert!(ok, "kubectl apply: {stderr}");
}

fn get(cp: &ControlPlane, ns: &str, resource: &str, name: &str) -> Value {
    stored(cp, ns, resource, name).unwrap_or(Value::Null)
}

fn phase(cp: &ControlPlane, ns: &str, name: &str) -> String {
    get(cp, ns, OPS, name).pointer("/status/phase").and_then(Value::as_str).unwrap_or_default().to_string()
}

fn wait_phase(cp: &ControlPlane, ns: &str, name: &str, want: &str) -> Value {
    wait_for(LIMIT, &format!("{ns}/{name} to be {want}"), || phase(cp, ns, name) == want);
    get(cp, ns, OPS, name)
}

fn condition<'a>(ops: &'a Value, ty: &str) -> &'a Value {
    ops.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
        .unwrap_or_else(|| panic!("no condition {ty}: {ops}"))
}

fn clusters(cp: &ControlPlane, ns: &str) -> Vec<Value> {
    let list: Value = serde_json::from_str(&cp.kubectl_ok(&["get", CLUSTERS, "-n", ns, "-o", "json"], None)).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

/// (type, reason, note) of the events.k8s.io Events about one object.
fn events(cp: &ControlPlane, ns: &str, name: &str) -> Vec<(String, String, String)> {
    let list: Value =
        serde_json::from_str(&cp.kubectl_ok(&["get", "events.events.k8s.io", "-n", ns, "-o", "json"], None)).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["regarding"]["name"] == name)
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("type"), s("reason"), s("note"))
        })
        .collect()
}

fn has_event(cp: &ControlPlane, ns: &str, name: &str, ty: &str, reason: &str) -> bool {
    events(cp, ns, name).iter().any(|(t, r, _)| t == ty && r == reason)
}

fn set_cluster_phase(cp: &ControlPlane, ns: &str, name: &str, phase: &str) {
    let patch = json!({"status": {"phase": phase}}).to_string();
    cp.kubectl_ok(&["patch", CLUSTERS, name, "-n", ns, "--subresource=status", "--type=merge", "-p", &patch], None);
}

/// A DataProtection Restore as KubeBlocks' Component controller names and labels it, set to `phase`.
fn data_restore(cp: &ControlPlane, ns: &str, cluster: &str, stage: &str, phase: &str, message: &str) -> String {
    let uid = get(cp, ns, CLUSTERS, cluster)["metadata"]["uid"].as_str().unwrap().to_string();
    let name = format!("{cluster}-postgresql-{}-{stage}", &uid[..8]);
    let manifest = json!({"apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Restore",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/instance": cluster,
            "apps.kubeblocks.io/component-name": "postgresql", "app.kubernetes.io/managed-by": "kubeblocks"}},
        "spec": {"backup": {"name": "pg-wal", "namespace": ns}, "restoreTime": "2024-05-07T10:30:00Z"}});
    cp.kubectl_ok(&["apply", "-n", ns, "-f", "-"], Some(&manifest.to_string()));
    let status = json!({"status": {"phase": phase, "conditions": [{"type": "PrepareData", "status": "False",
        "reason": "Failed", "message": message, "lastTransitionTime": "2024-05-07T11:00:00Z"}]}});
    cp.kubectl_ok(
        &["patch", RESTORES, &name, "-n", ns, "--subresource=status", "--type=merge", "-p", &status.to_string()],
        None,
    );
    name
}

fn managers(v: &Value) -> Vec<String> {
    v.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| m["manager"].as_str().unwrap_or_default().to_string())
        .collect()
}

// === perform ===

#[test]
fn perform_happy_path_from_kubectl_apply_to_succeed() {
    let (cp, ns) = story("rec-happy");
    let r = Reconciler::start(cp, &ns, "perform", "happy", &[]);
    wait_for(LIMIT, "the lease", || r.leading());
    // Every phase the OpsRequest goes through, as `kubectl get -w` sees it.
    let mut watch = Stopped(
        Command::new(cp.kubectl_path())
            .args(["get", OPS, "-n", &ns, "-w", "--output-watch-events", "-o"])
            .arg("jsonpath={.object.status.phase}{\"\\n\"}")
            .env("KUBECONFIG", cp.kubeconfig())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    cp.track(&format!("kubectl-watch-{ns}"), watch.id());
    let stdout = watch.stdout.take().unwrap();
    let phases = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if seen.last() != Some(&line) {
                seen.push(line.clone());
            }
            if line == "Running" {
                break;
            }
        }
        seen
    });
    std::thread::sleep(Duration::from_millis(500)); // the watch is established before the apply
    let applied = chrono::Utc::now();
    apply_ok(cp, &ns, &restore_ops(common::cluster::OPERATIONS, &ns, "restore-1", "pg-restored", None));
    wait_for(LIMIT, "the Cluster", || stored(cp, &ns, CLUSTERS, "pg-restored").is_some());
    let ops = wait_phase(cp, &ns, "restore-1", "Running");
    let seen = phases.join().unwrap();
    assert_eq!(seen.iter().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>(), ["Pending", "Creating", "Running"]);
    drop(watch);

    // The Cluster, as KubeBlocks builds it.
    let c = get(cp, &ns, CLUSTERS, "pg-restored");
    let a = &c["metadata"]["annotations"];
    assert_eq!(
        a["kubeblocks.io/restore-from-backup"].as_str().unwrap(),
        format!(
            r#"{{"postgresql":{{"doReadyRestoreAfterClusterRunning":"false","name":"pg-wal","namespace":"{ns}","restoreTime":"2024-05-07T10:30:00Z","volumeRestorePolicy":"Parallel"}}}}"#
        )
    );
    assert_eq!(a["kubeblocks.io/ops-request"], r#"[{"name":"restore-1","type":"Restore"}]"#);
    assert_eq!(a["pitrguard.io/ops-uid"], ops["metadata"]["uid"]);
    assert_eq!(a["team"], "db");
    assert!(c["metadata"].get("labels").is_none(), "no labels on the Cluster: {c}");
    let services = c["spec"]["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "LoadBalancer dropped: {services:?}");
    assert_eq!(services[0]["spec"]["ports"][0]["nodePort"], 0);
    assert_eq!(services[0]["spec"]["selector"], json!({"role": "primary"}));
    assert!(c["spec"]["componentSpecs"][0].get("offlineInstances").is_none());

    // The OpsRequest, as KubeBlocks writes it.
    let labels = &ops["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/instance"], "pg-restored");
    assert_eq!(labels["operations.kubeblocks.io/ops-type"], "Restore");
    assert_eq!(ops["metadata"]["annotations"]["pitrguard.io/claimed-by"], "happy");
    let owner = &ops["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["name"], &owner["uid"]),
        (&json!("Cluster"), &json!("pg-restored"), &c["metadata"]["uid"])
    );
    assert!(owner.get("controller").is_none(), "a plain ownerReference");
    assert_eq!(ops["status"]["clusterGeneration"], c["metadata"]["generation"]);
    assert_eq!(ops["status"]["progress"], "0/1");
    assert!(ops["status"]["startTimestamp"].is_string());
    assert!(ops["status"].get("completionTimestamp").is_none());
    let w = condition(&ops, "WaitForProgressing");
    assert_eq!((&w["status"], &w["reason"]), (&json!("True"), &json!("WaitForProgressing")));
    assert_eq!(w["message"], "wait for the controller to process the OpsRequest: restore-1 in Cluster: pg-restored");
    let v = condition(&ops, "Validated");
    assert_eq!(
        (&v["reason"], &v["message"]),
        (&json!("ValidateOpsRequestPassed"), &json!("OpsRequest: restore-1 is validated"))
    );
    let b = condition(&ops, "Backup");
    assert_eq!(
        (&b["reason"], &b["message"]),
        (&json!("RestoreStarted"), &json!("Start to restore the Cluster: pg-restored"))
    );

    // KubeBlocks' part: the Cluster turns Running.
    let running = chrono::Utc::now();
    set_cluster_phase(cp, &ns, "pg-restored", "Running");
    let ops = wait_phase(cp, &ns, "restore-1", "Succeed");
    let s = condition(&ops, "Succeed");
    assert_eq!((&s["status"], &s["reason"]), (&json!("True"), &json!("OpsRequestProcessedSuccessfully")));
    assert!(ops["status"]["completionTimestamp"].is_string());
    assert_eq!(ops["status"]["progress"], "1/1");
    for reason in [
        "WaitForProgressing",
        "ValidateOpsRequestPassed",
        "RestoreStarted",
        "ClusterCreated",
        "OpsRequestProcessedSuccessfully",
    ] {
        wait_for(LIMIT, &format!("Event {reason}"), || has_event(cp, &ns, "restore-1", "Normal", reason));
    }
    assert_eq!(clusters(cp, &ns).len(), 1);
    let m = http_get(r.admin_port, "/metrics").1;
    assert!(m.contains("pitrguard_reconcile_seconds_to_succeed_count 1"), "{m}");
    assert!(m.contains("pitrguard_reconcile_seconds_to_cluster_created_count 1"), "{m}");
    assert!(
        m.contains(r#"pitrguard_reconcile_opsrequests{group="operations.kubeblocks.io",phase="Succeed"} 1"#),
        "{m}"
    );
    // Latency, from the moment kubectl is started to the reconciler's log line of the result.
    let created = r.logged_at("Cluster created", "cluster", "pg-restored").expect("logged");
    let succeeded = r.logged_at("OpsRequest phase", "to", "Succeed").expect("logged");
    let claimed = r.logged_at("claimed", "name", "restore-1").expect("logged");
    eprintln!(
        "LATENCY kubectl apply -> Cluster created: {} ms (claim -> Cluster created: {} ms); kubectl patch Cluster Running -> Succeed: {} ms",
        (created - applied).num_milliseconds(),
        (created - claimed).num_milliseconds(),
        (succeeded - running).num_milliseconds()
    );
}

#[test]
fn perform_fails_a_restore_whose_backup_range_moved_after_admission_and_creates_no_cluster() {
    let (cp, ns) = story("rec-moved");
    apply_ok(cp, &ns, &restore_ops(common::cluster::OPERATIONS, &ns, "moved", "pg-moved", None));
    // After admission, the log range moves past the point in time.
    set_status(cp, &ns, "pg-wal", "Running", ("2024-05-07T10:40:00Z", "2024-05-07T10:50:00Z"));
    let _r = Reconciler::start(cp, &ns, "perform", "moved", &[]);
    let ops = wait_phase(cp, &ns, "moved", "Failed");
    let f = condition(&ops, "Failed");
    assert_eq!((&f["status"], &f["reason"]), (&json!("False"), &json!("OpsRequestFailed")));
    let msg = f["message"].as_str().unwrap();
    assert!(
        msg.contains("spec.restore.restorePointInTime: 2024-05-07T10:30:00Z is")
            && msg.contains("before the start of continuous backup \"pg-wal\""),
        "{msg}"
    );
    assert!(ops["status"]["completionTimestamp"].is_string());
    assert!(clusters(cp, &ns).is_empty(), "no Cluster");
    wait_for(LIMIT, "a Warning Event", || has_event(cp, &ns, "moved", "Warning", "OpsRequestFailed"));
}

#[test]
fn perform_fails_when_a_prepare_data_restore_fails_with_its_message() {
    let (cp, ns) = story("rec-prepfail");
    let _r = Reconciler::start(cp, &ns, "perform", "prepfail", &[]);
    apply_ok(cp, &ns, &restore_ops(common::cluster::OPERATIONS, &ns, "prep", "pg-prep", None));
    wait_phase(cp, &ns, "prep", "Running");
    let restore = data_restore(cp, &ns, "pg-prep", "preparedata", "Failed", "restore job failed: WAL segment missing");
    let ops = wait_phase(cp, &ns, "prep", "Failed");
    let msg = condition(&ops, "Failed")["message"].as_str().unwrap().to_string();
    assert!(msg.contains(&restore) && msg.contains("restore job failed: WAL segment missing"), "{msg}");
    wait_for(LIMIT, "a Warning Event", || has_event(cp, &ns, "prep", "Warning", "OpsRequestFailed"));
    // Terminal phases are never touched again: KubeBlocks' Cluster turning Running changes nothing.
    let rv = get(cp, &ns, OPS, "prep")["metadata"]["resourceVersion"].clone();
    set_cluster_phase(cp, &ns, "pg-prep", "Running");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(get(cp, &ns, OPS, "prep")["metadata"]["resourceVersion"], rv);
}

#[test]
fn perform_aborts_on_timeout_in_creating_and_in_running() {
    let (cp, ns) = story("rec-timeout");
    // Creating: a Backup whose snapshot the API server refuses as a Cluster keeps the restore in
    // Creating (a retryable error upstream); timeoutSeconds still counts there.
    let invalid = json!({"apiVersion": "apps.kubeblocks.io/v1", "kind": "Cluster", "metadata": {"name": "pg"},
        "spec": {"componentSpecs": []}});
    backups(cp, &ns, "bad", &invalid.to_string());
    let _r = Reconciler::start(cp, &ns, "perform", "timeout", &[]);
    let creating = restore_ops(common::cluster::OPERATIONS, &ns, "stuck", "pg-stuck", Some(3))
        .replace("backupName: pg-wal", "backupName: bad-wal");
    apply_ok(cp, &ns, &creating);
    apply_ok(cp, &ns, &restore_ops(common::cluster::OPERATIONS, &ns, "slow", "pg-slow", Some(5)));
    // Why it is stuck, as upstream says it: a Warning Event DoActionFailed with the API server's answer.
    wait_for(LIMIT, "DoActionFailed", || {
        events(cp, &ns, "stuck")
            .iter()
            .any(|(t, r, n)| t == "Warning" && r == "DoActionFailed" && n.contains("terminationPolicy"))
    });
    let stuck = wait_phase(cp, &ns, "stuck", "Aborted");
    assert!(condition(&stuck, "Aborted")["message"].as_str().unwrap().contains("in phase Creating"), "{stuck}");
    assert!(stuck["status"]["completionTimestamp"].is_string());
    let slow = wait_phase(cp, &ns, "slow", "Aborted");
    assert!(condition(&slow, "Aborted")["message"].as_str().unwrap().contains("in phase Running"), "{slow}");
    wait_for(LIMIT, "Warning Events", || {
        has_event(cp, &ns, "stuck", "Warning", "Aborted") && has_event(cp, &ns, "slow", "Warning", "Aborted")
    });
    assert_eq!(clusters(cp, &ns).len(), 1, "only the slow restore's Cluster");
}

#[test]
fn perform_fails_when_the_cluster_is_deleted() {
    let (cp, ns) = story("rec-deleted");
    let _r = Reconciler::start(cp, &ns, "perform", "deleted", &[]);
    apply_ok(cp, &ns, &restore_ops(common::cluster::OPERATIONS, &ns, "gone", "pg-gone", None));
    wait_phase(cp, &ns, "gone", "Running");
    cp.kubectl_ok(&["delete", CLUSTERS, "pg-gone", "-n", &ns, "--wait=true"], None);
    let ops = wait_phase(cp, &ns, "gone", "Failed");
    assert_eq!(condition(&ops, "Validated")["reason"], "ClusterNotFound");
    assert!(condition(&ops, "Failed")["message"].as_str().unwrap().contains("was deleted"), "{ops}");
    assert!(clusters(cp, &ns).is_empty(), "no Cluster is recreated");
}

#[test]
fn perform_fails_on_a_foreign_cluster_and_leaves_kubeblocks_finalized_ops_alone() {
    let (cp, ns) = story("rec-foreign");
    apply_ok(cp, &ns, &restore_ops(common::cluster::OPERATIONS, &ns, "foreign", "pg-taken", None));
    // Someone else's Cluster of that name, made after admission.
    let foreign = json!({"apiVersion": "apps.kubeblocks.io/v1", "kind": "Cluster", "metadata": {"name": "pg-taken"},
        "spec": {"terminationPolicy": "Delete"}});
    cp.kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&foreign.to_string()));
    let taken_rv = get(cp, &ns, CLUSTERS, "pg-taken")["metadata"]["resourceVersion"].clone();
    // An OpsRequest KubeBlocks already runs (its finalizer).
    let kb = restore_ops(common::cluster::OPERATIONS, &ns, "kb", "pg-kb", None)
        .replace("metadata:\n", "metadata:\n  finalizers: [\"opsrequest.kubeblocks.io/finalizer\"]\n");
    apply_ok(cp, &ns, &kb);
    let _r = Reconciler::start(cp, &ns, "perform", "foreign", &[]);
    let ops = wait_phase(cp, &ns, "foreign", "Failed");
    let msg = condition(&ops, "Failed")["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("Cluster \"pg-taken\" already exists") && msg.contains("not created by this OpsRequest"),
        "{msg}"
    );
    let c = get(cp, &ns, CLUSTERS, "pg-taken");
    assert_eq!(c["metadata"]["resourceVersion"], taken_rv, "the foreign Cluster is untouched: {c}");
    // A barrier: a restore after it is finished, so the reconciler has seen the finalized one.
    apply_ok(cp, &ns, &restore_ops(common::cluster::OPERATIONS, &ns, "later", "pg-later", None));
    wait_phase(cp, &ns, "later", "Running");
    let kb = get(cp, &ns, OPS, "kb");
    assert!(kb.get("status").and_then(|s| s.get("phase")).is_none(), "{kb}");
    assert!(kb["metadata"]["annotations"].get("pitrguard.io/claimed-by").is_none(), "{kb}");
    assert!(stored(cp, &ns, CLUSTERS, "pg-kb").is_none());
}

#[test]
fn perform_survives_a_sigkill_after_every_step_with_exactly_one_cluster() {
    let (cp, ns) = story("rec-crash");
    for (i, step) in ["claim", "pending", "creating", "cluster", "labelled", "running"].iter().enumerate() {
        let name = format!("crash-{i}");
        let cluster = format!("pg-crash-{i}");
        let frozen =
            Reconciler::start(cp, &ns, "perform", &format!("crash-{step}"), &[("PITRGUARD_TEST_FREEZE_AFTER", step)]);
        apply_ok(cp, &ns, &restore_ops(common::cluster::OPERATIONS, &ns, &name, &cluster, None));
        wait_for(LIMIT, &format!("the reconciler to stop after step {step}"), || {
            frozen.logged("frozen after this step (PITRGUARD_TEST_FREEZE_AFTER)")
        });
        frozen.sigkill();
        let _next = Reconciler::start(cp, &ns, "perform", &format!("after-{step}"), &[]);
        wait_phase(cp, &ns, &name, "Running");
        set_cluster_phase(cp, &ns, &cluster, "Running");
        let ops = wait_phase(cp, &ns, &name, "Succeed");
        let ours: Vec<Value> = clusters(cp, &ns)
            .into_iter()
            .filter(|c| c["metadata"]["annotations"]["pitrguard.io/ops-uid"] == ops["metadata"]["uid"])
            .collect();
        assert_eq!(ours.len(), 1, "after a SIGKILL after {step}: exactly one Cluster");
        assert_eq!(ops["metadata"]["ownerReferences"].as_array().unwrap().len(), 1, "{ops}");
    }
    assert_eq!(clusters(cp, &ns).len(), 6);
}

#[test]
fn two_replicas_only_the_leader_writes_and_a_killed_leader_hands_over() {
    let (cp, ns) = story("rec-ha");
    let a = Reconciler::start(cp, &ns, "perform", "replica-a", &[]);
    let b = Reconciler::start(cp, &ns, "perform", "replica-b", &[]);
    wait_for(LIMIT, "one leader", || a.leading() || b.leading());
    let (leader, follower) = if a.leading() { (a, b) } else { (b, a) };
    assert!(!follower.leading());
    apply_ok(cp, &ns, &restore_ops(common::cluster::OPERATIONS, &ns, "ha", "pg-ha", None));
    let ops = wait_phase(cp, &ns, "ha", "Running");
    assert_eq!(ops["metadata"]["annotations"]["pitrguard.io/claimed-by"].as_str(), Some(leader.identity.as_str()));
    assert!(leader.logged("OpsRequest phase"));
    assert!(!follower.logged("OpsRequest phase") && !follower.logged("claimed"), "the follower wrote nothing");
    let killed = Instant::now();
    leader.sigkill();
    set_cluster_phase(cp, &ns, "pg-ha", "Running");
    wait_phase(cp, &ns, "ha", "Succeed");
    let handover = killed.elapsed();
    assert!(follower.leading());
    assert!(follower.logged("OpsRequest phase"), "the new leader finished it");
    // A lease of 4 s: the follower may wait for it to expire, plus its retry period.
    assert!(handover < Duration::from_secs(15), "handover took {handover:?}");
    assert_eq!(clusters(cp, &ns).len(), 1);
    eprintln!("HANDOVER leader SIGKILLed -> Succeed by the new leader: {} ms", handover.as_millis());
}

#[test]
fn a_lost_lease_stops_work_at_once_and_it_resumes_when_the_lease_is_back() {
    let (cp, ns) = story("rec-lost");
    let r = Reconciler::start(cp, &ns, "perform", "holder", &[]);
    wait_for(LIMIT, "the lease", || r.leading());
    // Another holder takes the Lease and keeps renewing it, as a new leader would.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let intruder = {
        let (stop, ns) = (stop.clone(), ns.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
                let patch = json!({"spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 4, "renewTime": now.to_string()}});
                cp.kubectl_ok(
                    &["patch", "lease", "pitrguard-reconciler", "-n", &ns, "--type=merge", "-p", &patch.to_string()],
                    None,
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    wait_for(LIMIT, "the reconciler to see the lease lost", || !r.leading());
    assert!(r.logged("reconciler: lost the lease; stopped at once"));
    apply_ok(cp, &ns, &restore_ops(common::cluster::OPERATIONS, &ns, "waiting", "pg-waiting", None));
    std::thread::sleep(Duration::from_secs(3));
    let ops = get(cp, &ns, OPS, "waiting");
    assert!(
        ops["metadata"]["annotations"].get("pitrguard.io/claimed-by").is_none(),
        "no work without the lease: {ops}"
    );
    assert_eq!(phase(cp, &ns, "waiting"), "");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    intruder.join().unwrap();
    // The intruder's lease runs out; the reconciler takes it back and does the work.
    wait_phase(cp, &ns, "waiting", "Running");
    assert!(r.leading());
}

// === observe ===

#[test]
fn observe_reports_a_09_restore_as_events_and_writes_nothing() {
    let (cp, ns) = story("rec-observe");
    let r = Reconciler::start(cp, &ns, "observe", "observer", &[]);
    apply_ok(cp, &ns, &restore_ops(common::cluster::APPS, &ns, "kb09", "pg-09", Some(4)));
    // KubeBlocks 0.9's part: phases, the Cluster, a failed prepareData Restore.
    let status = json!({"status": {"phase": "Creating", "progress": "-/-",
        "startTimestamp": pitrguard_now()}});
    cp.kubectl_ok(
        &["patch", APPS_OPS, "kb09", "-n", &ns, "--subresource=status", "--type=merge", "-p", &status.to_string()],
        None,
    );
    wait_for(LIMIT, "RestoreStarted", || has_event(cp, &ns, "kb09", "Normal", "RestoreStarted"));
    let cluster = json!({"apiVersion": "apps.kubeblocks.io/v1", "kind": "Cluster", "metadata": {"name": "pg-09"},
        "spec": {"terminationPolicy": "Delete"}});
    cp.kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&cluster.to_string()));
    let restore = data_restore(cp, &ns, "pg-09", "preparedata", "Failed", "base backup pg-full not found");
    wait_for(LIMIT, "RestoreFailed", || {
        events(cp, &ns, "kb09").iter().any(|(t, r, n)| {
            t == "Warning"
                && r == "RestoreFailed"
                && n.contains(&restore)
                && n.contains("base backup pg-full not found")
        })
    });
    wait_for(LIMIT, "RestoreTimedOut", || has_event(cp, &ns, "kb09", "Warning", "RestoreTimedOut"));
    let status = json!({"status": {"phase": "Succeed"}});
    cp.kubectl_ok(
        &["patch", APPS_OPS, "kb09", "-n", &ns, "--subresource=status", "--type=merge", "-p", &status.to_string()],
        None,
    );
    wait_for(LIMIT, "RestoreSucceeded", || has_event(cp, &ns, "kb09", "Normal", "RestoreSucceeded"));
    // Nothing written by pitrguard: every field of the OpsRequest, Cluster and Restore is kubectl's.
    let ops = get(cp, &ns, APPS_OPS, "kb09");
    assert!(ops["metadata"]["annotations"].get("pitrguard.io/claimed-by").is_none(), "{ops}");
    for o in [ops, get(cp, &ns, CLUSTERS, "pg-09"), get(cp, &ns, RESTORES, &restore)] {
        assert!(managers(&o).iter().all(|m| m.starts_with("kubectl")), "{:?}", managers(&o));
    }
    assert_eq!(clusters(cp, &ns).len(), 1);
    let m = http_get(r.admin_port, "/metrics").1;
    assert!(m.contains(r#"pitrguard_reconcile_observed_total{result="failed"} 1"#), "{m}");
}

fn pitrguard_now() -> String {
    let out = Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn serve_reconciles_too_one_deployment_for_the_webhook_and_the_reconciler() {
    let (cp, ns) = story("rec-serve");
    let selector = format!("pitrguard.io/test={ns}");
    let hook = start_webhook(
        cp,
        &["--reconcile", "perform", "--reconcile-selector", &selector, "--lease-namespace", &ns],
        &[("PITRGUARD_LEASE_DURATION", "4"), ("PITRGUARD_LEASE_GRACE", "1")],
    );
    wait_for(LIMIT, "the lease", || hook.metrics().lines().any(|l| l == "pitrguard_reconcile_leader 1"));
    apply_ok(cp, &ns, &restore_ops(common::cluster::OPERATIONS, &ns, "served", "pg-served", None));
    wait_phase(cp, &ns, "served", "Running");
    set_cluster_phase(cp, &ns, "pg-served", "Running");
    wait_phase(cp, &ns, "served", "Succeed");
    let m = hook.metrics();
    assert!(m.contains("pitrguard_reconcile_seconds_to_succeed_count 1"), "{m}");
    assert!(m.contains(r#"pitrguard_reconciles_total{mode="perform",result="success"}"#), "{m}");
}

#[test]
fn perform_refuses_to_start_without_a_performable_kubeblocks_reason_in_one_line() {
    // This control plane serves 1.0's operations API, so perform starts; the refusal for 0.9 and
    // 1.2 is unit-tested on the discovery result (reconcile::flavour). Here: bad lease flags.
    let cp = cp();
    let out = Command::new(env!("CARGO_BIN_EXE_pitrguard"))
        .args(["reconcile", "--mode", "perform", "--lease-duration", "3", "--lease-grace", "3"])
        .env("KUBECONFIG", cp.kubeconfig())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--lease-grace (3) must be shorter than --lease-duration (3)"), "{stderr}");
}
