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

/// A plain-HTTP GET on the admin port: (status, body), or None when it does not answer.
pub fn admin_get(admin: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string())))
}

/// The value of the admin port's metric line starting with `line_start` (0 when absent).
pub fn admin_metric(admin: u16, line_start: &str) -> f64 {
    let (_, body) = admin_get(admin, "/metrics").expect("metrics");
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}
