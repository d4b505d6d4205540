//! Sustained load on the real `pitrguard serve` (issue #13): HTTPS AdmissionReviews over
//! HTTP/1.1 and HTTP/2 for `PITRGUARD_SOAK_SECS` seconds (default 60; `hack/soak.sh` runs it
//! for minutes), against a live inventory on the real control plane (tools/testcp), judged
//! through `--policy-module` for the whole run, while
//!
//! - the serving certificate is rotated every [`ROTATE_EVERY`]: a new key pair signed by the
//!   same CA, swapped in as the kubelet swaps a Secret volume (`..data` symlink); after each
//!   rotation a new handshake must present the new leaf;
//! - Backups change, one step about every [`CHANGE_PAUSE`]: continuous time ranges grow, full
//!   backups are created and deleted, whole lineages are deleted and created again;
//! - the policy module file is swapped every [`SWAP_EVERY`] between two copies (same rules,
//!   other bytes, so another sha256), and once for a broken file, which must be refused while
//!   the module in use keeps answering.
//!
//! Asserted: every request gets HTTP 200 and an AdmissionReview, and every answer is the one
//! the core gives (`admission::decide`, i.e. `core::judge_json`, and `admission::respond`:
//! the whole response, message, warnings and patch included) on the inventory the request
//! was judged against. The server's RSS is sampled every second; the start (after warm-up),
//! end and peak are printed (`soak:` lines) and only a gross bound is asserted (see
//! [`assert_memory`]). At the end the server gets SIGTERM and must exit 0 having logged one
//! decision per request sent.
//!
//! # Why the verdict check is exact
//!
//! The webhook judges from a cache fed by a watch, and re-reads the namespace's Backups from
//! the API server for a denial that fresher Backups could overturn (R3, R4, R9, R10, R11;
//! src/admission/pipeline.rs). So what a request is judged against depends on when the
//! watch delivers a change. The test never guesses that moment; it knows it:
//!
//! 1. Each lineage (a continuous backup and its full backups, with their own
//!    `cluster-uid` label) lives in a namespace of its own. Every rule reads only the
//!    request's namespace (the source backup, the lineage's bases by label, no Cluster
//!    exists), so a lineage's answers depend on its own Backups alone. Each lineage is a
//!    [`Slot`] with a phase: `Settled(state)`, `Changing([states])` or `Frozen`.
//! 2. One task makes every change, one lineage at a time. Before writing, it marks the
//!    slot `Changing` with every state the lineage passes through (before, after and each
//!    state in between), then waits until no request that was sent while the slot was
//!    `Settled` is still in flight. A lineage that is deleted and created again is `Frozen`
//!    instead: no request is sent to it during that step.
//! 3. After its writes it moves a *beacon*: a continuous backup in a namespace of its own
//!    whose end grows by one hour per step. The server watches Backups in all namespaces
//!    (no `--namespace`): one watch, in resourceVersion order, so once the cache has the
//!    beacon's step k it has every write made before it. The probe tells which step the
//!    cache has, from the cache alone: a restore of the beacon at `end(k-1) - 30s` is allowed
//!    with warning W3 ("30s before the end ...") while the cache has step k-1 (it has at
//!    least that: the previous step waited for it) and allowed without W3 from step k on. An
//!    allowed answer is never re-read from the API server, so the probe sees the cache, and
//!    the cache never goes back (a re-list replaces it with a newer list).
//! 4. Only then is the slot `Settled(new state)` again.
//!
//! Hence a request sent while a slot is `Settled(s)` is judged against exactly `s`, by the
//! cache and by a fresh read alike (nothing changes that namespace meanwhile), and its whole
//! response must equal the core's on `s`. A request sent while a slot is `Changing` may be
//! judged against any state of the step (the cache or the fresh read may be at any of them);
//! its response must equal the core's on one of them. Every `Changing` step changes one
//! Backup object at a time (a status patch, a create then its status, a delete), so even the
//! policy module, which reads the inventory once per host call, sees one of those states:
//! its only object read twice is the source backup, and its own `get` overrides the copy
//! in the lineage list.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use pitrguard::admission::{Answer, Endpoint, decide, parse_review, respond, review_body};
use pitrguard::core::{BackupFacts, Index, Policy};
use serde_json::{Value, json};

use common::cluster::{ControlPlane, Stopped, control_plane, namespace, spawn_pitrguard, wait_for};
use common::load::{Conn, H1, H2, H2_H1, client_config, rss_kib};
use common::{admin_get as get, admin_metric as metric};

const ROTATE_EVERY: Duration = Duration::from_secs(3);
const SWAP_EVERY: Duration = Duration::from_secs(7);
const CHANGE_PAUSE: Duration = Duration::from_millis(500);
/// Lineages (namespaces) under load.
const LINEAGES: usize = 4;
/// Bound on one request, and on each "eventually" of the test.
const REQUEST_BOUND: Duration = Duration::from_secs(30);
const EVENTUALLY: Duration = Duration::from_secs(90);
/// 2024-05-07T00:00:00Z: every Backup time is an offset in seconds from it.
const BASE: i64 = 1_715_040_000;

fn soak_secs() -> u64 {
    std::env::var("PITRGUARD_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60)
}

fn time(offset: i64) -> String {
    chrono::DateTime::from_timestamp(BASE + offset, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

// ---------------------------------------------------------------------------
// Backups and lineages

#[derive(Clone, Debug)]
struct BackupState {
    name: String,
    continuous: bool,
    /// (start, end) offsets; `None` before its status is written.
    range: Option<(i64, i64)>,
}

#[derive(Clone, Debug)]
struct Lineage {
    ns: String,
    generation: u32,
    wal: BackupState,
    fulls: Vec<BackupState>,
    next_full: u32,
}

impl Lineage {
    fn new(ns: &str, generation: u32) -> Lineage {
        let mut l = Lineage {
            ns: ns.to_string(),
            generation,
            wal: BackupState { name: format!("wal-g{generation}"), continuous: true, range: Some((0, 3600)) },
            fulls: vec![],
            next_full: 0,
        };
        for end in [600, 1800] {
            let full = l.full_ending(end);
            l.fulls.push(full);
        }
        l
    }

    /// A new Completed full backup of this lineage that ended at `end`.
    fn full_ending(&mut self, end: i64) -> BackupState {
        self.next_full += 1;
        BackupState {
            name: format!("full-g{}-{}", self.generation, self.next_full),
            continuous: false,
            range: Some((end - 90, end)),
        }
    }

    fn all(&self) -> impl Iterator<Item = &BackupState> {
        std::iter::once(&self.wal).chain(&self.fulls)
    }

    /// The Backup object as KubeBlocks writes it (status included when set).
    fn object(&self, b: &BackupState) -> Value {
        let snapshot = r#"{"apiVersion":"apps.kubeblocks.io/v1","kind":"Cluster","metadata":{"name":"pg"}}"#;
        let mut o = json!({
            "apiVersion": "dataprotection.kubeblocks.io/v1alpha1",
            "kind": "Backup",
            "metadata": {
                "name": b.name,
                "namespace": self.ns,
                "labels": {
                    "app.kubernetes.io/instance": "pg",
                    "apps.kubeblocks.io/component-name": "postgresql",
                    "dataprotection.kubeblocks.io/cluster-uid": format!("{}-g{}", self.ns, self.generation),
                    "dataprotection.kubeblocks.io/backup-type": if b.continuous { "Continuous" } else { "Full" },
                },
                "annotations": {"kubeblocks.io/cluster-snapshot": snapshot},
            },
            "spec": {
                "backupPolicyName": "pg-postgresql-backup-policy",
                "backupMethod": if b.continuous { "archive-wal" } else { "pg-basebackup" },
            },
        });
        if let Some(status) = status(b) {
            o["status"] = status;
        }
        o
    }

    /// The core's inventory of this lineage, from the same objects.
    fn index(&self) -> Index {
        let mut index = Index::new();
        for b in self.all() {
            let backup: pitrguard::crd::backup::Backup = serde_json::from_value(self.object(b)).unwrap();
            index.apply_backup(BackupFacts::from_backup(&backup, &self.ns));
        }
        index
    }
}

fn status(b: &BackupState) -> Option<Value> {
    let (start, end) = b.range?;
    Some(json!({
        "phase": if b.continuous { "Running" } else { "Completed" },
        "timeRange": {"start": time(start), "end": time(end)},
        "startTimestamp": time(start),
        "completionTimestamp": time(end),
    }))
}

/// Writes Backups to the API server (kube-rs: a kubectl process per write would cost more
/// than the change).
struct Writer {
    client: kube::Client,
    writes: AtomicUsize,
}

impl Writer {
    async fn new(cp: &ControlPlane) -> Writer {
        let kubeconfig = kube::config::Kubeconfig::read_from(cp.kubeconfig()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
        Writer { client: kube::Client::try_from(config).unwrap(), writes: AtomicUsize::new(0) }
    }

    fn api(&self, ns: &str) -> kube::Api<kube::api::DynamicObject> {
        let gvk = kube::api::GroupVersionKind::gvk("dataprotection.kubeblocks.io", "v1alpha1", "Backup");
        kube::Api::namespaced_with(self.client.clone(), ns, &kube::api::ApiResource::from_gvk(&gvk))
    }

    /// Creates the Backup without its status (the API server drops it on create).
    async fn create(&self, l: &Lineage, b: &BackupState) {
        let mut object = l.object(b);
        object.as_object_mut().unwrap().remove("status");
        let object: kube::api::DynamicObject = serde_json::from_value(object).unwrap();
        self.api(&l.ns).create(&Default::default(), &object).await.unwrap();
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes the status through the status subresource, as KubeBlocks does.
    async fn set_status(&self, l: &Lineage, b: &BackupState) {
        let patch = kube::api::Patch::Merge(json!({"status": status(b).unwrap()}));
        self.api(&l.ns).patch_status(&b.name, &Default::default(), &patch).await.unwrap();
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    async fn delete(&self, l: &Lineage, b: &BackupState) {
        self.api(&l.ns).delete(&b.name, &Default::default()).await.unwrap();
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    async fn create_all(&self, l: &Lineage) {
        for b in l.all() {
            self.create(l, b).await;
            self.set_status(l, b).await;
        }
    }
}

// ---------------------------------------------------------------------------
// what requests may be judged against

struct State {
    lineage: Lineage,
    index: Index,
}

impl State {
    fn new(lineage: Lineage) -> Arc<State> {
        let index = lineage.index();
        Arc::new(State { lineage, index })
    }
}

enum Phase {
    Settled(Arc<State>),
    Changing(Vec<Arc<State>>),
    Frozen,
}

struct Slot {
    phase: Mutex<Phase>,
    /// Requests sent while the slot was `Settled` and not answered yet.
    settled_in_flight: AtomicUsize,
}

/// What a worker may send to a slot now.
enum Target {
    /// The guard counts the request in flight until it is dropped.
    Settled {
        state: Arc<State>,
        _in_flight: SettledGuard,
    },
    Changing(Vec<Arc<State>>),
}

struct SettledGuard(Arc<Slot>);

impl Drop for SettledGuard {
    fn drop(&mut self) {
        self.0.settled_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slot {
    fn new(state: Arc<State>) -> Arc<Slot> {
        Arc::new(Slot { phase: Mutex::new(Phase::Settled(state)), settled_in_flight: AtomicUsize::new(0) })
    }

    fn target(self: &Arc<Slot>) -> Option<Target> {
        let phase = self.phase.lock().unwrap();
        match &*phase {
            Phase::Settled(s) => {
                self.settled_in_flight.fetch_add(1, Ordering::AcqRel);
                Some(Target::Settled { state: s.clone(), _in_flight: SettledGuard(self.clone()) })
            }
            Phase::Changing(states) => Some(Target::Changing(states.clone())),
            Phase::Frozen => None,
        }
    }

    /// Leaves `Settled` for `next`, once no request sent while it was settled is in flight.
    async fn leave_settled(&self, next: Phase) {
        {
            let mut phase = self.phase.lock().unwrap();
            assert!(matches!(std::mem::replace(&mut *phase, next), Phase::Settled(_)), "not settled");
        }
        let start = Instant::now();
        while self.settled_in_flight.load(Ordering::Acquire) != 0 {
            assert!(start.elapsed() < EVENTUALLY, "the requests of a settled lineage did not finish");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn settle(&self, state: Arc<State>) {
        *self.phase.lock().unwrap() = Phase::Settled(state);
    }
}

// ---------------------------------------------------------------------------
// requests and the checker

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
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A point in time near what matters in `l`: the edges of every range, W3's minute, R13's second.
fn point_in_time(rng: &mut Rng, l: &Lineage) -> String {
    let (start, end) = l.wal.range.unwrap();
    let mut edges = vec![start, end, end - 30, end - 60, end - 61];
    edges.extend(l.fulls.iter().filter_map(|f| f.range).flat_map(|(s, e)| [s, e]));
    let offset = if rng.chance(40) {
        start - 600 + rng.below((end - start + 1200) as usize) as i64
    } else {
        rng.pick(&edges) + *rng.pick(&[-1i64, 0, 0, 1, 2])
    };
    let t = chrono::DateTime::from_timestamp(BASE + offset, 0).unwrap();
    match rng.below(10) {
        0 => t
            .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        1 => t.format("%Y-%m-%dT%H:%M:%S.250Z").to_string(),
        2 => "yesterday".to_string(),
        _ => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }
}

/// A Restore (or, rarely, another OpsRequest) of lineage `l`, as an AdmissionReview.
fn review(rng: &mut Rng, l: &Lineage, uid: &str) -> Value {
    let api = *rng.pick(&["operations.kubeblocks.io/v1alpha1", "apps.kubeblocks.io/v1alpha1"]);
    let backup = match rng.below(20) {
        0 => "no-such-backup".to_string(),
        1 | 2 => rng.pick(&l.fulls).name.clone(),
        _ => l.wal.name.clone(),
    };
    let mut restore = json!({"backupName": backup});
    if !rng.chance(8) {
        restore["restorePointInTime"] = json!(point_in_time(rng, l));
    }
    if let Some(p) = rng.pick(&[None, None, None, Some("Serial"), Some("Parallel"), Some("Later")]) {
        restore["volumeRestorePolicy"] = json!(p);
    }
    let ops_type = if rng.chance(3) { "Restart" } else { "Restore" };
    let object = json!({
        "apiVersion": api, "kind": "OpsRequest",
        "metadata": {"name": "r", "namespace": l.ns},
        "spec": {"type": ops_type, "clusterName": "pg-restored", "restore": restore},
    });
    let (operation, old) = if rng.chance(10) {
        let mut old = object.clone();
        old["spec"]["clusterName"] = json!(if rng.chance(50) { "pg-restored" } else { "before" });
        ("UPDATE", old)
    } else {
        ("CREATE", Value::Null)
    };
    let (group, version) = api.split_once('/').unwrap();
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": "OpsRequest"},
            "resource": {"group": group, "version": version, "resource": "opsrequests"},
            "name": "r", "namespace": l.ns, "operation": operation,
            "userInfo": {"username": "soak"},
            "object": object, "oldObject": old, "dryRun": false,
        }
    })
}

/// The core's whole response to `body` on `index`.
fn expected(endpoint: Endpoint, body: &[u8], index: &Index) -> Value {
    let req = parse_review(body).expect("the test sends well-formed reviews");
    let answer = Answer::from(&decide(&req, index, &Policy::default()));
    serde_json::from_slice(&review_body(&respond(endpoint, &req, &answer))).unwrap()
}

fn path(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Validate => "/validate",
        Endpoint::Mutate => "/mutate",
    }
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    settled: AtomicU64,
    in_window: AtomicU64,
    probes: AtomicU64,
    allowed: AtomicU64,
    denied: AtomicU64,
    patched: AtomicU64,
    h2: AtomicU64,
    new_connections: AtomicU64,
    failures: Mutex<Vec<String>>,
    wrong: Mutex<Vec<String>>,
    failed: AtomicU64,
    wrong_verdicts: AtomicU64,
    leaves_seen: Mutex<HashSet<Vec<u8>>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut f = self.failures.lock().unwrap();
        if f.len() < 10 {
            f.push(what);
        }
    }

    fn wrong(&self, what: String) {
        self.wrong_verdicts.fetch_add(1, Ordering::Relaxed);
        let mut w = self.wrong.lock().unwrap();
        if w.len() < 5 {
            w.push(what);
        }
    }

    /// Checks one answer: HTTP 200, an AdmissionReview, and one of the `candidates`.
    fn check(&self, sent: &Value, status: StatusCode, body: &[u8], candidates: &[Value]) -> bool {
        if status != StatusCode::OK {
            self.fail(format!("status {status}: {}", String::from_utf8_lossy(body)));
            return false;
        }
        let Ok(got) = serde_json::from_slice::<Value>(body) else {
            self.fail(format!("not JSON: {}", String::from_utf8_lossy(body)));
            return false;
        };
        if got["kind"] != "AdmissionReview" || got["response"]["uid"] != sent["request"]["uid"] {
            self.fail(format!("not the AdmissionReview for {}: {got}", sent["request"]["uid"]));
            return false;
        }
        if !candidates.contains(&got) {
            self.wrong(format!("request {sent}\n  got      {got}\n  expected {}", candidates[0]));
            return false;
        }
        let r = &got["response"];
        if r["allowed"] == true { &self.allowed } else { &self.denied }.fetch_add(1, Ordering::Relaxed);
        if r.get("patch").is_some() {
            self.patched.fetch_add(1, Ordering::Relaxed);
        }
        true
    }
}

// ---------------------------------------------------------------------------
// load

struct Shared {
    port: u16,
    ca_pem: Vec<u8>,
    slots: Vec<Arc<Slot>>,
    tally: Tally,
    stop: AtomicBool,
}

#[derive(Clone, Copy)]
enum Shape {
    /// One connection for the whole run (reconnects only after a failure).
    KeepAlive,
    /// A new connection (full handshake) per request.
    NewConnections,
}

/// One load worker: sends until stopped, checking every answer.
async fn worker(shared: Arc<Shared>, id: usize, conn: Option<Conn>, shape: Shape, alpn: &'static [&'static [u8]]) {
    let config = client_config(&shared.ca_pem, alpn);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0x1000_0000_01B3));
    let mut conn = conn;
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let slot = &shared.slots[rng.below(shared.slots.len())];
        let Some(target) = slot.target() else { continue };
        let (candidates_states, settled) = match &target {
            Target::Settled { state, .. } => (vec![state.clone()], true),
            Target::Changing(states) => (states.clone(), false),
        };
        n += 1;
        let lineage = &rng.pick(&candidates_states).lineage.clone();
        let sent = review(&mut rng, lineage, &format!("soak-{id}-{n}"));
        let endpoint = if rng.chance(50) { Endpoint::Validate } else { Endpoint::Mutate };
        let body = Bytes::from(serde_json::to_vec(&sent).unwrap());
        if conn.is_none() || matches!(shape, Shape::NewConnections) {
            shared.tally.new_connections.fetch_add(1, Ordering::Relaxed);
            match tokio::time::timeout(REQUEST_BOUND, Conn::connect(shared.port, &config)).await {
                Ok(Ok(c)) => {
                    shared.tally.leaves_seen.lock().unwrap().insert(c.leaf.clone());
                    conn = Some(c);
                }
                Ok(Err(e)) => {
                    shared.tally.fail(format!("worker {id}: connect: {e:#}"));
                    continue;
                }
                Err(_) => {
                    shared.tally.fail(format!("worker {id}: connect timed out"));
                    continue;
                }
            }
        }
        let c = conn.as_mut().unwrap();
        let h2 = c.is_h2();
        shared.tally.sent.fetch_add(1, Ordering::Relaxed);
        let result = tokio::time::timeout(REQUEST_BOUND, c.post(path(endpoint), body.clone())).await;
        // Judged after the answer: the slot's states cannot have changed for a settled request.
        let candidates: Vec<Value> = candidates_states.iter().map(|s| expected(endpoint, &body, &s.index)).collect();
        drop(target);
        match result {
            Ok(Ok((status, answer))) => {
                if shared.tally.check(&sent, status, &answer, &candidates) {
                    if settled { &shared.tally.settled } else { &shared.tally.in_window }
                        .fetch_add(1, Ordering::Relaxed);
                    if h2 {
                        shared.tally.h2.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(Err(e)) => {
                shared.tally.fail(format!("worker {id}: {e:#}"));
                conn = None;
            }
            Err(_) => {
                shared.tally.fail(format!("worker {id}: no answer within {REQUEST_BOUND:?}"));
                conn = None;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// certificates

struct Pki {
    ca: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
    ca_pem: String,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, "pitrguard soak CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        Pki { ca, ca_key, ca_pem }
    }

    /// A new serving key pair and certificate: (certificate PEM, key PEM, leaf DER).
    fn leaf(&self) -> (String, String, Vec<u8>) {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, "localhost");
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = leaf.signed_by(&key, &Issuer::from_params(&self.ca, &self.ca_key)).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

/// A Kubernetes Secret volume in `dir`: `tls.crt -> ..data/tls.crt`, `..data -> ..vN`.
struct SecretVolume {
    dir: PathBuf,
    version: usize,
}

impl SecretVolume {
    fn new(dir: &Path, cert: &str, key: &str) -> SecretVolume {
        std::fs::create_dir_all(dir).unwrap();
        let v = SecretVolume { dir: dir.to_owned(), version: 0 };
        v.write_version(cert, key);
        std::os::unix::fs::symlink("..v0", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", dir.join("tls.key")).unwrap();
        v
    }

    fn write_version(&self, cert: &str, key: &str) {
        let data = self.dir.join(format!("..v{}", self.version));
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("tls.crt"), cert).unwrap();
        std::fs::write(data.join("tls.key"), key).unwrap();
    }

    /// What the kubelet does on a Secret update: a new directory, `..data_tmp` pointing at it
    /// renamed over `..data` (atomic), the old directory removed.
    fn swap(&mut self, cert: &str, key: &str) {
        let old = self.version;
        self.version += 1;
        self.write_version(cert, key);
        std::os::unix::fs::symlink(format!("..v{}", self.version), self.dir.join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        std::fs::remove_dir_all(self.dir.join(format!("..v{old}"))).unwrap();
    }
}

// ---------------------------------------------------------------------------
// the policy module

/// The module's bytes with a custom section added: another file (another sha256), the same rules.
fn same_rules_other_bytes(module: &[u8], n: u8) -> Vec<u8> {
    let name = b"pitrguard-soak";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.push(n);
    let mut out = module.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8);
    out.extend(section);
    out
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes beside `path` and renames into place, as a ConfigMap or image update does.
fn put(path: &Path, bytes: &[u8]) {
    let next = path.with_extension("next");
    std::fs::write(&next, bytes).unwrap();
    std::fs::rename(&next, path).unwrap();
}

// ---------------------------------------------------------------------------
// the beacon: which step of the changes the webhook's cache has

struct Beacon {
    lineage: Lineage,
    step: i64,
    ca_pem: Vec<u8>,
    port: u16,
}

impl Beacon {
    fn end(step: i64) -> i64 {
        3600 * (step + 1)
    }

    fn lineage_at(&self, step: i64) -> Lineage {
        let mut l = self.lineage.clone();
        l.wal.range = Some((0, Self::end(step)));
        l
    }

    /// Moves the beacon one step and waits until the webhook's cache has that step.
    async fn advance(&mut self, writer: &Writer, tally: &Tally) {
        self.step += 1;
        let now = self.lineage_at(self.step);
        writer.set_status(&now, &now.wal).await;
        let t = time(Self::end(self.step - 1) - 30);
        let object = json!({
            "apiVersion": "operations.kubeblocks.io/v1alpha1", "kind": "OpsRequest",
            "metadata": {"name": "probe", "namespace": now.ns},
            "spec": {"type": "Restore", "clusterName": "pg-restored",
                     "restore": {"backupName": now.wal.name, "restorePointInTime": t}},
        });
        let before = expected_probe(&self.lineage_at(self.step - 1), &object);
        let after = expected_probe(&now, &object);
        assert!(before["response"]["warnings"].is_array() && after["response"].get("warnings").is_none());
        let start = Instant::now();
        let config = client_config(&self.ca_pem, H1);
        loop {
            let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
                "uid": format!("probe-{}", self.step),
                "kind": {"group": "operations.kubeblocks.io", "version": "v1alpha1", "kind": "OpsRequest"},
                "resource": {"group": "operations.kubeblocks.io", "version": "v1alpha1", "resource": "opsrequests"},
                "name": "probe", "namespace": now.ns, "operation": "CREATE", "userInfo": {}, "object": object}});
            tally.probes.fetch_add(1, Ordering::Relaxed);
            // A new connection each time: it also sees the certificate in use now.
            let answer = async {
                let mut conn = Conn::connect(self.port, &config).await?;
                conn.post("/validate", Bytes::from(review.to_string())).await
            };
            let (status, body) = match tokio::time::timeout(REQUEST_BOUND, answer).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    tally.fail(format!("beacon probe: {e:#}"));
                    return;
                }
                Err(_) => {
                    tally.fail("beacon probe: no answer".into());
                    return;
                }
            };
            let got: Value = serde_json::from_slice(&body).unwrap_or_default();
            if status != StatusCode::OK {
                tally.fail(format!("beacon probe: HTTP {status} {got}"));
                return;
            } else if got == with_uid(&after, &review) {
                return;
            } else if got != with_uid(&before, &review) {
                tally.wrong(format!("beacon probe {review}: {got}"));
                return;
            }
            assert!(start.elapsed() < EVENTUALLY, "the webhook's cache did not see beacon step {}", self.step);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn expected_probe(l: &Lineage, object: &Value) -> Value {
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "x", "kind": {"group": "operations.kubeblocks.io", "version": "v1alpha1", "kind": "OpsRequest"},
        "resource": {"group": "operations.kubeblocks.io", "version": "v1alpha1", "resource": "opsrequests"},
        "name": "probe", "namespace": l.ns, "operation": "CREATE", "userInfo": {}, "object": object}});
    expected(Endpoint::Validate, &serde_json::to_vec(&review).unwrap(), &l.index())
}

fn with_uid(expected: &Value, review: &Value) -> Value {
    let mut e = expected.clone();
    e["response"]["uid"] = review["request"]["uid"].clone();
    e
}

// ---------------------------------------------------------------------------
// the changes

#[derive(Clone, Copy, Debug)]
enum Change {
    Grow,
    AddFull,
    DeleteFull,
    Recreate,
}

/// Step k changes lineage k % 4 with `CHANGES[k % 5]`: each lineage goes through them from
/// the end to the start (Grow, AddFull, Grow, DeleteFull, Recreate, ...).
const CHANGES: [Change; 5] = [Change::Recreate, Change::DeleteFull, Change::Grow, Change::AddFull, Change::Grow];

/// Makes one change to the lineage of `slot` (see the module docs), then settles it. Returns
/// the change made (a full backup is deleted only while the lineage has two or more; else the
/// lineage is created again).
async fn change(slot: &Slot, kind: Change, writer: &Writer, beacon: &mut Beacon, tally: &Tally) -> Change {
    let current = match &*slot.phase.lock().unwrap() {
        Phase::Settled(s) => s.lineage.clone(),
        _ => unreachable!("one change at a time"),
    };
    let mut next = current.clone();
    let (made, settled) = match kind {
        Change::Grow => {
            let (start, end) = next.wal.range.unwrap();
            next.wal.range = Some((start, end + 600));
            slot.leave_settled(Phase::Changing(vec![State::new(current.clone()), State::new(next.clone())])).await;
            writer.set_status(&next, &next.wal).await;
            (kind, State::new(next))
        }
        Change::AddFull => {
            let end = next.wal.range.unwrap().1 - 300;
            let full = next.full_ending(end);
            let mut created = next.clone();
            created.fulls.push(BackupState { range: None, ..full.clone() });
            next.fulls.push(full.clone());
            let states = vec![State::new(current.clone()), State::new(created.clone()), State::new(next.clone())];
            slot.leave_settled(Phase::Changing(states)).await;
            writer.create(&next, &full).await;
            writer.set_status(&next, &full).await;
            (kind, State::new(next))
        }
        Change::DeleteFull if next.fulls.len() >= 2 => {
            let gone = next.fulls.remove(0);
            slot.leave_settled(Phase::Changing(vec![State::new(current.clone()), State::new(next.clone())])).await;
            writer.delete(&current, &gone).await;
            (kind, State::new(next))
        }
        Change::DeleteFull | Change::Recreate => {
            slot.leave_settled(Phase::Frozen).await;
            for b in current.fulls.iter().chain([&current.wal]) {
                writer.delete(&current, b).await;
            }
            let next = Lineage::new(&current.ns, current.generation + 1);
            writer.create_all(&next).await;
            (Change::Recreate, State::new(next))
        }
    };
    beacon.advance(writer, tally).await;
    slot.settle(settled);
    made
}

// ---------------------------------------------------------------------------
// memory

/// A leak proportional to the requests would more than double the warmed-up RSS over a run
/// of this length; allocator noise and module swaps (each compiles a module; the old one is
/// dropped) do not come close. Only this gross bound is asserted; the figures are printed.
fn assert_memory(start_kib: u64, end_kib: u64) {
    let bound = start_kib * 2 + 64 * 1024;
    assert!(end_kib <= bound, "RSS grew from {start_kib} KiB to {end_kib} KiB (bound {bound} KiB)");
}

// ---------------------------------------------------------------------------
// the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_load_with_rotations_backup_changes_and_module_swaps() {
    let secs = soak_secs();
    let run_for = Duration::from_secs(secs);
    let cp = control_plane();
    let dir = cp.scratch("soak-");

    // The lineages and the beacon, in namespaces of their own.
    let writer = Writer::new(cp).await;
    let mut lineages = Vec::new();
    for _ in 0..LINEAGES {
        let l = Lineage::new(&namespace(cp, "soak"), 0);
        writer.create_all(&l).await;
        lineages.push(l);
    }
    let beacon_lineage = Lineage::new(&namespace(cp, "soak-beacon"), 0);
    writer.create_all(&beacon_lineage).await;

    // Certificates: a CA for the whole run, a new key pair per rotation.
    let pki = Pki::new();
    let (cert, key, first_leaf) = pki.leaf();
    let tls_dir = dir.join("tls");
    let mut volume = SecretVolume::new(&tls_dir, &cert, &key);

    // The policy module: two copies with other bytes, swapped into one path.
    let original = std::fs::read(common::wasm::module()).unwrap();
    let module_path = dir.join("policy.wasm");
    let variants = [same_rules_other_bytes(&original, 1), same_rules_other_bytes(&original, 2)];
    std::fs::write(&module_path, &variants[0]).unwrap();

    let (port, admin) = (common::process::free_port(), common::process::free_port());
    let (listen, admin_listen) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{admin}"));
    let (cert_arg, key_arg) = (tls_dir.join("tls.crt"), tls_dir.join("tls.key"));
    let args = [
        "serve",
        "--listen",
        &listen,
        "--admin-listen",
        &admin_listen,
        "--tls-cert",
        cert_arg.to_str().unwrap(),
        "--tls-key",
        key_arg.to_str().unwrap(),
        "--policy-module",
        module_path.to_str().unwrap(),
    ];
    let mut server: Stopped =
        spawn_pitrguard(cp, &dir, &args, &[("RUST_LOG", "info"), ("PITRGUARD_LOG_FORMAT", "json")]);
    let pid = server.id();
    wait_for(EVENTUALLY, "pitrguard /readyz", || get(admin, "/readyz").is_some_and(|(c, _)| c == 200));

    let slots: Vec<Arc<Slot>> = lineages.into_iter().map(|l| Slot::new(State::new(l))).collect();
    let shared = Arc::new(Shared {
        port,
        ca_pem: pki.ca_pem.clone().into_bytes(),
        slots,
        tally: Tally::default(),
        stop: AtomicBool::new(false),
    });

    // The cache has the lineages once the beacon's first step is seen.
    let mut beacon = Beacon { lineage: beacon_lineage, step: 0, ca_pem: pki.ca_pem.clone().into_bytes(), port };
    beacon.advance(&writer, &shared.tally).await;

    // Load: 2 HTTP/1.1 keep-alive connections, 1 HTTP/2 connection with 3 streams, and new
    // connections (HTTP/2 and HTTP/1.1) with a full handshake per request.
    let mut workers = tokio::task::JoinSet::new();
    for id in 0..2 {
        let c = Conn::connect(port, &client_config(&shared.ca_pem, H1)).await.unwrap();
        workers.spawn(worker(shared.clone(), id, Some(c), Shape::KeepAlive, H1));
    }
    let h2 = Conn::connect(port, &client_config(&shared.ca_pem, H2)).await.unwrap();
    assert!(h2.is_h2());
    for id in 2..5 {
        workers.spawn(worker(shared.clone(), id, Some(h2.stream()), Shape::KeepAlive, H2));
    }
    drop(h2);
    workers.spawn(worker(shared.clone(), 5, None, Shape::NewConnections, H2_H1));
    workers.spawn(worker(shared.clone(), 6, None, Shape::NewConnections, H1));

    let started = Instant::now();
    let warm_up = Duration::from_secs((secs / 10).clamp(3, 20));

    // RSS, every second.
    let samples = Arc::new(Mutex::new(Vec::<(Duration, u64)>::new()));
    let sampler = {
        let (samples, shared) = (samples.clone(), shared.clone());
        std::thread::spawn(move || {
            while !shared.stop.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    samples.lock().unwrap().push((started.elapsed(), kib));
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };

    // Certificate rotations: each must be seen by a new handshake.
    let rotations = {
        let (shared, ca) = (shared.clone(), pki.ca_pem.clone().into_bytes());
        let mut leaves = vec![first_leaf];
        tokio::spawn(async move {
            let config = client_config(&ca, H2_H1);
            let mut slowest = Duration::ZERO;
            while started.elapsed() + ROTATE_EVERY < run_for {
                tokio::time::sleep(ROTATE_EVERY).await;
                let (cert, key, der) = pki.leaf();
                volume.swap(&cert, &key);
                let swapped = Instant::now();
                loop {
                    if let Ok(Ok(c)) = tokio::time::timeout(REQUEST_BOUND, Conn::connect(shared.port, &config)).await
                        && c.leaf == der
                    {
                        break;
                    }
                    assert!(swapped.elapsed() < EVENTUALLY, "rotation {} not seen by a new handshake", leaves.len());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                slowest = slowest.max(swapped.elapsed());
                leaves.push(der);
            }
            (leaves, slowest)
        })
    };

    // Module swaps, and once a broken file.
    let swaps = {
        let module_path = module_path.clone();
        std::thread::spawn(move || {
            let loaded = |n: f64| metric(admin, "pitrguard_policy_module_reloads_total{result=\"loaded\"}") >= n;
            let in_use = |sha: &str| metric(admin, &format!("pitrguard_policy_module_info{{sha256=\"{sha}\"}}")) == 1.0;
            let (mut swaps, mut refused, mut current) = (0u32, 0u32, 0usize);
            while started.elapsed() + SWAP_EVERY < run_for {
                std::thread::sleep(SWAP_EVERY);
                if refused == 0 && started.elapsed() * 2 >= run_for {
                    put(&module_path, b"\0asm\x01\0\0\0 not a module");
                    wait_for(EVENTUALLY, "the broken module refused", || {
                        metric(admin, "pitrguard_policy_module_reloads_total{result=\"refused\"}") >= 1.0
                    });
                    assert!(in_use(&sha256(&variants[current])), "the module in use changed on a broken file");
                    refused += 1;
                    continue;
                }
                current = 1 - current;
                put(&module_path, &variants[current]);
                swaps += 1;
                wait_for(EVENTUALLY, "the swapped module in use", || loaded(f64::from(swaps)));
                assert!(in_use(&sha256(&variants[current])));
            }
            (swaps, refused)
        })
    };

    // Backup changes, one lineage at a time, until the end.
    let mut changes = std::collections::BTreeMap::<String, usize>::new();
    let mut step = 0usize;
    while started.elapsed() + CHANGE_PAUSE < run_for {
        let slot = &shared.slots[step % LINEAGES];
        let made = change(slot, CHANGES[step % CHANGES.len()], &writer, &mut beacon, &shared.tally).await;
        *changes.entry(format!("{made:?}")).or_default() += 1;
        step += 1;
        tokio::time::sleep(CHANGE_PAUSE).await;
    }
    tokio::time::sleep(run_for.saturating_sub(started.elapsed())).await;

    shared.stop.store(true, Ordering::Relaxed);
    while let Some(joined) = workers.join_next().await {
        joined.expect("a load worker panicked");
    }
    let elapsed = started.elapsed();
    sampler.join().unwrap();
    let (leaves, slowest_rotation) = rotations.await.expect("rotations");
    let (swaps, refused) = swaps.join().expect("module swaps");

    // The server is still up, then stops cleanly and has logged every request.
    assert!(server.try_wait().unwrap().is_none(), "pitrguard exited during the soak");
    let fresh = |result: &str| metric(admin, &format!("pitrguard_fresh_reads_total{{result=\"{result}\"}}"));
    let (confirmed, overturned, fresh_errors) = (fresh("confirmed"), fresh("overturned"), fresh("error"));
    assert!(std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    let exit = tokio::task::block_in_place(|| {
        let until = Instant::now() + EVENTUALLY;
        loop {
            if let Some(status) = server.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "pitrguard did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
    });

    let t = &shared.tally;
    let (sent, probes) = (t.sent.load(Ordering::Relaxed), t.probes.load(Ordering::Relaxed));
    let log = std::fs::read_to_string(dir.join("pitrguard.log")).unwrap();
    let mut decisions = 0u64;
    let mut levels = std::collections::BTreeMap::<String, usize>::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        if v["message"] == "admission decision" {
            decisions += 1;
        } else if v["level"] != "INFO" {
            *levels.entry(format!("{} {}", v["level"], v["message"])).or_default() += 1;
        }
    }
    assert!(!log.contains("panicked"), "pitrguard panicked:\n{log}");

    // The figures.
    let samples = samples.lock().unwrap().clone();
    let start_rss = samples.iter().find(|(at, _)| *at >= warm_up).or(samples.first()).map_or(0, |s| s.1);
    let end_rss = samples.last().map_or(0, |s| s.1);
    let peak_rss = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let distinct_leaves = t.leaves_seen.lock().unwrap().len();
    let failed = t.failed.load(Ordering::Relaxed);
    let wrong = t.wrong_verdicts.load(Ordering::Relaxed);
    eprintln!("soak: duration {:.1} s (PITRGUARD_SOAK_SECS={secs})", elapsed.as_secs_f64());
    eprintln!(
        "soak: requests {sent} ({:.0}/s): settled {}, in a change's window {}, HTTP/2 {}, on new connections {}; \
         beacon probes {probes}",
        sent as f64 / elapsed.as_secs_f64(),
        t.settled.load(Ordering::Relaxed),
        t.in_window.load(Ordering::Relaxed),
        t.h2.load(Ordering::Relaxed),
        t.new_connections.load(Ordering::Relaxed),
    );
    eprintln!(
        "soak: answers allowed {}, denied {}, with a patch {}; fresh reads confirmed {confirmed}, overturned \
         {overturned}, failed {fresh_errors}",
        t.allowed.load(Ordering::Relaxed),
        t.denied.load(Ordering::Relaxed),
        t.patched.load(Ordering::Relaxed)
    );
    eprintln!("soak: failed requests {failed}, wrong verdicts {wrong}");
    eprintln!(
        "soak: certificate rotations {} (each seen by a new handshake, slowest after {:.2} s; {distinct_leaves} \
         distinct leaves seen by the load's new connections)",
        leaves.len() - 1,
        slowest_rotation.as_secs_f64()
    );
    eprintln!(
        "soak: Backup changes {} steps {changes:?}, {} writes to the API server (beacon included)",
        changes.values().sum::<usize>(),
        writer.writes.load(Ordering::Relaxed)
    );
    eprintln!("soak: module swaps {swaps} loaded, {refused} broken file refused");
    eprintln!(
        "soak: RSS start {} KiB (at {:.0} s), end {} KiB, peak {} KiB",
        start_rss,
        warm_up.as_secs_f64(),
        end_rss,
        peak_rss
    );
    let series: Vec<String> = samples
        .iter()
        .step_by((samples.len() / 12).max(1))
        .map(|(at, kib)| format!("{:.0}s {} MiB", at.as_secs_f64(), kib / 1024))
        .collect();
    eprintln!("soak: RSS over the run: {}", series.join(", "));
    eprintln!("soak: log lines other than INFO: {levels:?}");

    assert_eq!(failed, 0, "failed requests: {:#?}", t.failures.lock().unwrap());
    assert_eq!(wrong, 0, "wrong verdicts:\n{}", t.wrong.lock().unwrap().join("\n"));
    assert!(exit.success(), "pitrguard exited with {exit} after SIGTERM");
    assert_eq!(decisions, sent + probes, "one logged decision per request");
    assert!(t.settled.load(Ordering::Relaxed) > 0 && t.in_window.load(Ordering::Relaxed) > 0);
    assert!(t.h2.load(Ordering::Relaxed) > 0);
    assert!(leaves.len() >= 2, "no certificate rotation in {secs} s");
    assert!(distinct_leaves >= 2, "the load never saw a rotated certificate");
    assert_eq!(changes.len(), 4, "not every kind of change was made: {changes:?}");
    assert!(swaps >= 2 && refused == 1, "module swaps {swaps}, refused {refused}");
    assert_eq!(fresh_errors, 0.0, "a fresh read failed");
    assert_memory(start_rss, end_rss);
}
