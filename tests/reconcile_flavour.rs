//! `pitrguard reconcile --mode perform` refuses to start where it cannot perform, from what API
//! discovery finds: KubeBlocks 1.2 (the Cluster CRD has `spec.restore`) and 0.9 (no
//! `operations.kubeblocks.io` OpsRequests). It changes the CRDs, so it has a control plane (a test
//! binary) of its own.

mod common;

use std::time::Duration;

use common::cluster::*;
use serde_json::{Value, json};

/// Runs `pitrguard reconcile` until it is ready (`None`) or exits (`Some((code, stderr))`).
fn reconcile(cp: &ControlPlane, mode: &str) -> Option<(i32, String)> {
    let dir = cp.scratch("flavour-");
    let log = dir.join("pitrguard.log");
    let admin_port = free_port();
    let (admin, lease) = (format!("127.0.0.1:{admin_port}"), format!("flavour-{admin_port}"));
    let args =
        ["reconcile", "--mode", mode, "--admin-listen", &admin, "--lease-namespace", "default", "--lease-name", &lease];
    let mut child = spawn_pitrguard(cp, &dir, &args, &[]);
    let mut exit = None;
    wait_for(Duration::from_secs(60), "pitrguard reconcile to be ready or to exit", || {
        if let Some(status) = child.try_wait().unwrap() {
            exit = Some((status.code().unwrap_or(-1), std::fs::read_to_string(&log).unwrap_or_default()));
            return true;
        }
        http_get(admin_port, "/readyz").0 == 200
    });
    exit
}

#[test]
fn perform_refuses_kubeblocks_12_and_09_and_observe_runs_on_both() {
    let cp = control_plane();
    // KubeBlocks 1.0: perform starts.
    assert_eq!(reconcile(cp, "perform"), None, "perform runs on KubeBlocks 1.0");

    // KubeBlocks 1.2: the Cluster CRD gains spec.restore.
    let crd: Value =
        serde_json::from_str(&cp.kubectl_ok(&["get", "crd", "clusters.apps.kubeblocks.io", "-o", "json"], None))
            .unwrap();
    let v1 = crd["spec"]["versions"].as_array().unwrap().iter().position(|v| v["name"] == "v1").unwrap();
    let patch = json!([{"op": "add", "path": format!("/spec/versions/{v1}/schema/openAPIV3Schema/properties/spec/properties/restore"),
        "value": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}]);
    cp.kubectl_ok(&["patch", "crd", "clusters.apps.kubeblocks.io", "--type=json", "-p", &patch.to_string()], None);
    let mut refused = None;
    wait_for(Duration::from_secs(60), "the OpenAPI document to show spec.restore", || {
        refused = reconcile(cp, "perform");
        refused.is_some()
    });
    let (code, stderr) = refused.unwrap();
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("the Cluster CRD has spec.restore (KubeBlocks 1.2)") && stderr.contains("--reconcile=observe"),
        "{stderr}"
    );
    assert_eq!(reconcile(cp, "observe"), None, "observe runs on KubeBlocks 1.2");

    // KubeBlocks 0.9: only apps.kubeblocks.io OpsRequests.
    cp.kubectl_ok(&["delete", "crd", "opsrequests.operations.kubeblocks.io", "--wait=true"], None);
    let mut refused = None;
    wait_for(Duration::from_secs(60), "discovery to lose operations.kubeblocks.io", || {
        refused = reconcile(cp, "perform");
        refused.as_ref().is_some_and(|(_, e)| e.contains("KubeBlocks 0.9"))
    });
    let (code, stderr) = refused.unwrap();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot be switched off alone") && stderr.contains("--reconcile=observe"), "{stderr}");
    assert_eq!(stderr.trim().lines().filter(|l| l.starts_with("pitrguard:")).count(), 1, "one line: {stderr}");
    assert_eq!(reconcile(cp, "observe"), None, "observe runs on KubeBlocks 0.9");
}
