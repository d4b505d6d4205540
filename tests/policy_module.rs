//! The policy module (crates/pitrguard-policy, built by hack/build-policy.sh)
//! under a second, independent host: tests/policy_module/wapc_host.py runs it
//! in the `wasmtime` binding from PyPI, speaks waPC itself and answers the
//! module's Kubewarden host calls from the examples. Its answers must be the
//! native ones (`pitrguard validate --output json`): verdict, message,
//! warnings, and the object with the patch applied.
//!
//! Nothing here is skipped: a missing prerequisite (python3 with venv, pip
//! reaching PyPI, Debian's wasm toolchain) fails the test with what to do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use pitrguard::core::{Index, Operation, Policy, judge};
use serde_json::{Value, json};

mod common;

use common::wasm::module;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The PyPI release of the `wasmtime` binding this host is tested with.
const WASMTIME_PY: &str = "50.0.1";

fn target_policy() -> PathBuf {
    Path::new(ROOT).join("target/policy")
}

/// A venv with the pinned `wasmtime` binding, made on first use. Once per process: tests run in
/// parallel, and a second `pip install` into the venv can swap the binding's native library
/// under a host that another test is running (which then dies by a signal, saying nothing).
fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(make_python).clone()
}

fn make_python() -> PathBuf {
    let venv = target_policy().join("pyhost");
    let python = venv.join("bin/python");
    let probe =
        format!("import importlib.metadata as m, sys; sys.exit(0 if m.version('wasmtime') == '{WASMTIME_PY}' else 1)");
    if Command::new(&python).args(["-c", &probe]).status().is_ok_and(|s| s.success()) {
        return python;
    }
    let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).status();
    assert!(
        made.is_ok_and(|s| s.success()),
        "cannot create a Python venv at {}: install python3 and python3-venv",
        venv.display()
    );
    let pip = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", &format!("wasmtime=={WASMTIME_PY}")])
        .status();
    assert!(pip.is_ok_and(|s| s.success()), "pip could not install wasmtime=={WASMTIME_PY} from PyPI");
    python
}

/// Runs the Python host on a plan; returns its report.
fn run_host(module: &Path, inventory: &[Value], calls: &[Value]) -> Value {
    run_failing_host(module, inventory, calls, &[])
}

/// The same, with host operations that fail as if the API server were unreachable.
fn run_failing_host(module: &Path, inventory: &[Value], calls: &[Value], failing: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let body = json!({"module": module, "inventory": inventory, "calls": calls, "failing": failing});
    std::fs::write(&plan, serde_json::to_vec(&body).unwrap()).unwrap();
    let out = Command::new(python())
        .arg(Path::new(ROOT).join("tests/policy_module/wapc_host.py"))
        .arg(&plan)
        .output()
        .expect("the Python host could not be started");
    assert!(out.status.success(), "the Python host failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the Python host prints JSON")
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

fn is_ops_request(v: &Value) -> bool {
    kind(v) == "OpsRequest"
}

/// The examples' objects, plus each OpsRequest again under the other API group.
fn examples() -> (Vec<Value>, Vec<Value>) {
    let docs = pitrguard::load::read_documents(&[Path::new(ROOT).join("examples/postgresql")]).unwrap();
    let (ops, inventory): (Vec<Value>, Vec<Value>) = docs.into_iter().map(|d| d.value).partition(is_ops_request);
    let mut all = ops.clone();
    for o in &ops {
        let mut other = o.clone();
        let group = if o["apiVersion"].as_str().unwrap().starts_with("apps.") { "operations" } else { "apps" };
        other["apiVersion"] = json!(format!("{group}.kubeblocks.io/v1alpha1"));
        other["metadata"]["name"] = json!(format!("{}-{group}", o["metadata"]["name"].as_str().unwrap()));
        all.push(other);
    }
    (inventory, all)
}

/// `pitrguard validate --output json` on the inventory and these OpsRequests, by (apiVersion, name).
fn native(inventory: &[Value], ops: &[Value], flags: &[&str]) -> BTreeMap<(String, String), Value> {
    let dir = tempfile::tempdir().unwrap();
    for (i, doc) in inventory.iter().chain(ops).enumerate() {
        std::fs::write(dir.path().join(format!("{i:03}.json")), serde_json::to_vec(doc).unwrap()).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pitrguard"))
        .args(["validate", "--output", "json"])
        .args(flags)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 1)), "validate failed: {}", String::from_utf8_lossy(&out.stderr));
    let verdicts: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdicts.len(), ops.len());
    verdicts
        .into_iter()
        .map(|v| ((v["apiVersion"].as_str().unwrap().into(), v["name"].as_str().unwrap().into()), v))
        .collect()
}

fn review(operation: &str, object: &Value, old: Option<&Value>, settings: &Value) -> Value {
    let (group, version) = object["apiVersion"].as_str().unwrap_or("v1").split_once('/').unwrap_or(("", "v1"));
    let gvk = json!({"group": group, "version": version, "kind": kind(object)});
    json!({
        "settings": settings,
        "request": {
            "uid": "7c1b2d9e-0000-4000-8000-000000000001",
            "kind": gvk,
            "resource": {"group": group, "version": version, "resource": "opsrequests"},
            "requestKind": gvk,
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"].as_str().unwrap_or("default"),
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
            "object": if operation == "DELETE" { Value::Null } else { object.clone() },
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": false,
        }
    })
}

/// The module's answer must be the native verdict.
fn assert_same(what: &str, object: &Value, verdict: &Value, result: &Value) {
    assert_eq!(result["ok"], json!(true), "{what}: the guest call failed: {}", result["error"]);
    let resp = &result["response"];
    assert_eq!(resp["accepted"], verdict["allowed"], "{what}: verdict: {resp}");
    if verdict["allowed"] == json!(false) {
        assert_eq!(resp["message"], verdict["message"], "{what}: message");
        assert_eq!(resp["code"], json!(422), "{what}: code");
    }
    let warnings = if resp["warnings"].is_null() { json!([]) } else { resp["warnings"].clone() };
    assert_eq!(warnings, verdict["warnings"], "{what}: warnings");
    let patch: json_patch::Patch = serde_json::from_value(verdict["patch"].clone()).unwrap();
    if patch.0.is_empty() {
        assert!(resp["mutated_object"].is_null(), "{what}: a mutated object without a patch: {resp}");
    } else {
        let mut patched = object.clone();
        json_patch::patch(&mut patched, &patch).unwrap();
        assert_eq!(resp["mutated_object"], patched, "{what}: mutated object != the native patch applied");
    }
    for call in result["host_calls"].as_array().unwrap() {
        if call["operation"] == "list_resources_by_namespace" {
            let selector = call["request"]["label_selector"].as_str().unwrap_or("");
            assert!(!selector.is_empty(), "{what}: listed a whole namespace: {call}");
        }
    }
}

#[test]
fn protocol_and_settings() {
    let module = module();
    let good = [
        json!({}),
        json!({"defaultVolumeRestorePolicy": "Serial", "edgeWarningSeconds": 120, "baseEdge": "inclusive"}),
        json!({"baseEdge": "strict", "edgeWarningSeconds": 0}),
    ];
    let bad = [
        (json!({"defaultVolumeRestorePolicy": "Fast"}), "defaultVolumeRestorePolicy"),
        (json!({"edgeWarningSeconds": -1}), "edgeWarningSeconds"),
        (json!({"edgeWarningSeconds": "60"}), "invalid type"),
        (json!({"baseEdge": "loose"}), "baseEdge"),
        (json!({"edgeWarning": "60s"}), "unknown field `edgeWarning`"),
    ];
    let mut calls = vec![json!({"op": "protocol_version", "payload": null})];
    calls.extend(
        good.iter().chain(bad.iter().map(|(s, _)| s)).map(|s| json!({"op": "validate_settings", "payload": s})),
    );
    let report = run_host(&module, &[], &calls);
    let results = report["results"].as_array().unwrap();
    assert_eq!(results[0]["response"], json!("v1"), "protocol_version: {}", results[0]);
    for (settings, r) in good.iter().zip(&results[1..]) {
        assert_eq!(r["response"], json!({"valid": true, "message": null}), "{settings} should be valid");
    }
    for ((settings, why), r) in bad.iter().zip(&results[1 + good.len()..]) {
        assert_eq!(r["response"]["valid"], json!(false), "{settings} should be refused: {r}");
        let message = r["response"]["message"].as_str().unwrap_or("");
        assert!(message.contains(why), "{settings}: the refusal should say {why:?}: {message}");
    }
}

#[test]
fn every_example_gets_the_native_answer() {
    let module = module();
    let (inventory, ops) = examples();
    assert!(ops.len() >= 10, "found only {} OpsRequests in examples/postgresql", ops.len());
    let started = Instant::now();
    for (settings, flags) in [
        (json!({}), vec![]),
        (
            json!({"defaultVolumeRestorePolicy": "Serial", "edgeWarningSeconds": 3600, "baseEdge": "inclusive"}),
            vec!["--default-volume-restore-policy", "Serial", "--edge-warning", "3600", "--base-edge", "inclusive"],
        ),
    ] {
        let verdicts = native(&inventory, &ops, &flags);
        let calls: Vec<Value> =
            ops.iter().map(|o| json!({"op": "validate", "payload": review("CREATE", o, None, &settings)})).collect();
        let report = run_host(&module, &inventory, &calls);
        let results = report["results"].as_array().unwrap();
        let mut listed = 0;
        for (o, r) in ops.iter().zip(results) {
            let key =
                (o["apiVersion"].as_str().unwrap().to_string(), o["metadata"]["name"].as_str().unwrap().to_string());
            assert_same(&format!("{key:?} with {settings}"), o, &verdicts[&key], r);
            listed += r["host_calls"].as_array().unwrap().iter().filter(|c| c["operation"] != "get_resource").count();
        }
        assert!(listed > 0, "no case listed base candidates: the host capabilities were not exercised");
        let denied = verdicts.values().filter(|v| v["allowed"] == json!(false)).count();
        let patched = verdicts.values().filter(|v| !v["patch"].as_array().unwrap().is_empty()).count();
        let warned = verdicts.values().filter(|v| !v["warnings"].as_array().unwrap().is_empty()).count();
        assert!(
            denied > 0 && patched > 0 && warned > 0,
            "the examples should include denials ({denied}), patches ({patched}) and warnings ({warned})"
        );
        eprintln!(
            "policy_module: {} OpsRequests ({denied} denied, {patched} patched) with settings {settings}: same answers; \
             module compiled in {} ms by wasmtime {}",
            ops.len(),
            report["compile_micros"].as_u64().unwrap() / 1000,
            report["wasmtime"].as_str().unwrap_or("?"),
        );
    }
    eprintln!("policy_module: all examples in {:.1}s", started.elapsed().as_secs_f64());
}

/// DELETE, an UPDATE that leaves the restore alone, and an OpsRequest that is
/// not a Restore are let through untouched, without asking the host.
#[test]
fn what_is_not_judged_passes_untouched_without_host_calls() {
    let module = module();
    let (inventory, ops) = examples();
    let restore = ops.iter().find(|o| o["spec"]["type"] == "Restore").unwrap();
    let mut scale = restore.clone();
    scale["spec"]["type"] = json!("VerticalScaling");
    let mut relabelled = restore.clone();
    relabelled["metadata"]["labels"] = json!({"team": "db"});
    let cases = [
        ("DELETE", Operation::Delete, restore, None),
        ("UPDATE", Operation::Update, &relabelled, Some(restore)),
        ("CREATE", Operation::Create, &scale, None),
    ];
    let calls: Vec<Value> = cases
        .iter()
        .map(|(op, _, o, old)| json!({"op": "validate", "payload": review(op, o, *old, &json!({}))}))
        .collect();
    let report = run_host(&module, &inventory, &calls);
    for ((op, operation, o, old), r) in cases.iter().zip(report["results"].as_array().unwrap()) {
        let object = if *op == "DELETE" { None } else { Some(*o) };
        let d = judge(*operation, object, *old, "demo", &Index::new(), &Policy::default());
        assert!(d.skipped.is_some(), "{op}: the native core judges this");
        assert_eq!(r["response"]["accepted"], json!(true), "{op}: {r}");
        assert!(r["response"]["mutated_object"].is_null() && r["response"]["warnings"].is_null(), "{op}: {r}");
        assert_eq!(r["host_calls"], json!([]), "{op}: asked the host for nothing it needs");
    }
}

/// A host that cannot read the inventory (other than "not found") gets the
/// restore refused with what failed, never judged on a partial inventory.
#[test]
fn a_failing_host_call_refuses_the_restore_and_says_why() {
    let module = module();
    let (inventory, ops) = examples();
    let restore = ops.iter().find(|o| o["metadata"]["name"] == "pg-restore-kbcli").expect("the kbcli example");
    let calls = [json!({"op": "validate", "payload": review("CREATE", restore, None, &json!({}))})];
    for (failing, says) in [
        ("get_resource", "cannot read Cluster \"demo/pg-cluster-kbcli\""),
        ("list_resources_by_namespace", "cannot list Backups in \"demo\""),
    ] {
        let report = run_failing_host(&module, &inventory, &calls, &[failing]);
        let r = &report["results"][0];
        assert_eq!(r["response"]["accepted"], json!(false), "{failing} failing: {r}");
        let message = r["response"]["message"].as_str().unwrap();
        assert!(message.contains(says) && message.contains("Connection refused"), "{failing} failing: {message}");
    }
}
