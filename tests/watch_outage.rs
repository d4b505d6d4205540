//! The API server goes away under a live pitrguard: it keeps answering from
//! its cache, reports the outage in /metrics, and when the API server is back
//! it reconnects by itself and sees what changed.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::cluster::*;

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Sends an AdmissionReview for a restore of `backup` at `t` straight to the webhook.
fn validate(hook: &Webhook, ns: &str, backup: &str, t: &str) -> serde_json::Value {
    let object: serde_json::Value = serde_yaml::from_str(&ops(OPERATIONS, "r", "pg-r", backup, Some(t))).unwrap();
    let review = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "outage", "kind": {"group": "operations.kubeblocks.io", "version": "v1alpha1", "kind": "OpsRequest"},
        "resource": {"group": "operations.kubeblocks.io", "version": "v1alpha1", "resource": "opsrequests"},
        "name": "r", "namespace": ns, "operation": "CREATE", "userInfo": {}, "object": object}});
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert", hook.certs.join("ca.crt").to_str().unwrap()])
        .args(["-H", "Content-Type: application/json", "--data-binary", "@-"])
        .arg(format!("https://127.0.0.1:{}/validate", hook.port))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(review.to_string().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"))["response"].clone()
}

#[test]
fn an_api_server_outage_is_served_from_the_cache_and_reported_then_healed() {
    let cp = control_plane();
    let hook = start_webhook(cp, &[], &[]);
    let ns = namespace(cp, "outage");
    backup(cp, &ns, "pg-wal", "Continuous", "Running", ("2024-05-07T10:07:45Z", "2024-05-07T10:47:14Z"));
    backup(cp, &ns, "pg-full", "Full", "Completed", ("2024-05-07T10:18:40Z", "2024-05-07T10:20:03Z"));
    wait_for(Duration::from_secs(20), "the backups in the cache", || {
        validate(&hook, &ns, "pg-wal", "2024-05-07T10:30:00Z")["allowed"] == true
    });
    assert_eq!(metric(&hook.metrics(), "pitrguard_inventory_staleness_seconds"), 0.0);

    // The API server crashes.
    let args = cp.crash_apiserver();

    // Served from the cache, and the outage shows.
    wait_for(Duration::from_secs(60), "the outage in /metrics", || {
        metric(&hook.metrics(), "pitrguard_inventory_staleness_seconds") > 0.0
    });
    let m = hook.metrics();
    assert!(metric(&m, "pitrguard_inventory_watch_restarts_total") >= 1.0, "{m}");
    assert_eq!(validate(&hook, &ns, "pg-wal", "2024-05-07T10:30:00Z")["allowed"], true);
    let denied = validate(&hook, &ns, "pg-wal", "2024-05-07T11:00:00Z");
    assert_eq!(denied["allowed"], false, "a denial still comes from the cache when the fresh read fails");
    assert!(denied["status"]["message"].as_str().unwrap().contains("12m46s after the end"));
    assert_eq!(http_get(hook.admin_port, "/readyz").0, 200, "a synced cache stays ready");

    // The API server comes back (same flags, same etcd): pitrguard reconnects by itself.
    cp.restart_apiserver(&args);
    set_status(cp, &ns, "pg-wal", "Running", ("2024-05-07T10:07:45Z", "2024-05-07T11:05:00Z"));
    // Staleness returns to 0 only on an event from a working watch (kube-runtime's backoff caps at 30 s).
    wait_for(Duration::from_secs(120), "the watches to reconnect", || {
        metric(&hook.metrics(), "pitrguard_inventory_staleness_seconds") == 0.0
    });
    assert_eq!(validate(&hook, &ns, "pg-wal", "2024-05-07T11:00:00Z")["allowed"], true);
}
