//! The built `pitrguard` binary, as CI pipelines run it.

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn pitrguard() -> Command {
    Command::cargo_bin("pitrguard").unwrap()
}

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
const PG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/postgresql");

/// Runs pitrguard, checks its exit code, and parses its stdout as JSON.
fn json_output<S: AsRef<std::ffi::OsStr>>(args: &[S], code: i32) -> Value {
    let out = pitrguard().args(args).assert().code(code).get_output().stdout.clone();
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out)))
}

fn inventory_files() -> Vec<String> {
    ["cluster.yaml", "actionsets.yaml", "backups.yaml"].iter().map(|f| format!("{PG}/{f}")).collect()
}

#[test]
fn validate_the_examples_prints_one_line_per_opsrequest_and_exits_1() {
    let out = pitrguard().args(["validate", EXAMPLES]).assert().code(1).get_output().stdout.clone();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 14, "{text}");
    assert!(text.contains("demo/pg-restore-1030: allowed: restore from backup \"demo/pg-cluster-archive-wal\" to 2024-05-07T10:30:00Z starting from base backup \"pg-cluster-full-1018\""));
    assert!(text.contains(
        "demo/pg-restore-1100: denied: spec.restore.restorePointInTime: 2024-05-07T11:00:00Z is 12m46s after the end"
    ));
    assert!(text.contains("demo/pg-restart: allowed: Restart OpsRequest, not a Restore; not judged"));
}

#[test]
fn all_allowed_exits_0_and_warnings_go_to_stderr() {
    let mut args = vec!["validate".to_string(), format!("{PG}/restores/pitr-kbcli-time.yaml")];
    args.extend(inventory_files());
    pitrguard()
        .args(&args)
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("demo/pg-restore-kbcli: allowed:"))
        .stderr(predicate::str::contains("Warning: demo/pg-restore-kbcli: spec.restore.restorePointInTime: \"May 07,2024 18:40:00 UTC+0800\" was replaced"));
}

#[test]
fn json_output_has_the_spec_fields_and_the_webhook_patch() {
    let mut args = vec![
        "validate".into(),
        "--output".into(),
        "json".into(),
        format!("{PG}/restores/pitr-allowed.yaml"),
        format!("{PG}/restores/pitr-after-end.yaml"),
    ];
    args.extend(inventory_files());
    let v = json_output(&args, 1);
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    for item in arr {
        for key in ["apiVersion", "kind", "namespace", "name", "allowed", "message", "warnings", "patch"] {
            assert!(item.get(key).is_some(), "missing {key} in {item}");
        }
    }
    let allowed = arr.iter().find(|i| i["name"] == "pg-restore-1030").unwrap();
    assert_eq!(allowed["allowed"], true);
    assert_eq!(allowed["apiVersion"], "operations.kubeblocks.io/v1alpha1");
    assert_eq!(
        allowed["patch"],
        serde_json::json!([
            {"op": "add", "path": "/spec/restore/volumeRestorePolicy", "value": "Parallel"},
            {"op": "add", "path": "/metadata/annotations", "value": {"pitrguard.io/base-backup": "pg-cluster-full-1018"}}
        ])
    );
    let denied = arr.iter().find(|i| i["name"] == "pg-restore-1100").unwrap();
    assert_eq!(denied["allowed"], false);
    assert_eq!(denied["patch"], serde_json::json!([]));
    assert_eq!(denied["rules"], serde_json::json!(["R10"]));
}

#[test]
fn stdin_reads_a_kubectl_list() {
    let list = r#"
apiVersion: v1
kind: List
items:
- apiVersion: dataprotection.kubeblocks.io/v1alpha1
  kind: Backup
  metadata: {name: full, namespace: demo, annotations: {kubeblocks.io/cluster-snapshot: "{}"}}
  spec: {backupPolicyName: p, backupMethod: m}
  status: {phase: Completed, startTimestamp: "2024-05-07T10:00:00Z", completionTimestamp: "2024-05-07T10:05:00Z"}
- apiVersion: operations.kubeblocks.io/v1alpha1
  kind: OpsRequest
  metadata: {name: r, namespace: demo}
  spec: {type: Restore, clusterName: new, restore: {backupName: full, volumeRestorePolicy: Serial}}
"#;
    pitrguard()
        .args(["validate", "-"])
        .write_stdin(list)
        .assert()
        .code(0)
        .stdout("demo/r: allowed: restore from backup \"demo/full\"\n");
}

#[test]
fn unreadable_and_malformed_files_exit_2_naming_file_and_document() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: v1\nkind: ConfigMap\n---\nkind: [unclosed\n").unwrap();
    pitrguard()
        .args(["validate", bad.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!("{}: document 2", bad.display())));

    let bad_json = dir.path().join("x.json");
    std::fs::write(&bad_json, "{\"kind\": ").unwrap();
    pitrguard()
        .args(["validate", bad_json.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("x.json: document 1"));

    let wrong_type = dir.path().join("backup.yaml");
    std::fs::write(
        &wrong_type,
        "apiVersion: dataprotection.kubeblocks.io/v1alpha1\nkind: Backup\nmetadata: {name: b}\nstatus: {phase: [1]}\n",
    )
    .unwrap();
    pitrguard()
        .args(["validate", wrong_type.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("backup.yaml: document 1: invalid Backup"));

    pitrguard()
        .args(["validate", "/nonexistent/pitrguard/input.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/pitrguard/input.yaml"));

    let binary = dir.path().join("blob.yaml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    pitrguard()
        .args(["validate", binary.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not UTF-8"));
}

#[test]
fn windows_prints_the_restorable_window() {
    pitrguard()
        .args(["windows", EXAMPLES])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("demo/pg-cluster-archive-wal (cluster pg-cluster, Running)"))
        .stdout(predicate::str::contains(
            "restorable window:  2024-05-07T10:20:04Z .. 2024-05-07T10:47:14Z (strict base edge)",
        ))
        .stdout(predicate::str::contains(
            "excluded seconds:   2024-05-07T10:36:30Z (base backup pg-cluster-full-1034 completed in it)",
        ))
        .stdout(predicate::str::contains(
            "pg-cluster-full-1018 (ended 2024-05-07T10:20:03Z), pg-cluster-full-1034 (ended 2024-05-07T10:36:30Z)",
        ));
    let v = json_output(&["windows", "-o", "json", "--cluster", "pg-cluster", EXAMPLES], 0);
    assert_eq!(
        v[0]["restorableWindow"],
        serde_json::json!({"start": "2024-05-07T10:20:04Z", "end": "2024-05-07T10:47:14Z"})
    );
    assert_eq!(v[0]["logRange"]["start"], "2024-05-07T10:07:45Z");
    assert_eq!(v[0]["baseEdge"], "strict");
    assert_eq!(
        v[0]["excludedSeconds"],
        serde_json::json!([{"second": "2024-05-07T10:36:30Z", "baseBackup": "pg-cluster-full-1034"}])
    );
    assert_eq!(json_output(&["windows", "-o", "json", "--cluster", "other", EXAMPLES], 0), serde_json::json!([]));
}

#[test]
fn base_edge_inclusive_is_kubeblocks_reading_in_validate_and_windows() {
    let restore = format!("{PG}/restores/pitr-base-completion-second.yaml");
    let mut args = vec!["validate".to_string(), "-o".into(), "json".into(), restore];
    args.extend(inventory_files());
    let strict = json_output(&args, 1);
    assert_eq!(strict[0]["rules"], serde_json::json!(["R13"]));
    assert!(
        strict[0]["message"].as_str().unwrap().contains(
            "nearest restorable times: 2024-05-07T10:36:29Z (from base backup \"pg-cluster-full-1018\") or \
             2024-05-07T10:36:31Z"
        ),
        "{strict}"
    );
    args.insert(1, "--base-edge=inclusive".into());
    let inclusive = json_output(&args, 0);
    assert_eq!(inclusive[0]["allowed"], true);
    assert_eq!(inclusive[0]["patch"][1]["value"]["pitrguard.io/base-backup"], "pg-cluster-full-1034");

    let out = pitrguard().args(["windows", "-o", "json", EXAMPLES]).env("PITRGUARD_BASE_EDGE", "inclusive").output();
    let v: Value = serde_json::from_slice(&out.unwrap().stdout).unwrap();
    assert_eq!(
        v[0]["restorableWindow"],
        serde_json::json!({"start": "2024-05-07T10:20:03Z", "end": "2024-05-07T10:47:14Z"})
    );
    assert_eq!(v[0]["excludedSeconds"], serde_json::json!([]));
    pitrguard()
        .args(["windows", "--base-edge", "loose", EXAMPLES])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("possible values: strict, inclusive"));
}

#[test]
fn flags_can_come_from_the_environment() {
    let mut args = vec!["validate".to_string(), format!("{PG}/restores/pitr-allowed.yaml")];
    args.extend(inventory_files());
    let out = pitrguard()
        .args(&args)
        .env("PITRGUARD_OUTPUT", "json")
        .env("PITRGUARD_DEFAULT_VOLUME_RESTORE_POLICY", "Serial")
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0]["patch"][0]["value"], "Serial");
}

#[test]
fn usage_errors_exit_2_and_help_explains_exit_codes() {
    pitrguard().args(["validate"]).assert().code(2);
    pitrguard().args(["validate", "--output", "xml", EXAMPLES]).assert().code(2);
    pitrguard().args(["--help"]).assert().code(0).stdout(predicate::str::contains("Exit codes"));
}

#[test]
fn certs_refuses_a_host_that_is_not_a_dns_name_or_ip_address() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    for (bad, why) in [
        ("bad host", "' ' is not allowed"),
        ("-pitrguard.svc", "label \"-pitrguard\" starts or ends with '-'"),
        ("pitrguard..svc", "label \"\" must have 1 to 63 characters"),
        ("pitrguard_webhook.svc", "'_' is not allowed"),
    ] {
        pitrguard()
            .args(["certs", "--out", out.to_str().unwrap(), "--hosts", &format!("localhost,{bad}")])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!("--hosts: \"{bad}\" is not a DNS name or IP address: {why}")));
        assert!(!out.exists(), "{bad}: nothing is written");
    }
    pitrguard()
        .args(["certs", "--out", out.to_str().unwrap(), "--hosts", "*.pitrguard-system.svc,::1,10.0.0.7,localhost."])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("valid for: *.pitrguard-system.svc, ::1, 10.0.0.7, localhost."));
}

#[test]
fn validate_reads_each_file_once_whatever_the_paths_and_symlinks() {
    let once = pitrguard().args(["validate", EXAMPLES]).assert().code(1).get_output().stdout.clone();
    let twice = pitrguard().args(["validate", EXAMPLES, PG, &format!("{PG}/restores")]).assert().code(1);
    assert_eq!(String::from_utf8_lossy(&twice.get_output().stdout), String::from_utf8_lossy(&once));

    // loop/self -> ../loop, loop/again -> the same file, and a link to the examples.
    let dir = tempfile::tempdir().unwrap();
    let lp = dir.path().join("loop");
    std::fs::create_dir(&lp).unwrap();
    std::os::unix::fs::symlink("../loop", lp.join("self")).unwrap();
    std::os::unix::fs::symlink(PG, lp.join("examples")).unwrap();
    std::os::unix::fs::symlink(format!("{PG}/restores/pitr-allowed.yaml"), lp.join("again.yaml")).unwrap();
    let out = pitrguard().args(["validate", lp.to_str().unwrap()]).assert().code(1).get_output().stdout.clone();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 14, "{text}");
    assert_eq!(text.matches("demo/pg-restore-1030:").count(), 1, "{text}");
}

#[test]
fn help_shows_the_paths_as_required() {
    pitrguard()
        .args(["validate", "--help"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Usage: pitrguard validate [OPTIONS] <PATHS>..."));
    pitrguard().args(["windows", "--help"]).assert().code(0).stdout(predicate::str::contains(
        "Usage: pitrguard windows [OPTIONS] <PATHS>...\n       pitrguard windows [OPTIONS] --live",
    ));
    pitrguard().args(["validate"]).assert().code(2).stderr(predicate::str::contains("<PATHS>..."));
}

#[test]
fn live_against_an_unreachable_api_server_says_so_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // closed again
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: far, cluster: {{server: \"https://127.0.0.1:{port}\"}}}}]\n\
             users: [{{name: u, user: {{token: x}}}}]\ncontexts: [{{name: far-ctx, context: {{cluster: far, user: u}}}}]\n\
             current-context: far-ctx\n"
        ),
    )
    .unwrap();
    for args in [&["windows", "--live"][..], &["validate", "--live", PG][..]] {
        let out = pitrguard().args(args).env("KUBECONFIG", &kubeconfig).env_remove("RUST_LOG").assert().code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert_eq!(
            stderr,
            format!(
                "pitrguard: --live: cannot list Backups from https://127.0.0.1:{port}/ (kubeconfig context \"far-ctx\"): \
                 Connection refused (os error 111)\n"
            ),
            "{args:?}"
        );
    }
    pitrguard()
        .args(["windows", "--live"])
        .env("KUBECONFIG", dir.path().join("missing"))
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with("pitrguard: --live: cannot read the kubeconfig KUBECONFIG="));
}
