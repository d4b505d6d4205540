//! `--policy-module`: the rules' WebAssembly build run by pitrguard itself, in
//! wasmtime through `wapc` + `wasmtime-provider`, with its Kubewarden host
//! calls answered from pitrguard's inventory.
//!
//! - In process: the module and the native core give the same [`Answer`]
//!   (verdict, message, warnings by id, patch, broken rules) on every example,
//!   every admission fixture and thousands of generated requests, under two
//!   different policies.
//! - The real binary: `validate --policy-module` prints what `validate` prints;
//!   `serve --policy-module` over TLS answers every review as `serve` does; the
//!   module is swapped under load without a failed request; a corrupt module is
//!   refused and the old one kept; a module that loops, traps or asks for too
//!   much memory gets a denial that says so, and the server stays up.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use pitrguard::admission::{Answer, decide, parse_review};
use pitrguard::core::{BaseEdge, Index, Inventory, Policy};
use pitrguard::policy_module::{Limits, PolicyModule, answer::to_answer};
use serde_json::{Value, json};

mod common;

use common::https::Https;
use common::process::{Stopped, wait_for};
use common::{APPS, OPERATIONS, admin_get as get, admin_metric as metric, review};

fn examples() -> PathBuf {
    common::examples()
}

fn example_index() -> Index {
    pitrguard::load::build_index(&pitrguard::load::read_documents(&[examples()]).unwrap()).unwrap()
}

fn other_policy() -> Policy {
    Policy {
        default_volume_restore_policy: "Serial".into(),
        edge_warning: chrono::TimeDelta::seconds(3600),
        base_edge: BaseEdge::Inclusive,
    }
}

/// The native answer and the module's for one AdmissionReview.
fn both(review: &Value, index: &Arc<Index>, policy: &Policy, module: &PolicyModule) -> (Answer, Answer) {
    let body = serde_json::to_vec(review).unwrap();
    let req = parse_review(&body).expect("a well-formed review");
    let native = Answer::from(&decide(&req, index.as_ref(), policy));
    let request = review["request"].clone();
    let object = request.get("object").filter(|o| !o.is_null()).cloned();
    let module = match module.validate_blocking(request, index.clone()) {
        Ok(a) => to_answer(object.as_ref(), a),
        Err(e) => panic!("the module failed on {review}: {e}"),
    };
    (native, module)
}

// ---------------------------------------------------------------------------
// generated requests: a small deterministic generator, so a failure reproduces

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// A point in time near the edges that matter (every backup's start and end), in every layout.
fn point_in_time(rng: &mut Rng, edges: &[chrono::DateTime<chrono::Utc>]) -> Value {
    use chrono::{FixedOffset, TimeDelta};
    let offsets = [0i64, 1, -1, 59, 60, 61, -60, 3599, -3600, 86_400];
    let (first, last) = (edges[0], edges[edges.len() - 1]);
    let t = if rng.chance(50) {
        // anywhere between the first and the last edge
        first + TimeDelta::seconds(rng.below((last - first).num_seconds() as usize + 1) as i64)
    } else {
        *rng.pick(edges) + TimeDelta::seconds(*rng.pick(&offsets))
    };
    let east8 = FixedOffset::east_opt(8 * 3600).unwrap();
    match rng.below(12) {
        0 | 9 | 10 | 11 => json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        1 => json!(t.with_timezone(&east8).format("%Y-%m-%dT%H:%M:%S%:z").to_string()),
        2 => json!(t.format("%Y-%m-%dT%H:%M:%S.250Z").to_string()),
        3 => json!(t.with_timezone(&east8).format("%b %d,%Y %H:%M:%S UTC+0800").to_string()),
        4 => json!(t.format("%Y-%m-%d %H:%M:%S").to_string()),
        5 => json!(""),
        6 => json!(t.timestamp()),
        7 => json!(t.format("%Y-%m-%dt%H:%M:%Sz").to_string()),
        _ => json!(t.format("%Y-%m-%dT%H:%M:%S.123456789+00:00").to_string()),
    }
}

fn generated_review(rng: &mut Rng, backups: &[String], edges: &[chrono::DateTime<chrono::Utc>]) -> Value {
    let api = *rng.pick(&[OPERATIONS, APPS]);
    let mut names: Vec<&str> = backups.iter().map(String::as_str).collect();
    names.extend(["no-such-backup", ""]);
    let mut restore = serde_json::Map::new();
    if rng.chance(50) {
        restore.insert("backupName".into(), json!(backups.iter().find(|b| b.contains("wal")).unwrap()));
    } else if !rng.chance(10) {
        restore.insert("backupName".into(), json!(rng.pick(&names)));
    }
    if rng.chance(70) {
        restore.insert("restorePointInTime".into(), point_in_time(rng, edges));
    }
    if let Some(p) = rng.pick(&[None, None, Some(""), Some("Serial"), Some("Parallel"), Some("Later")]) {
        restore.insert("volumeRestorePolicy".into(), json!(p));
    }
    if rng.chance(10) {
        restore.insert("backupNamespace".into(), json!(rng.pick(&["demo", "elsewhere"])));
    }
    let field = if rng.chance(15) { "restoreSpec" } else { "restore" };
    let kind_type = *rng.pick(&["Restore", "Restore", "Restore", "Restore", "Restore", "Restart", ""]);
    let cluster = if rng.chance(85) { "pg-restored" } else { *rng.pick(&["pg-cluster", ""]) };
    let mut object = json!({
        "apiVersion": api, "kind": "OpsRequest",
        "metadata": {"name": "r", "namespace": "demo"},
        "spec": {"type": kind_type, "clusterName": cluster, field: Value::Object(restore)},
    });
    match rng.below(6) {
        0 => object["metadata"]["annotations"] = json!({"pitrguard.io/base-backup": "pg-cluster-full-1018"}),
        1 => object["metadata"]["annotations"] = json!({"team": "db"}),
        2 => object["metadata"]["annotations"] = Value::Null,
        _ => {}
    }
    if rng.chance(3) {
        object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "r", "namespace": "demo"}});
    }
    let operation =
        *rng.pick(&["CREATE", "CREATE", "CREATE", "CREATE", "CREATE", "UPDATE", "UPDATE", "DELETE", "CONNECT"]);
    let old = match operation {
        "UPDATE" if rng.chance(50) => object.clone(),
        "UPDATE" => {
            let mut old = object.clone();
            old["spec"]["clusterName"] = json!("before");
            old
        }
        _ => Value::Null,
    };
    let (object, old) = if operation == "DELETE" { (Value::Null, object) } else { (object, old) };
    let mut r = review(operation, object, old);
    if rng.chance(3) {
        r["request"]["subResource"] = json!("status");
    }
    r
}

/// Every review the differential test judges: the examples, the admission fixtures, and `generated`.
fn reviews(index: &Index, generated: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for doc in pitrguard::load::read_documents(&[examples()]).unwrap() {
        if doc.value.get("kind").and_then(Value::as_str) == Some("OpsRequest") {
            out.push(review("CREATE", doc.value.clone(), Value::Null));
            out.push(review("UPDATE", doc.value.clone(), doc.value.clone()));
            out.push(review("DELETE", Value::Null, doc.value.clone()));
        }
    }
    for fixture in ["review-allowed.json", "review-denied.json"] {
        let text = std::fs::read_to_string(examples().join("admission").join(fixture)).unwrap();
        out.push(serde_json::from_str(&text).unwrap());
    }
    let mut backups = Vec::new();
    let mut edges = Vec::new();
    index.for_each_backup_in("demo", &mut |b| {
        backups.push(b.name.to_string());
        edges.extend(b.start.into_iter().chain(b.end));
    });
    backups.sort();
    edges.sort();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    out.extend((0..generated).map(|_| generated_review(&mut rng, &backups, &edges)));
    out
}

#[test]
fn the_module_answers_as_the_native_core_on_every_input() {
    let index = Arc::new(example_index());
    let cases = reviews(&index, 3000);
    for policy in [Policy::default(), other_policy()] {
        let module = PolicyModule::load(&common::wasm::module(), &policy, Limits::default(), 2, None).unwrap();
        let (mut allowed, mut denied, mut patched, mut warned) = (0, 0, 0, 0);
        let mut by_rule = std::collections::BTreeMap::<&str, usize>::new();
        for review in &cases {
            let (native, wasm) = both(review, &index, &policy, &module);
            assert_eq!(wasm, native, "policy {policy:?}, review {review}");
            allowed += usize::from(native.allowed && !native.skipped);
            denied += usize::from(!native.allowed);
            patched += usize::from(!native.patch.0.is_empty());
            warned += usize::from(!native.warnings.is_empty());
            *by_rule.entry(native.rule_label()).or_default() += 1;
        }
        // The generated cases reach every kind of answer, not only one.
        eprintln!(
            "{} reviews: {allowed} allowed, {denied} denied, {patched} patched, {warned} warned; {by_rule:?}",
            cases.len()
        );
        for (what, n, least) in
            [("allowed", allowed, 100), ("denied", denied, 500), ("patched", patched, 100), ("warned", warned, 30)]
        {
            assert!(n >= least, "only {n} reviews {what} under {policy:?}");
        }
    }
}

/// Host calls are answered from whatever inventory is given: an empty one makes the module deny.
#[test]
fn host_calls_read_the_inventory_given() {
    let policy = Policy::default();
    let module = PolicyModule::load(&common::wasm::module(), &policy, Limits::default(), 1, None).unwrap();
    let r = review("CREATE", common::pitr(OPERATIONS, "2024-05-07T10:40:00Z"), Value::Null);
    let (native, wasm) = both(&r, &Arc::new(example_index()), &policy, &module);
    assert!(native.allowed && wasm == native);
    let (native, wasm) = both(&r, &Arc::new(Index::new()), &policy, &module);
    assert!(!native.allowed && wasm == native, "{wasm:?}");
    assert!(wasm.message.contains("pg-cluster-archive-wal"), "{}", wasm.message);
}

// ---------------------------------------------------------------------------
// the real binary

fn pitrguard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pitrguard"))
}

#[test]
fn validate_through_the_module_prints_what_validate_prints() {
    let module = common::wasm::module();
    for output in ["text", "json"] {
        for flags in [&[][..], &["--default-volume-restore-policy", "Serial", "--base-edge", "inclusive"][..]] {
            let run = |with_module: bool| {
                let mut cmd = pitrguard();
                cmd.args(["validate", "--output", output]).args(flags).arg(examples());
                if with_module {
                    cmd.arg("--policy-module").arg(&module);
                }
                cmd.output().unwrap()
            };
            let (native, wasm) = (run(false), run(true));
            assert_eq!(native.status.code(), Some(1), "the examples include denials");
            assert_eq!(wasm.status.code(), native.status.code());
            assert_eq!(String::from_utf8_lossy(&wasm.stdout), String::from_utf8_lossy(&native.stdout));
            assert_eq!(String::from_utf8_lossy(&wasm.stderr), String::from_utf8_lossy(&native.stderr));
        }
    }
}

#[test]
fn a_module_that_cannot_be_used_stops_validate_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.wasm");
    std::fs::write(&corrupt, b"\0asm\x01\0\0\0garbage").unwrap();
    let out = pitrguard().arg("validate").arg(examples()).arg("--policy-module").arg(&corrupt).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--policy-module") && err.contains("cannot compile"), "{err}");
    let out = pitrguard().arg("validate").arg(examples()).args(["--policy-module", "/no/such.wasm"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such.wasm"));
}

/// A waPC guest written by hand: it speaks the policy ABI (so it loads), and on
/// `validate` does `behaviour`: loop forever, trap, or grow its memory to 128 MiB.
fn misbehaving_module(behaviour: &str) -> String {
    let validate = match behaviour {
        "loop" => "(loop $forever (br $forever))",
        "trap" => "unreachable",
        "memory" => "(if (i32.eq (memory.grow (i32.const 2048)) (i32.const -1)) (then unreachable))",
        _ => unreachable!(),
    };
    format!(
        r#"(module
  (import "wapc" "__guest_request" (func $request (param i32 i32)))
  (import "wapc" "__guest_response" (func $response (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\"v1\"")
  (data (i32.const 16) "{{\"valid\":true}}")
  (data (i32.const 64) "{{\"accepted\":true}}")
  (func (export "wapc_init"))
  (func (export "__guest_call") (param $op i32) (param $msg i32) (result i32)
    (local $at i32)
    ;; room for the operation and the message, at the end of memory
    (local.set $at (i32.mul (memory.grow (i32.add (i32.shr_u (i32.add (local.get $op) (local.get $msg)) (i32.const 16)) (i32.const 1))) (i32.const 65536)))
    (call $request (local.get $at) (i32.add (local.get $at) (local.get $op)))
    (if (i32.eq (local.get $op) (i32.const 16)) (then (call $response (i32.const 0) (i32.const 4)) (return (i32.const 1))))
    (if (i32.eq (local.get $op) (i32.const 17)) (then (call $response (i32.const 16) (i32.const 14)) (return (i32.const 1))))
    {validate}
    (call $response (i32.const 64) (i32.const 17))
    (i32.const 1)))"#
    )
}

/// The module's bytes with a custom section added: another file (another sha256), the same rules.
fn same_rules_other_bytes(module: &[u8], n: u8) -> Vec<u8> {
    let name = b"pitrguard-test";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.push(n);
    let mut out = module.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8);
    out.extend(section);
    out
}

/// `pitrguard serve` on the examples with dev certificates in `dir`: the process, its webhook and admin ports,
/// once it is ready.
fn serve(dir: &Path, extra: &[&std::ffi::OsStr]) -> (Stopped, u16, u16) {
    let (mut server, port, admin) = common::serve_examples(&dir.join("certs"), extra);
    wait_for(Duration::from_secs(120), "pitrguard serve to be ready", || {
        if let Some(status) = server.try_wait().unwrap() {
            panic!("pitrguard serve exited: {status}");
        }
        get(admin, "/readyz").is_some_and(|(code, _)| code == 200)
    });
    (server, port, admin)
}

/// An HTTPS connection to `port`, trusting the dev CA that `serve` wrote under `dir`.
fn client(dir: &Path, port: u16) -> Https {
    Https::connect(port, &dir.join("certs/ca.crt"))
}

/// The parts of an AdmissionReview response a user sees; the patch decoded.
fn seen(response: &Value) -> Value {
    use base64::Engine;
    let r = &response["response"];
    let patch = r["patch"].as_str().map(|p| {
        serde_json::from_slice::<Value>(&base64::engine::general_purpose::STANDARD.decode(p).unwrap()).unwrap()
    });
    json!({"uid": r["uid"], "allowed": r["allowed"], "status": r["status"], "warnings": r["warnings"], "patch": patch})
}

#[test]
fn serve_through_the_module_answers_as_serve_over_tls() {
    let module = common::wasm::module();
    let dir = tempfile::tempdir().unwrap();
    let (_native, native_port, _) = serve(&dir.path().join("n"), &[]);
    let (_wasm, wasm_port, wasm_admin) =
        serve(&dir.path().join("w"), &["--policy-module".as_ref(), module.as_os_str()]);
    let mut native_client = client(&dir.path().join("n"), native_port);
    let mut wasm_client = client(&dir.path().join("w"), wasm_port);
    let index = example_index();
    let mut sent = 0;
    for review in reviews(&index, 300) {
        for endpoint in ["validate", "mutate"] {
            let n = native_client.post(&format!("/{endpoint}"), &review).unwrap();
            let w = wasm_client.post(&format!("/{endpoint}"), &review).unwrap();
            assert_eq!((w.0, seen(&w.1)), (n.0, seen(&n.1)), "/{endpoint} of {review}");
            sent += 1;
        }
    }
    assert_eq!(metric(wasm_admin, "pitrguard_policy_module_evaluations_total{result=\"ok\"}"), sent as f64);
}

#[test]
fn the_module_is_swapped_under_load_without_a_failed_request_and_a_corrupt_one_is_refused() {
    let original = std::fs::read(common::wasm::module()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.wasm");
    std::fs::write(&path, &original).unwrap();
    let (_server, port, admin) = serve(dir.path(), &["--policy-module".as_ref(), path.as_os_str()]);
    let denied = review("CREATE", common::pitr(OPERATIONS, "2024-05-07T11:00:00Z"), Value::Null);
    let allowed = review("CREATE", common::pitr(OPERATIONS, "2024-05-07T10:40:00Z"), Value::Null);

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (stop, answered, dir) = (stop.clone(), answered.clone(), dir.path().to_owned());
            let (denied, allowed) = (denied.clone(), allowed.clone());
            std::thread::spawn(move || {
                let mut client = client(&dir, port);
                while !stop.load(Ordering::Relaxed) {
                    for (review, want) in [(&denied, false), (&allowed, true)] {
                        let (status, body) = client.post("/validate", review).expect("every request is answered");
                        assert_eq!(status, 200);
                        assert_eq!(body["response"]["allowed"], want, "{body}");
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let loaded = |n: f64| metric(admin, "pitrguard_policy_module_reloads_total{result=\"loaded\"}") >= n;
    for n in 1..=3u8 {
        let next = same_rules_other_bytes(&original, n);
        let sha = pitrguard_sha256(&next);
        // Written beside and renamed into place, as a ConfigMap or an image update does.
        std::fs::write(dir.path().join("next.wasm"), &next).unwrap();
        std::fs::rename(dir.path().join("next.wasm"), &path).unwrap();
        wait_for(Duration::from_secs(120), "the new module in use", || loaded(f64::from(n)));
        assert_eq!(metric(admin, &format!("pitrguard_policy_module_info{{sha256=\"{sha}\"}}")), 1.0);
    }
    // A corrupt file is refused; the module in use stays, and answers.
    let in_use = pitrguard_sha256(&same_rules_other_bytes(&original, 3));
    std::fs::write(&path, b"\0asm\x01\0\0\0 not a module").unwrap();
    wait_for(Duration::from_secs(60), "the corrupt module refused", || {
        metric(admin, "pitrguard_policy_module_reloads_total{result=\"refused\"}") >= 1.0
    });
    let before = answered.load(Ordering::Relaxed);
    wait_for(Duration::from_secs(60), "answers after the refusal", || answered.load(Ordering::Relaxed) > before + 10);
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("no request failed");
    }
    assert_eq!(metric(admin, &format!("pitrguard_policy_module_info{{sha256=\"{in_use}\"}}")), 1.0);
    assert_eq!(metric(admin, "pitrguard_policy_module_reloads_total{result=\"loaded\"}"), 3.0);
    assert_eq!(metric(admin, "pitrguard_policy_module_evaluations_total{result=\"trap\"}"), 0.0);
}

fn pitrguard_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_module_that_loops_traps_or_grows_is_denied_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.wasm");
    std::fs::write(&path, misbehaving_module("loop")).unwrap();
    let args: [&std::ffi::OsStr; 6] = [
        "--policy-module".as_ref(),
        path.as_os_str(),
        "--policy-module-deadline".as_ref(),
        "200".as_ref(),
        "--policy-module-memory".as_ref(),
        "64".as_ref(),
    ];
    let (_server, port, admin) = serve(dir.path(), &args);
    let mut c = client(dir.path(), port);
    let r = review("CREATE", common::pitr(OPERATIONS, "2024-05-07T10:40:00Z"), Value::Null);
    let mut reloads = 0.0;
    for (behaviour, says) in [("loop", "exceeded its deadline of 200ms"), ("trap", "failed"), ("memory", "failed")] {
        if behaviour != "loop" {
            std::fs::write(dir.path().join("next.wasm"), misbehaving_module(behaviour)).unwrap();
            std::fs::rename(dir.path().join("next.wasm"), &path).unwrap();
            reloads += 1.0;
            wait_for(Duration::from_secs(60), "the next module in use", || {
                metric(admin, "pitrguard_policy_module_reloads_total{result=\"loaded\"}") >= reloads
            });
            // The server closes a keep-alive connection idle for longer than its header timeout
            // (5 s), which a slow reload can exceed.
            c = client(dir.path(), port);
        }
        for endpoint in ["validate", "mutate", "validate"] {
            let (status, body) = c.post(&format!("/{endpoint}"), &r).unwrap();
            let response = &body["response"];
            assert_eq!((status, &response["allowed"]), (200, &json!(false)), "{behaviour}: {body}");
            assert_eq!(response["status"]["code"], 500, "{body}");
            let message = response["status"]["message"].as_str().unwrap();
            assert!(message.contains(says), "{behaviour}: {message}");
        }
        assert_eq!(get(admin, "/healthz").map(|(c, _)| c), Some(200));
    }
    assert_eq!(metric(admin, "pitrguard_policy_module_evaluations_total{result=\"deadline\"}"), 3.0);
    assert_eq!(metric(admin, "pitrguard_policy_module_evaluations_total{result=\"trap\"}"), 6.0);
    // The real module again: the server answers as before.
    std::fs::copy(common::wasm::module(), dir.path().join("next.wasm")).unwrap();
    std::fs::rename(dir.path().join("next.wasm"), &path).unwrap();
    wait_for(Duration::from_secs(120), "the real module in use", || {
        metric(admin, "pitrguard_policy_module_reloads_total{result=\"loaded\"}") >= reloads + 1.0
    });
    let (_, body) = client(dir.path(), port).post("/validate", &r).unwrap();
    assert_eq!(body["response"]["allowed"], true, "{body}");
}
