//! A real control plane for end-to-end tests: etcd + kube-apiserver built from
//! the Go module proxy (tools/testcp), the real KubeBlocks CRDs, the real
//! kubectl, and the real `pitrguard` binary registered as a webhook.
//!
//! One control plane per test binary, started on first use. Nothing here
//! skips: if the control plane cannot start, the test fails with its log.
//! Every process started is stopped by its PID when the test binary exits,
//! also when a test fails: its PID is written into the control plane's
//! directory (`pids/NAME.pid`, `apiserver.pid`), and a watchdog that waits for
//! this process to go away runs `tools/testcp/down.sh`, which stops every one
//! of them and removes the directory, and with it every file the tests made
//! there ([`ControlPlane::scratch`]).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use super::process::{Stopped, after_exit, free_port, wait_for};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct ControlPlane {
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
}

impl ControlPlane {
    /// A new directory inside the control plane's, removed with it.
    pub fn scratch(&self, prefix: &str) -> PathBuf {
        tempfile::Builder::new().prefix(prefix).tempdir_in(&self.dir).unwrap().keep()
    }

    /// Has `down.sh` stop the process `pid` (by that id) with the control plane.
    pub fn track(&self, name: &str, pid: u32) {
        let pids = self.dir.join("pids");
        std::fs::create_dir_all(&pids).unwrap();
        std::fs::write(pids.join(format!("{name}.pid")), pid.to_string()).unwrap();
    }

    pub fn apiserver_pid(&self) -> u32 {
        std::fs::read_to_string(self.dir.join("apiserver.pid")).unwrap().trim().parse().unwrap()
    }

    /// Kills the kube-apiserver (SIGKILL: a crash) and waits until it is gone. Returns its
    /// command line, to start it again with [`Self::restart_apiserver`].
    pub fn crash_apiserver(&self) -> Vec<String> {
        let pid = self.apiserver_pid();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let args =
            cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into()).collect();
        assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
        // Its port is free once every thread has exited (the leader may show as a zombie earlier).
        let port: u16 = self.env["TESTCP_API_URL"].rsplit(':').next().unwrap().parse().unwrap();
        wait_for(Duration::from_secs(10), "the killed API server to release its port", || {
            TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        args
    }

    /// Starts the kube-apiserver again with `args` (same flags, same etcd), tracked as the
    /// control plane's API server, and waits until it answers.
    pub fn restart_apiserver(&self, args: &[String]) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new().append(true).open(self.dir.join("apiserver.log")).unwrap();
        let mut child = Command::new(&args[0])
            .args(&args[1..])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("restart kube-apiserver");
        std::fs::write(self.dir.join("apiserver.pid"), child.id().to_string()).unwrap();
        // Reaped whenever it ends (crashed again by a test, or stopped by down.sh).
        std::thread::spawn(move || child.wait());
        wait_for(Duration::from_secs(120), "the API server to answer again", || {
            self.kubectl(&["get", "--raw", "/readyz"], None).status.success()
        });
    }

    pub fn etcd_pid(&self) -> u32 {
        std::fs::read_to_string(self.dir.join("etcd.pid")).unwrap().trim().parse().unwrap()
    }

    /// Freezes etcd (SIGSTOP): its port stays open, nothing answers. Undone by [`Self::resume_etcd`].
    pub fn pause_etcd(&self) {
        assert!(Command::new("kill").args(["-STOP", &self.etcd_pid().to_string()]).status().unwrap().success());
    }

    pub fn resume_etcd(&self) {
        assert!(Command::new("kill").args(["-CONT", &self.etcd_pid().to_string()]).status().unwrap().success());
    }

    /// Kills etcd (SIGKILL) and waits until its client port is free. Returns its command line, to
    /// start it again on the same data directory with [`Self::restart_etcd`].
    pub fn crash_etcd(&self) -> Vec<String> {
        let pid = self.etcd_pid();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let args =
            cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into()).collect();
        assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
        let port: u16 = self.env["TESTCP_ETCD_URL"].rsplit(':').next().unwrap().parse().unwrap();
        wait_for(Duration::from_secs(10), "the killed etcd to release its port", || {
            TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        args
    }

    /// Starts etcd again with `args` (same ports, same data directory), tracked as the control
    /// plane's etcd, and waits until it is healthy.
    pub fn restart_etcd(&self, args: &[String]) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new().append(true).open(self.dir.join("etcd.log")).unwrap();
        let mut child = Command::new(&args[0])
            .args(&args[1..])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("restart etcd");
        std::fs::write(self.dir.join("etcd.pid"), child.id().to_string()).unwrap();
        std::thread::spawn(move || child.wait());
        let health = format!("{}/health", self.env["TESTCP_ETCD_URL"]);
        wait_for(Duration::from_secs(60), "etcd to be healthy again", || {
            Command::new("curl").args(["-sf", "--max-time", "2", &health]).output().is_ok_and(|o| o.status.success())
        });
    }

    /// Starts a second kube-apiserver on the same etcd (a control plane with two API servers),
    /// stopped with the control plane. Returns its URL and a kubeconfig for it (in the control
    /// plane's directory), once it answers, serves the CRDs and calls the registered webhooks.
    pub fn second_apiserver(&self) -> (String, PathBuf) {
        use std::os::unix::process::CommandExt;
        let pid = self.apiserver_pid();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let port = free_port();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .map(|a| if a.starts_with("--secure-port=") { format!("--secure-port={port}") } else { a })
            .collect();
        let log = std::fs::File::create(self.dir.join("apiserver-2.log")).unwrap();
        let mut child = Command::new(&args[0])
            .args(&args[1..])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start a second kube-apiserver");
        self.track("apiserver-2", child.id());
        std::thread::spawn(move || child.wait());
        let url = format!("https://127.0.0.1:{port}");
        let kubeconfig = self.dir.join("kubeconfig-2");
        let text = std::fs::read_to_string(self.kubeconfig()).unwrap();
        std::fs::write(&kubeconfig, text.replace(&self.env["TESTCP_API_URL"], &url)).unwrap();
        let via = kubeconfig.to_str().unwrap();
        wait_for(Duration::from_secs(120), "the second API server to answer", || {
            self.kubectl(&["--kubeconfig", via, "get", "--raw", "/readyz"], None).status.success()
        });
        wait_for(Duration::from_secs(60), "the second API server to serve the CRDs", || {
            self.kubectl(&["--kubeconfig", via, "get", "backups.dataprotection.kubeblocks.io", "-A"], None)
                .status
                .success()
        });
        (url, kubeconfig)
    }

    pub fn kubeconfig(&self) -> &str {
        &self.env["KUBECONFIG"]
    }

    pub fn kubectl_path(&self) -> &str {
        &self.env["TESTCP_KUBECTL"]
    }

    /// Runs kubectl against the control plane.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(self.kubectl_path());
        cmd.args(args).env("KUBECONFIG", self.kubeconfig()).stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// kubectl that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

static CONTROL_PLANE: OnceLock<ControlPlane> = OnceLock::new();

pub fn control_plane() -> &'static ControlPlane {
    CONTROL_PLANE.get_or_init(|| {
        // Built once per machine, for minutes: its progress goes straight to the terminal.
        let built = Command::new(repo().join("tools/testcp/build.sh"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .expect("run tools/testcp/build.sh");
        assert!(built.success(), "building the test control plane failed (tools/testcp/build.sh, output above)");
        let dir = tempfile::Builder::new().prefix("pitrguard-testcp-").tempdir().unwrap().keep();
        let up = repo().join("tools/testcp/up.sh");
        let down = repo().join("tools/testcp/down.sh");
        after_exit(&format!("{} {}", down.display(), dir.display()));
        let started = Instant::now();
        let out = Command::new(&up).arg(&dir).stdin(Stdio::null()).output().expect("run tools/testcp/up.sh");
        assert!(
            out.status.success(),
            "the test control plane did not start (tools/testcp/up.sh):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("control plane up in {:.1}s", started.elapsed().as_secs_f64());
        let env = std::fs::read_to_string(dir.join("env")).unwrap();
        let env = env
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect();
        ControlPlane { dir, env }
    })
}

/// A unique namespace for one test (namespaces cannot be deleted without a controller-manager).
pub fn namespace(cp: &ControlPlane, prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    cp.kubectl_ok(&["create", "namespace", &name], None);
    name
}

/// A running `pitrguard serve`, registered with the control plane.
pub struct Webhook {
    pub port: u16,
    pub admin_port: u16,
    pub certs: PathBuf,
    pub child: Stopped,
}

impl Webhook {
    pub fn metrics(&self) -> String {
        http_get(self.admin_port, "/metrics").1
    }

    /// How many admission decisions pitrguard has logged for one object (tests share the webhook,
    /// so the metrics' totals are not theirs alone).
    pub fn decisions_for(&self, namespace: &str, name: &str) -> usize {
        let log = std::fs::read_to_string(self.certs.join("pitrguard.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == "admission decision" && v["namespace"] == namespace && v["name"] == name)
            .count()
    }
}

/// Plain HTTP GET on 127.0.0.1 (the admin port); returns (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", &format!("http://127.0.0.1:{port}{path}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Starts `pitrguard serve` in live mode with `extra` arguments and waits for /readyz.
/// Starts the real `pitrguard` with `args` against the control plane, its stderr in
/// `dir/pitrguard.log`. It is stopped by its PID with the control plane, and when the returned
/// guard drops (a process kept in a `static` never drops: the control plane stops it).
pub fn spawn_pitrguard(cp: &ControlPlane, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Stopped {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pitrguard"));
    cmd.args(args)
        .env("KUBECONFIG", cp.kubeconfig())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("pitrguard.log")).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start pitrguard");
    cp.track(dir.file_name().unwrap().to_str().unwrap(), child.id());
    Stopped(child)
}

pub fn start_webhook(cp: &ControlPlane, extra: &[&str], env: &[(&str, &str)]) -> Webhook {
    let certs = cp.scratch("webhook-");
    let status = Command::new(env!("CARGO_BIN_EXE_pitrguard"))
        .args(["certs", "--out", certs.to_str().unwrap(), "--hosts", "127.0.0.1,localhost"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "pitrguard certs failed");
    let (port, admin_port) = (free_port(), free_port());
    let (listen, admin) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{admin_port}"));
    let (cert, key) = (certs.join("tls.crt"), certs.join("tls.key"));
    let mut args = vec!["serve", "--listen", &listen, "--admin-listen", &admin];
    args.extend(["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    args.extend(extra);
    let mut all_env = vec![("RUST_LOG", "info"), ("PITRGUARD_LOG_FORMAT", "json")];
    all_env.extend(env);
    let child = spawn_pitrguard(cp, &certs, &args, &all_env);
    let hook = Webhook { port, admin_port, certs, child };
    wait_for(Duration::from_secs(60), "pitrguard /readyz", || http_get(admin_port, "/readyz").0 == 200);
    hook
}

/// The shipped webhook configurations with `clientConfig` pointed at `hook`.
pub fn webhook_configurations(hook: &Webhook) -> String {
    let ca = std::fs::read_to_string(hook.certs.join("ca-bundle.b64")).unwrap();
    let shipped = std::fs::read_to_string(repo().join("manifests/base/webhooks.yaml")).unwrap();
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&shipped) {
        let mut v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        for w in v["webhooks"].as_array_mut().unwrap() {
            let path = w["clientConfig"]["service"]["path"].as_str().unwrap().to_string();
            w["clientConfig"] =
                serde_json::json!({"url": format!("https://127.0.0.1:{}{path}", hook.port), "caBundle": ca.trim()});
        }
        docs.push(serde_json::to_string(&v).unwrap());
    }
    docs.join("\n---\n")
}

/// Registers the shipped webhook configurations for `hook` and waits until the API server calls it.
pub fn register_webhooks(cp: &ControlPlane, hook: &Webhook) {
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&webhook_configurations(hook)));
    // Webhook configurations reach the admission chain through an informer: wait until it calls us.
    let ns = namespace(cp, "warmup");
    let probe = ops(OPERATIONS, "probe", "x", "missing", Some("2024-05-07T10:30:00Z"));
    wait_for(Duration::from_secs(60), "the webhook to be called", || {
        let out = cp.kubectl(&["apply", "--dry-run=server", "-n", &ns, "-f", "-"], Some(&probe));
        String::from_utf8_lossy(&out.stderr).contains("denied the request")
    });
}

pub fn write_temp(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

// === Objects, as KubeBlocks and kubectl users write them ===

pub const OPERATIONS: &str = "operations.kubeblocks.io/v1alpha1";
pub const APPS: &str = "apps.kubeblocks.io/v1alpha1";

pub fn ops(api: &str, name: &str, cluster: &str, backup: &str, t: Option<&str>) -> String {
    let time = t.map(|t| format!("\n    restorePointInTime: \"{t}\"")).unwrap_or_default();
    format!(
        "apiVersion: {api}\nkind: OpsRequest\nmetadata:\n  name: {name}\nspec:\n  type: Restore\n  clusterName: {cluster}\n  restore:\n    backupName: {backup}{time}\n"
    )
}

/// A Backup of the examples' cluster `pg`, labelled as KubeBlocks labels it. `annotations` carry
/// the Cluster snapshot a restore builds from, and whatever else a test needs.
pub fn backup_manifest(name: &str, ty: &str, annotations: &Value) -> String {
    serde_json::json!({
        "apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup",
        "metadata": {"name": name, "labels": {
            "app.kubernetes.io/instance": "pg", "apps.kubeblocks.io/component-name": "postgresql",
            "dataprotection.kubeblocks.io/cluster-uid": "6f1c6e1d-0000-4000-8000-000000000001",
            "dataprotection.kubeblocks.io/backup-type": ty},
            "annotations": annotations},
        "spec": {"backupPolicyName": "pg-postgresql-backup-policy",
            "backupMethod": if ty == "Continuous" { "archive-wal" } else { "pg-basebackup" }}
    })
    .to_string()
}

/// The kubectl arguments that set a Backup's status through the status subresource, as KubeBlocks does.
fn status_args(ns: &str, name: &str, phase: &str, (start, end): (&str, &str)) -> [String; 9] {
    let status = serde_json::json!({"status": {"phase": phase, "timeRange": {"start": start, "end": end},
        "startTimestamp": start, "completionTimestamp": end}});
    ["patch", "backup", name, "-n", ns, "--subresource=status", "--type=merge", "-p", &status.to_string()]
        .map(String::from)
}

/// Creates a Backup and then sets its status.
pub fn backup(cp: &ControlPlane, ns: &str, name: &str, ty: &str, phase: &str, range: (&str, &str)) {
    let snapshot = r#"{"apiVersion":"apps.kubeblocks.io/v1","kind":"Cluster","metadata":{"name":"pg"}}"#;
    let annotations = serde_json::json!({"kubeblocks.io/cluster-snapshot": snapshot});
    cp.kubectl_ok(&["apply", "-n", ns, "-f", "-"], Some(&backup_manifest(name, ty, &annotations)));
    set_status(cp, ns, name, phase, range);
}

/// The examples' story as live Backups: `{prefix}-wal` (Continuous, Running, 10:07:45..10:47:14)
/// and `{prefix}-full` (Full, Completed, 10:18:40..10:20:03), each with `annotations`, made
/// through `kubectl` (args, stdin), which may point at any API server.
pub fn story_backups(kubectl: &dyn Fn(&[&str], Option<&str>), ns: &str, prefix: &str, annotations: &Value) {
    for (suffix, ty, phase, range) in [
        ("wal", "Continuous", "Running", ("2024-05-07T10:07:45Z", "2024-05-07T10:47:14Z")),
        ("full", "Full", "Completed", ("2024-05-07T10:18:40Z", "2024-05-07T10:20:03Z")),
    ] {
        let name = format!("{prefix}-{suffix}");
        kubectl(&["apply", "-n", ns, "-f", "-"], Some(&backup_manifest(&name, ty, annotations)));
        let args = status_args(ns, &name, phase, range);
        kubectl(&args.each_ref().map(String::as_str), None);
    }
}

pub fn set_status(cp: &ControlPlane, ns: &str, name: &str, phase: &str, range: (&str, &str)) {
    let args = status_args(ns, name, phase, range);
    cp.kubectl_ok(&args.each_ref().map(String::as_str), None);
}

pub fn apply(cp: &ControlPlane, ns: &str, manifest: &str, dry_run: bool) -> (bool, String, String) {
    let mut args = vec!["apply", "-n", ns, "-f", "-"];
    if dry_run {
        args.insert(1, "--dry-run=server");
    }
    let out = cp.kubectl(&args, Some(manifest));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

pub fn stored(cp: &ControlPlane, ns: &str, resource: &str, name: &str) -> Option<Value> {
    let out = cp.kubectl(&["get", resource, name, "-n", ns, "-o", "json"], None);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
}
