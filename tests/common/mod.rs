//! Shared fixtures: the bundled examples as an inventory, and AdmissionReview builders.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use pitrguard::core::Policy;
use pitrguard::inventory::SharedInventory;
use pitrguard::load::{build_index, read_documents};
use pitrguard::metrics::Metrics;
use pitrguard::server::webhook::App;
use serde_json::{Value, json};

pub fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Starts the real `pitrguard serve` on the examples, with dev certificates made in `certs`:
/// the process (stopped on drop), its webhook port and its admin port. It may not be ready yet.
pub fn serve_examples<S: AsRef<std::ffi::OsStr>>(certs: &std::path::Path, extra: &[S]) -> (process::Stopped, u16, u16) {
    let (port, admin) = (process::free_port(), process::free_port());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_pitrguard"))
        .arg("serve")
        .arg("--inventory")
        .arg(examples())
        .args(["--listen", &format!("127.0.0.1:{port}"), "--admin-listen", &format!("127.0.0.1:{admin}")])
        .arg("--dev-certs-dir")
        .arg(certs)
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (process::Stopped(child), port, admin)
}

pub fn example_inventory() -> SharedInventory {
    let docs = read_documents(&[examples()]).expect("examples load");
    SharedInventory::ready(build_index(&docs).expect("examples index"))
}

pub fn app_with(inventory: SharedInventory) -> App {
    App {
        inventory: Arc::new(inventory),
        policy: Arc::new(Policy::default()),
        metrics: Arc::new(Metrics::new()),
        fresh: None,
        module: None,
    }
}

pub fn app() -> App {
    app_with(example_inventory())
}

/// A Restore OpsRequest in namespace `demo`.
pub fn restore(api_version: &str, name: &str, restore: Value) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": "OpsRequest",
        "metadata": {"name": name, "namespace": "demo"},
        "spec": {"type": "Restore", "clusterName": format!("{name}-cluster"), "restore": restore}
    })
}

pub fn pitr(api_version: &str, t: &str) -> Value {
    restore(api_version, "r", json!({"backupName": "pg-cluster-archive-wal", "restorePointInTime": t}))
}

pub const OPERATIONS: &str = "operations.kubeblocks.io/v1alpha1";
pub const APPS: &str = "apps.kubeblocks.io/v1alpha1";

/// An admission.k8s.io/v1 AdmissionReview as the API server sends it.
pub fn review(operation: &str, object: Value, old_object: Value) -> Value {
    let api = object
        .get("apiVersion")
        .or_else(|| old_object.get("apiVersion"))
        .and_then(Value::as_str)
        .unwrap_or("v1")
        .to_string();
    let (group, version) = api.split_once('/').unwrap_or(("", api.as_str()));
    let kind = object.get("kind").or_else(|| old_object.get("kind")).cloned().unwrap_or(json!("OpsRequest"));
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0df28fbd-5f5f-11e8-bc74-36e6bb280816",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": "opsrequests"},
            "name": "r",
            "namespace": "demo",
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"],
                         "extra": {"scopes.example.com/team": ["db", "ops"]}},
            "object": object,
            "oldObject": old_object,
            "dryRun": false
        }
    })
}
pub mod cluster;
pub mod https;
pub mod load;
pub mod process;
pub mod wasm;
