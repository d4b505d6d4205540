//! End to end on a real kube-apiserver with the real KubeBlocks CRDs: pitrguard
//! in live mode, registered with the shipped webhook configurations, driven by
//! the real kubectl. Assertions are on what kubectl prints and on what is stored.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::cluster::*;

struct Env {
    cp: &'static ControlPlane,
    hook: Webhook,
}

/// One webhook for the whole test binary, registered once.
fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let cp = control_plane();
        let hook = start_webhook(cp, &[], &[]);
        register_webhooks(cp, &hook);
        Env { cp, hook }
    })
}

/// A namespace with the examples' story: WAL 10:07:45..10:47:14, a full backup ending 10:20:03.
fn story(prefix: &str) -> (&'static ControlPlane, String) {
    let cp = env().cp;
    let ns = namespace(cp, prefix);
    backup(cp, &ns, "pg-wal", "Continuous", "Running", ("2024-05-07T10:07:45Z", "2024-05-07T10:47:14Z"));
    backup(cp, &ns, "pg-full", "Full", "Completed", ("2024-05-07T10:18:40Z", "2024-05-07T10:20:03Z"));
    (cp, ns)
}

/// Both OpsRequest APIs, with the resource name kubectl uses for each.
const BOTH_GROUPS: [(&str, &str); 2] =
    [(OPERATIONS, "opsrequests.operations.kubeblocks.io"), (APPS, "opsrequests.apps.kubeblocks.io")];

#[test]
fn kubectl_apply_refuses_a_restore_outside_the_window_with_pitrguards_message() {
    let (cp, ns) = story("outside");
    for (api, resource) in BOTH_GROUPS {
        let (ok, _, stderr) =
            apply(cp, &ns, &ops(api, "late", "pg-late", "pg-wal", Some("2024-05-07T11:00:00Z")), false);
        assert!(!ok, "{api}: a restore after the end must be refused");
        assert!(
            stderr.contains(r#"admission webhook "validate.pitrguard.io" denied the request: spec.restore.restorePointInTime: 2024-05-07T11:00:00Z is 12m46s after the end of continuous backup "pg-wal" (2024-05-07T10:07:45Z .. 2024-05-07T10:47:14Z); restorable window: 2024-05-07T10:20:04Z .. 2024-05-07T10:47:14Z"#),
            "{api}: {stderr}"
        );
        assert!(stored(cp, &ns, resource, "late").is_none(), "{api}: nothing is stored");
    }
}

#[test]
fn kubectl_apply_stores_a_restore_inside_the_window_with_defaults_and_warnings() {
    let (cp, ns) = story("inside");
    for (api, resource) in BOTH_GROUPS {
        let (ok, stdout, stderr) =
            apply(cp, &ns, &ops(api, "ok", "pg-ok", "pg-wal", Some("May 07,2024 18:30:00 UTC+0800")), false);
        assert!(ok, "{api}: {stderr}");
        assert!(stdout.contains("created"), "{stdout}");
        let w1 = "Warning: spec.restore.restorePointInTime: \"May 07,2024 18:30:00 UTC+0800\" was replaced by its normal form 2024-05-07T10:30:00Z";
        assert_eq!(stderr.matches(w1).count(), 1, "{api}: W1 once, from the mutating webhook: {stderr}");
        let o = stored(cp, &ns, resource, "ok").expect("stored");
        assert_eq!(o["spec"]["restore"]["restorePointInTime"], "2024-05-07T10:30:00Z");
        assert_eq!(o["spec"]["restore"]["volumeRestorePolicy"], "Parallel");
        assert_eq!(o["metadata"]["annotations"]["pitrguard.io/base-backup"], "pg-full");
    }
}

#[test]
fn dry_run_server_gives_the_same_verdicts_and_stores_nothing() {
    let (cp, ns) = story("dryrun");
    let (ok, _, stderr) =
        apply(cp, &ns, &ops(OPERATIONS, "late", "pg-late", "pg-wal", Some("2024-05-07T10:15:00Z")), true);
    assert!(!ok);
    assert!(stderr.contains("5m3s before the first full backup that completed inside the log range"), "{stderr}");
    let (ok, stdout, stderr) =
        apply(cp, &ns, &ops(OPERATIONS, "fine", "pg-fine", "pg-wal", Some("2024-05-07T10:30:00+00:00")), true);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("created (server dry run)"), "{stdout}");
    assert!(stderr.contains("was replaced by its normal form"), "{stderr}");
    assert!(stored(cp, &ns, "opsrequests.operations.kubeblocks.io", "fine").is_none());
    assert!(stored(cp, &ns, "opsrequests.operations.kubeblocks.io", "late").is_none());
}

#[test]
fn a_non_restore_opsrequest_is_untouched() {
    let (cp, ns) = story("restart");
    let manifest = "apiVersion: operations.kubeblocks.io/v1alpha1\nkind: OpsRequest\nmetadata:\n  name: restart\nspec:\n  type: Restart\n  clusterName: pg\n  restart:\n  - componentName: postgresql\n";
    let (ok, _, stderr) = apply(cp, &ns, manifest, false);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("Warning"), "{stderr}");
    let o = stored(cp, &ns, "opsrequests.operations.kubeblocks.io", "restart").unwrap();
    let annotations = o["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
    assert!(!annotations.contains_key("pitrguard.io/base-backup"));
}

#[test]
fn a_backup_created_and_used_at_once_is_seen() {
    let cp = env().cp;
    let ns = namespace(cp, "ryw");
    backup(cp, &ns, "fresh-wal", "Continuous", "Running", ("2024-05-07T10:00:00Z", "2024-05-07T11:00:00Z"));
    backup(cp, &ns, "fresh-full", "Full", "Completed", ("2024-05-07T10:01:00Z", "2024-05-07T10:05:00Z"));
    let (ok, _, stderr) =
        apply(cp, &ns, &ops(OPERATIONS, "now", "pg-now", "fresh-wal", Some("2024-05-07T10:30:00Z")), false);
    assert!(ok, "a Backup written a moment ago must be usable: {stderr}");
}

#[test]
fn a_growing_time_range_is_seen_on_the_next_request() {
    let (cp, ns) = story("grow");
    let late = ops(OPERATIONS, "later", "pg-later", "pg-wal", Some("2024-05-07T10:55:00Z"));
    let (ok, _, stderr) = apply(cp, &ns, &late, true);
    assert!(!ok && stderr.contains("after the end"), "{stderr}");
    set_status(cp, &ns, "pg-wal", "Running", ("2024-05-07T10:07:45Z", "2024-05-07T11:02:00Z"));
    let (ok, _, stderr) = apply(cp, &ns, &late, true);
    assert!(ok, "the new end must be seen at once: {stderr}");
}

#[test]
fn a_deleted_backup_is_no_longer_accepted() {
    let (cp, ns) = story("deleted");
    let manifest = ops(OPERATIONS, "gone", "pg-gone", "pg-wal", Some("2024-05-07T10:30:00Z"));
    assert!(apply(cp, &ns, &manifest, true).0);
    cp.kubectl_ok(&["delete", "backup", "pg-wal", "-n", &ns, "--wait=true"], None);
    wait_for(Duration::from_secs(20), "the delete to reach the cache", || {
        let (ok, _, stderr) = apply(cp, &ns, &manifest, true);
        !ok && stderr.contains(r#"backup "pg-wal" not found in namespace"#)
    });
}

#[test]
fn windows_live_prints_the_clusters_windows() {
    let (cp, ns) = story("windows");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pitrguard"))
        .args(["windows", "--live", "--namespace", &ns])
        .env("KUBECONFIG", cp.kubeconfig())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("{ns}/pg-wal (cluster pg, Running)")), "{stdout}");
    assert!(
        stdout.contains("restorable window:  2024-05-07T10:20:04Z .. 2024-05-07T10:47:14Z (strict base edge)"),
        "{stdout}"
    );
    assert!(stdout.contains("pg-full (ended 2024-05-07T10:20:03Z)"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = format!(
        "pitrguard: read 2 Backups, 0 ActionSets, 0 Clusters from {}/ (kubeconfig context \"testcp\")\n",
        cp.env["TESTCP_API_URL"]
    );
    assert_eq!(stderr, said, "one line on stderr: what was read, from where");
}

#[test]
fn validate_live_judges_files_against_the_cluster() {
    let (cp, ns) = story("validate");
    let dir = tempfile::tempdir().unwrap();
    let file = write_temp(
        dir.path(),
        "r.yaml",
        &ops(OPERATIONS, "r", "pg-r", "pg-wal", Some("2024-05-07T11:00:00Z"))
            .replace("  name: r\n", &format!("  name: r\n  namespace: {ns}\n")),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pitrguard"))
        .args(["validate", "--live", file.to_str().unwrap()])
        .env("KUBECONFIG", cp.kubeconfig())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!(
        "{ns}/r: denied: spec.restore.restorePointInTime: 2024-05-07T11:00:00Z is 12m46s after the end"
    )));
}

#[test]
fn the_metrics_count_decisions_and_inventory() {
    let e = env();
    let (_cp, _ns) = story("metrics");
    let m = e.hook.metrics();
    assert!(m.contains("pitrguard_inventory_ready 1"), "{m}");
    assert!(m.contains("pitrguard_admission_decisions_total{endpoint=\"validate\""), "{m}");
    assert!(
        m.lines().any(|l| l.starts_with("pitrguard_inventory_objects{kind=\"Backup\"}") && !l.ends_with(" 0")),
        "{m}"
    );
}

#[test]
fn metadata_updates_of_a_stored_restore_never_reach_the_webhook() {
    let e = env();
    let (cp, ns) = story("relabel");
    let (ok, _, stderr) =
        apply(cp, &ns, &ops(OPERATIONS, "kept", "pg-kept", "pg-wal", Some("2024-05-07T10:30:00Z")), false);
    assert!(ok, "{stderr}");
    // The restore could no longer be admitted (the log range now starts later)...
    set_status(cp, &ns, "pg-wal", "Running", ("2024-05-07T10:40:00Z", "2024-05-07T10:50:00Z"));
    let decisions = || e.hook.decisions_for(&ns, "kept");
    let before = decisions();
    assert!(before >= 2, "the create was judged by both webhooks");
    // ...yet what KubeBlocks does to it (labels, finalizers) goes through, without asking pitrguard.
    cp.kubectl_ok(
        &["label", "opsrequests.operations.kubeblocks.io", "kept", "-n", &ns, "app.kubernetes.io/instance=pg-kept"],
        None,
    );
    cp.kubectl_ok(
        &[
            "patch",
            "opsrequests.operations.kubeblocks.io",
            "kept",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["opsrequest.kubeblocks.io/finalizer"]}}"#,
        ],
        None,
    );
    assert_eq!(decisions(), before, "matchConditions keep spec-preserving updates away from the webhook");
    // A change of the restore itself is judged again.
    let out = cp.kubectl(
        &[
            "patch",
            "opsrequests.operations.kubeblocks.io",
            "kept",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"restore":{"restorePointInTime":"2024-05-07T10:35:00Z"}}}"#,
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("before the start of continuous backup"), "{stderr}");
    assert!(decisions() > before, "a spec change reaches the webhook");
}
