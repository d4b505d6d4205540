//! Faults under a live pitrguard (issue #13): etcd frozen and killed, the API server killed and
//! restarted, while `pitrguard serve` (live inventory, registered as the webhooks) and the
//! reconciler (`pitrguard reconcile --mode perform`) run, all real processes on the real control
//! plane. What each test asserts and the figures it prints (`FAULTS ...` lines on stderr) are
//! listed in RELIABILITY.md ("Faults: the API server and etcd go away").
//!
//! Every fault hits the one control plane of this test binary, so the tests take turns.
//! Two tests add a second kube-apiserver on the same etcd (a control plane with two API servers):
//! the test's own reads and writes, and the second replica of the reconciler, go through it,
//! so that the data can change while the API server pitrguard talks to is down.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::process::Stopped;
use serde_json::{Value, json};

const OPS: &str = "opsrequests.operations.kubeblocks.io";
const CLUSTERS: &str = "clusters.apps.kubeblocks.io";
/// Generous bound on waiting for a state (a reconnect takes a backoff of up to 30 s).
const LIMIT: Duration = Duration::from_secs(120);

/// Restorable from the start (WAL 10:07:45..10:47:14, a full backup ending 10:20:03).
const T_OK: &str = "2024-05-07T10:30:00Z";
/// 12m46s after the end of the WAL: always denied.
const T_LATE: &str = "2024-05-07T11:00:00Z";
/// The WAL's end after a change: 10:30 is then 5m after it.
const SHRUNK: (&str, &str) = ("2024-05-07T10:07:45Z", "2024-05-07T10:25:00Z");

/// One fault at a time; and the webhook that every test's OpsRequests go through.
fn turn() -> (MutexGuard<'static, ()>, &'static ControlPlane, &'static Webhook) {
    static TURN: Mutex<()> = Mutex::new(());
    static HOOK: OnceLock<Webhook> = OnceLock::new();
    let guard = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let cp = control_plane();
    let hook = HOOK.get_or_init(|| {
        let hook = start_webhook(cp, &[], &[]);
        register_webhooks(cp, &hook);
        hook
    });
    // A test starts on a healthy control plane and a pitrguard that has caught up.
    wait_for(LIMIT, "the API server", || cp.kubectl(&["get", "--raw", "/readyz"], None).status.success());
    wait_for(LIMIT, "pitrguard's watches", || staleness(hook) == 0.0);
    (guard, cp, hook)
}

/// The second API server, started once (after [`turn`] registered the webhooks): (its URL, a
/// kubeconfig for it).
fn second(cp: &'static ControlPlane) -> &'static (String, PathBuf) {
    static SECOND: OnceLock<(String, PathBuf)> = OnceLock::new();
    SECOND.get_or_init(|| {
        let started = Instant::now();
        let two = cp.second_apiserver();
        // It learns the webhook configurations through an informer: wait until it calls pitrguard.
        let k = Kubectl::via(cp, &two.1);
        let ns = namespace(cp, "probe2");
        let probe = ops(OPERATIONS, "probe", "x", "missing", Some(T_OK));
        wait_for(LIMIT, "the second API server to call the webhook", || {
            let out = k.run(&["apply", "--dry-run=server", "-n", &ns, "-f", "-"], Some(&probe));
            String::from_utf8_lossy(&out.stderr).contains("denied the request")
        });
        eprintln!("FAULTS second API server up and calling the webhook in {:.1}s", started.elapsed().as_secs_f64());
        two
    })
}

// === reading pitrguard ===

/// The value of one series (`name` or `name{labels}`) in a /metrics text; 0 when absent.
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ')))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn staleness(hook: &Webhook) -> f64 {
    series(&hook.metrics(), "pitrguard_inventory_staleness_seconds")
}

/// Sends pitrguard's /validate an AdmissionReview for a restore of `pg-wal` in `ns` to `t`, as the
/// API server would; returns the response and how long it took.
fn review(hook: &Webhook, ns: &str, t: &str) -> (Value, Duration) {
    let object: Value = serde_yaml::from_str(&ops(OPERATIONS, "r", "pg-r", "pg-wal", Some(t))).unwrap();
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "faults", "kind": {"group": "operations.kubeblocks.io", "version": "v1alpha1", "kind": "OpsRequest"},
        "resource": {"group": "operations.kubeblocks.io", "version": "v1alpha1", "resource": "opsrequests"},
        "name": "r", "namespace": ns, "operation": "CREATE", "userInfo": {}, "object": object}});
    let started = Instant::now();
    let out = Command::new("curl")
        .args(["-s", "--max-time", "30", "--cacert", hook.certs.join("ca.crt").to_str().unwrap()])
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
    let took = started.elapsed();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("no AdmissionReview: {out:?}"));
    (v["response"].clone(), took)
}

fn allowed(hook: &Webhook, ns: &str, t: &str) -> bool {
    review(hook, ns, t).0["allowed"] == true
}

fn message(response: &Value) -> String {
    response["status"]["message"].as_str().unwrap_or_default().to_string()
}

// === kubectl through one API server or the other ===

struct Kubectl {
    cp: &'static ControlPlane,
    kubeconfig: Option<PathBuf>,
}

impl Kubectl {
    fn one(cp: &'static ControlPlane) -> Self {
        Kubectl { cp, kubeconfig: None }
    }

    fn via(cp: &'static ControlPlane, kubeconfig: &std::path::Path) -> Self {
        Kubectl { cp, kubeconfig: Some(kubeconfig.to_path_buf()) }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut all: Vec<&str> = Vec::new();
        if let Some(k) = &self.kubeconfig {
            all.extend(["--kubeconfig", k.to_str().unwrap()]);
        }
        all.extend(args);
        self.cp.kubectl(&all, stdin)
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// `kubectl apply`: (succeeded, stderr).
    fn apply(&self, ns: &str, manifest: &str, dry_run: bool) -> (bool, String) {
        let mut args = vec!["apply", "-n", ns, "-f", "-"];
        if dry_run {
            args.insert(1, "--dry-run=server");
        }
        let out = self.run(&args, Some(manifest));
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into())
    }

    fn get(&self, ns: &str, resource: &str, name: &str) -> Value {
        let out = self.run(&["get", resource, name, "-n", ns, "-o", "json"], None);
        if out.status.success() { serde_json::from_slice(&out.stdout).unwrap() } else { Value::Null }
    }

    fn phase(&self, ns: &str, name: &str) -> String {
        self.get(ns, OPS, name).pointer("/status/phase").and_then(Value::as_str).unwrap_or_default().to_string()
    }

    fn wait_phase(&self, ns: &str, name: &str, want: &str) -> Value {
        wait_for(LIMIT, &format!("{ns}/{name} to be {want}"), || self.phase(ns, name) == want);
        self.get(ns, OPS, name)
    }

    fn clusters(&self, ns: &str) -> Vec<Value> {
        let list: Value = serde_json::from_str(&self.ok(&["get", CLUSTERS, "-n", ns, "-o", "json"], None)).unwrap();
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// The Clusters that name `ops` as the OpsRequest they were made for.
    fn clusters_of(&self, ns: &str, ops: &Value) -> usize {
        let uid = &ops["metadata"]["uid"];
        self.clusters(ns).iter().filter(|c| &c["metadata"]["annotations"]["pitrguard.io/ops-uid"] == uid).count()
    }

    fn set_wal_range(&self, ns: &str, (start, end): (&str, &str)) {
        let status = json!({"status": {"phase": "Running", "timeRange": {"start": start, "end": end},
            "startTimestamp": start, "completionTimestamp": end}});
        self.ok(
            &["patch", "backup", "pg-wal", "-n", ns, "--subresource=status", "--type=merge", "-p", &status.to_string()],
            None,
        );
    }

    fn set_cluster_phase(&self, ns: &str, name: &str, phase: &str) {
        let patch = json!({"status": {"phase": phase}}).to_string();
        self.ok(&["patch", CLUSTERS, name, "-n", ns, "--subresource=status", "--type=merge", "-p", &patch], None);
    }

    fn events(&self, ns: &str, name: &str, reason: &str) -> usize {
        let list: Value =
            serde_json::from_str(&self.ok(&["get", "events.events.k8s.io", "-n", ns, "-o", "json"], None)).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["regarding"]["name"] == name && e["reason"] == reason)
            .count()
    }

    /// `pg-wal` (Continuous) and `pg-full` (Full) in `ns`, with a Cluster snapshot to restore from.
    fn backups(&self, ns: &str) {
        let snapshot = json!({"apiVersion": "apps.kubeblocks.io/v1", "kind": "Cluster", "metadata": {"name": "pg"},
            "spec": {"terminationPolicy": "Delete",
                "componentSpecs": [{"name": "postgresql", "componentDef": "postgresql-16", "replicas": 1}]}})
        .to_string();
        let annotations = json!({"kubeblocks.io/cluster-snapshot": snapshot});
        story_backups(&|args, stdin| _ = self.ok(args, stdin), ns, "pg", &annotations);
    }
}

/// A Restore OpsRequest to `t`, labelled for this test's reconciler.
fn restore_ops(ns: &str, name: &str, cluster: &str, t: &str) -> String {
    format!(
        "apiVersion: {OPERATIONS}\nkind: OpsRequest\nmetadata:\n  name: {name}\n  labels:\n    pitrguard.io/test: {ns}\nspec:\n  type: Restore\n  clusterName: {cluster}\n  restore:\n    backupName: pg-wal\n    restorePointInTime: \"{t}\"\n"
    )
}

fn condition_message(ops: &Value, ty: &str) -> String {
    ops.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

// === the reconciler process ===

struct Reconciler {
    _child: Stopped,
    admin_port: u16,
    log: PathBuf,
}

impl Reconciler {
    /// `pitrguard reconcile --mode perform` for the OpsRequests of `ns`, with a Lease of 4 s (renewed
    /// 1 s before it runs out) in `ns`; through `kubeconfig`, or the control plane's first API server.
    fn start(cp: &ControlPlane, ns: &str, identity: &str, kubeconfig: Option<&PathBuf>, env: &[(&str, &str)]) -> Self {
        let dir = cp.scratch("reconciler-");
        let admin_port = free_port();
        let (admin, selector) = (format!("127.0.0.1:{admin_port}"), format!("pitrguard.io/test={ns}"));
        let args = [
            "reconcile",
            "--mode",
            "perform",
            "--admin-listen",
            &admin,
            "--reconcile-selector",
            &selector,
            "--lease-namespace",
            ns,
            "--lease-identity",
            identity,
            "--lease-duration",
            "4",
            "--lease-grace",
            "1",
        ];
        let mut all_env = vec![("RUST_LOG", "info"), ("PITRGUARD_LOG_FORMAT", "json")];
        if let Some(k) = kubeconfig {
            all_env.push(("KUBECONFIG", k.to_str().unwrap()));
        }
        all_env.extend(env);
        let child = spawn_pitrguard(cp, &dir, &args, &all_env);
        let r = Reconciler { _child: child, admin_port, log: dir.join("pitrguard.log") };
        wait_for(LIMIT, "pitrguard reconcile /readyz", || http_get(admin_port, "/readyz").0 == 200);
        r
    }

    fn leading(&self) -> bool {
        series(&http_get(self.admin_port, "/metrics").1, "pitrguard_reconcile_leader") == 1.0
    }

    /// How many times it logged `message`.
    fn logged_times(&self, message: &str) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|l| l["message"] == message).count()
    }

    fn logged(&self, message: &str) -> bool {
        self.logged_times(message) > 0
    }
}

const RAN_OUT: &str = "reconciler: the lease ran out without a renewal confirmed by the API server; stopped at once";

// === faults, undone also when a test fails ===

/// etcd frozen (SIGSTOP) or killed (SIGKILL); resumed or restarted on the same data directory by
/// [`EtcdDown::end`], or on drop.
struct EtcdDown {
    cp: &'static ControlPlane,
    killed: Option<Vec<String>>,
    down: bool,
}

impl EtcdDown {
    fn freeze(cp: &'static ControlPlane) -> Self {
        cp.pause_etcd();
        EtcdDown { cp, killed: None, down: true }
    }

    fn kill(cp: &'static ControlPlane) -> Self {
        let args = cp.crash_etcd();
        EtcdDown { cp, killed: Some(args), down: true }
    }

    fn end(&mut self) {
        if std::mem::take(&mut self.down) {
            match &self.killed {
                Some(args) => self.cp.restart_etcd(args),
                None => self.cp.resume_etcd(),
            }
        }
    }
}

impl Drop for EtcdDown {
    fn drop(&mut self) {
        self.end();
    }
}

/// The first API server, killed (SIGKILL); started again by [`ApiServerDown::end`], or on drop.
struct ApiServerDown {
    cp: &'static ControlPlane,
    args: Option<Vec<String>>,
}

impl ApiServerDown {
    fn crash(cp: &'static ControlPlane) -> Self {
        ApiServerDown { cp, args: Some(cp.crash_apiserver()) }
    }

    fn end(&mut self) {
        if let Some(args) = self.args.take() {
            self.cp.restart_apiserver(&args);
        }
    }
}

impl Drop for ApiServerDown {
    fn drop(&mut self) {
        self.end();
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

// === the tests ===

/// etcd goes away twice, frozen and then killed, for as long as it takes the reconciler's lease
/// to run out, while an OpsRequest is half way (its Cluster made, waiting for KubeBlocks).
#[test]
fn etcd_frozen_then_killed_the_webhook_answers_from_its_cache_the_reconciler_stands_down_and_both_catch_up() {
    let (_turn, cp, hook) = turn();
    let k = Kubectl::one(cp);
    let ns = namespace(cp, "etcd");
    k.backups(&ns);
    let r = Reconciler::start(cp, &ns, "etcd-r", None, &[]);
    wait_for(LIMIT, "the lease", || r.leading());
    wait_for(LIMIT, "the backups in the webhook's cache", || allowed(hook, &ns, T_OK));
    let (ok, stderr) = k.apply(&ns, &restore_ops(&ns, "mid", "pg-mid", T_OK), false);
    assert!(ok, "{stderr}");
    let mid = k.wait_phase(&ns, "mid", "Running");

    for (n, how) in ["frozen", "killed"].into_iter().enumerate() {
        let before = hook.metrics();
        let started = Instant::now();
        let mut etcd = if how == "frozen" { EtcdDown::freeze(cp) } else { EtcdDown::kill(cp) };
        // The webhook answers from its cache all along; the reconciler stands down once its lease
        // has run out without a renewal it saw the API server confirm.
        let mut answers = 0;
        wait_for(LIMIT, "the reconciler to stand down", || {
            assert!(allowed(hook, &ns, T_OK), "a restorable time is allowed from the cache");
            answers += 1;
            !r.leading()
        });
        let stood_down = started.elapsed();
        assert_eq!(r.logged_times(RAN_OUT), n + 1, "the reconciler says why it stopped");
        let (denied, took) = review(hook, &ns, T_LATE);
        answers += 1;
        assert_eq!(denied["allowed"], false);
        assert!(message(&denied).contains("12m46s after the end of continuous backup"), "{denied}");
        // Readiness and metrics: ready (the cache is synced and answers), the denial could not be
        // confirmed against the API server and says so, and the reconciler does not lead.
        let during = hook.metrics();
        assert_eq!(http_get(hook.admin_port, "/readyz").0, 200);
        assert_eq!(series(&during, "pitrguard_inventory_ready"), 1.0);
        let errors = |m: &str| series(m, r#"pitrguard_fresh_reads_total{result="error"}"#);
        assert_eq!(errors(&during) - errors(&before), 1.0, "the unconfirmed denial is counted");
        assert!(!r.leading());
        eprintln!(
            "FAULTS etcd {how}: reconciler stood down after {}; {answers} answers from the cache; \
a denial took {} (its fresh read gave up); staleness {}s, watch restarts +{}; readyz {}",
            secs(stood_down),
            secs(took),
            series(&during, "pitrguard_inventory_staleness_seconds"),
            series(&during, "pitrguard_inventory_watch_restarts_total")
                - series(&before, "pitrguard_inventory_watch_restarts_total"),
            http_get(hook.admin_port, "/readyz").0,
        );
        // etcd comes back: the API server answers again and the reconciler leads again by itself.
        let back = Instant::now();
        etcd.end();
        wait_for(LIMIT, "the API server to answer", || cp.kubectl(&["get", "--raw", "/readyz"], None).status.success());
        let answering = back.elapsed();
        wait_for(LIMIT, "the reconciler to lead again", || r.leading());
        eprintln!(
            "FAULTS etcd {how} for {}: back -> API server answers {}, reconciler leads {}",
            secs(back - started),
            secs(answering),
            secs(back.elapsed())
        );
    }

    // Both catch up: the cache sees a change made now (a denial can only come from the cache: fresh
    // reads are made for denials, never for allows), and the restore half way finishes.
    let changed = Instant::now();
    k.set_wal_range(&ns, SHRUNK);
    wait_for(LIMIT, "the change in the webhook's cache", || !allowed(hook, &ns, T_OK));
    eprintln!("FAULTS etcd: a change after the outages reached the cache in {}", secs(changed.elapsed()));
    wait_for(LIMIT, "pitrguard to report no staleness", || staleness(hook) == 0.0);
    k.set_cluster_phase(&ns, "pg-mid", "Running");
    let done = k.wait_phase(&ns, "mid", "Succeed");
    assert_eq!(k.clusters_of(&ns, &mid), 1, "exactly one Cluster for the OpsRequest");
    assert_eq!(done["metadata"]["ownerReferences"].as_array().map(Vec::len), Some(1), "{done}");
}

/// The API server pitrguard talks to is killed; while it is down the data changes through the
/// second API server, and a restore the new data denies is applied there. Once pitrguard has
/// reconnected, no answer allows what the live data denies; before that, an allow from the cache
/// only ever comes with the outage reported; and the reconciler does not perform the restore that
/// was admitted from the stale cache.
#[test]
fn api_server_killed_a_change_made_meanwhile_is_judged_on_live_data_once_pitrguard_has_reconnected() {
    let (_turn, cp, hook) = turn();
    let (_, kubeconfig2) = second(cp);
    let (one, two) = (Kubectl::one(cp), Kubectl::via(cp, kubeconfig2));
    let ns = namespace(cp, "api");
    one.backups(&ns);
    let r = Reconciler::start(cp, &ns, "api-r", None, &[]);
    wait_for(LIMIT, "the lease", || r.leading());
    wait_for(LIMIT, "the backups in the webhook's cache", || allowed(hook, &ns, T_OK));
    // A restore half way when the API server goes: its Cluster made, waiting for KubeBlocks.
    let (ok, stderr) = one.apply(&ns, &restore_ops(&ns, "early", "pg-early", T_OK), false);
    assert!(ok, "{stderr}");
    let early = one.wait_phase(&ns, "early", "Running");

    let crashed = Instant::now();
    let mut api = ApiServerDown::crash(cp);
    wait_for(LIMIT, "pitrguard to report the outage", || staleness(hook) > 0.0);
    let noticed = crashed.elapsed();
    // Meanwhile, through the second API server: the WAL now ends at 10:25, so 10:30 is no longer
    // restorable; KubeBlocks' part of the early restore (its Cluster turns Running).
    two.set_wal_range(&ns, SHRUNK);
    two.set_cluster_phase(&ns, "pg-early", "Running");
    // pitrguard cannot know: its watches are down. It answers from its cache, and says so.
    let s = staleness(hook);
    let (ok, stderr) = two.apply(&ns, &restore_ops(&ns, "late", "pg-late", T_OK), false);
    assert!(ok, "admitted from the cache while the watches are down: {stderr}");
    assert!(s > 0.0 && staleness(hook) > 0.0, "and the outage is reported meanwhile");

    // The API server comes back; requests keep coming. An allow is only ever given while the
    // outage is reported; from the first request after pitrguard reports that it has reconnected,
    // the live data's denial.
    let restart = {
        let args = api.args.take().unwrap();
        std::thread::spawn(move || {
            cp.restart_apiserver(&args);
            Instant::now()
        })
    };
    let (mut stale_allows, mut after) = (0, Vec::new());
    let loop_start = Instant::now();
    while after.len() < 3 {
        assert!(loop_start.elapsed() < LIMIT, "pitrguard did not reconnect within {LIMIT:?}");
        let s = staleness(hook);
        let (answer, _) = review(hook, &ns, T_OK);
        if answer["allowed"] == true {
            assert!(s > 0.0, "an allow the live data denies, with staleness {s} reported before it");
            stale_allows += 1;
        }
        if s == 0.0 {
            let m = message(&answer);
            assert!(m.contains("5m0s after the end of continuous backup \"pg-wal\""), "{answer}");
            after.push(Instant::now());
        }
    }
    let back = restart.join().unwrap();
    let reconnected = after[0].saturating_duration_since(back);
    // Through the API server that came back, at once: denied with the live data's reason.
    let (ok, stderr) = one.apply(&ns, &restore_ops(&ns, "again", "pg-again", T_OK), true);
    assert!(!ok && stderr.contains("5m0s after the end of continuous backup"), "{stderr}");
    eprintln!(
        "FAULTS API server killed: outage reported after {}; {stale_allows} allows from the cache while \
staleness > 0 (the change was made meanwhile through the second API server); back -> first answer \
on live data {}; 0 allows after reconnect (the first request after it was denied)",
        secs(noticed),
        secs(reconnected),
    );

    // The reconciler reconnects too: the half way restore succeeds with one Cluster; the restore
    // admitted from the stale cache is judged again on live data and fails, with no Cluster.
    let done = one.wait_phase(&ns, "early", "Succeed");
    assert_eq!(one.clusters_of(&ns, &early), 1);
    assert_eq!(done["metadata"]["ownerReferences"].as_array().map(Vec::len), Some(1), "{done}");
    let late = one.wait_phase(&ns, "late", "Failed");
    let why = condition_message(&late, "Failed");
    assert!(why.contains("5m0s after the end of continuous backup \"pg-wal\""), "{late}");
    assert_eq!(one.clusters_of(&ns, &late), 0, "no Cluster for the restore the live data denies");
    assert!(stored(cp, &ns, CLUSTERS, "pg-late").is_none());
    eprintln!("FAULTS API server killed: reconciler done in {} after the crash", secs(crashed.elapsed()));
    drop(api);
}

/// Two replicas of the reconciler, each on its own API server. The leader (on the first) has made
/// the Cluster and stops right there (a test hook); then its API server is killed. It stands down
/// by itself when its lease runs out; the other replica takes over through the second API server
/// and finishes the restore with the same Cluster. When the first API server is back, the old
/// leader stays a follower.
#[test]
fn two_replicas_on_two_api_servers_the_cut_off_leader_stands_down_and_the_restore_has_one_cluster() {
    let (_turn, cp, _) = turn();
    let (_, kubeconfig2) = second(cp);
    let two = Kubectl::via(cp, kubeconfig2);
    let ns = namespace(cp, "ha");
    two.backups(&ns);
    let a = Reconciler::start(cp, &ns, "ha-a", None, &[("PITRGUARD_TEST_FREEZE_AFTER", "cluster")]);
    wait_for(LIMIT, "replica a to lead", || a.leading());
    let b = Reconciler::start(cp, &ns, "ha-b", Some(kubeconfig2), &[]);
    let (ok, stderr) = two.apply(&ns, &restore_ops(&ns, "ha", "pg-ha", T_OK), false);
    assert!(ok, "{stderr}");
    wait_for(LIMIT, "replica a to make the Cluster and stop", || {
        a.logged("frozen after this step (PITRGUARD_TEST_FREEZE_AFTER)")
    });
    let ops = two.get(&ns, OPS, "ha");
    assert_eq!(ops["status"]["phase"], "Creating");
    assert_eq!(two.clusters_of(&ns, &ops), 1);
    assert!(!b.leading());

    let crashed = Instant::now();
    let mut api = ApiServerDown::crash(cp);
    wait_for(LIMIT, "replica a to stand down", || !a.leading());
    let stood_down = crashed.elapsed();
    assert!(a.logged(RAN_OUT), "it stopped because its lease ran out unconfirmed");
    wait_for(LIMIT, "replica b to lead", || b.leading());
    let took_over = crashed.elapsed();
    assert!(!a.leading(), "cut off from every API server, replica a does not come back by itself");
    two.wait_phase(&ns, "ha", "Running");
    two.set_cluster_phase(&ns, "pg-ha", "Running");
    let done = two.wait_phase(&ns, "ha", "Succeed");
    let finished = crashed.elapsed();

    api.end();
    // Back on its API server, replica a sees the lease held by b and stays a follower.
    wait_for(LIMIT, "replica a to see the lease held by b", || {
        a.logged("reconciler: the lease is held by another replica")
    });
    assert!(b.leading() && !a.leading());
    assert_eq!(two.clusters_of(&ns, &done), 1, "exactly one Cluster");
    assert_eq!(two.clusters(&ns).len(), 1);
    assert_eq!(done["metadata"]["annotations"]["pitrguard.io/claimed-by"], "ha-a");
    assert_eq!(done["metadata"]["ownerReferences"].as_array().map(Vec::len), Some(1), "{done}");
    assert_eq!(two.events(&ns, "ha", "ClusterCreated"), 1, "one ClusterCreated Event");
    eprintln!(
        "FAULTS two replicas, leader's API server killed: a stood down after {}, b leads after {}, \
restore Succeed after {} (KubeBlocks' part included)",
        secs(stood_down),
        secs(took_over),
        secs(finished)
    );
}
