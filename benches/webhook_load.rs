//! The webhook under load, next to the floor of its own stack.
//!
//! `cargo bench --bench webhook_load` — one process: dev certificates from
//! `pitrguard::certs::generate`, two servers on 127.0.0.1 behind the same
//! `serve_tls` transport and the same `ReloadingTls`:
//!
//! - **webhook**: `pitrguard::server::webhook::router` with the examples inventory;
//! - **floor**: an axum router whose `POST /validate` reads the body and returns a
//!   constant allowed AdmissionReview — what the transport, TLS, HTTP and axum cost
//!   without pitrguard's work;
//! - **floor + serde_json**: the floor, but it also reads the body with serde_json into
//!   `IgnoredAny` — the least that any webhook which looks at the request pays;
//! - **kube-rs no-op**: a webhook as kube-rs's admission example writes one, that allows
//!   everything — `Json<AdmissionReview<DynamicObject>>` in, `AdmissionResponse::from(&req)`
//!   out: what a Rust webhook on this stack costs before it does any work.
//!
//! The load generator runs in the same tokio runtime: `C` HTTP/1.1 keep-alive
//! connections (raw hyper over tokio-rustls, trusting the dev CA), each sending
//! `POST /validate` with `examples/admission/review-denied.json` back to back,
//! for a warm-up and then a measured period. Runs: webhook, floor and floor + serde_json
//! in rounds (the order rotated each round, so that the machine's drift weighs on all
//! three; the ratios are the medians of the rounds'), at `C` and at 32 connections; then
//! once each the module, the kube-rs no-op, and the webhook over HTTP/2 (one connection,
//! `C` streams). Any non-200 answer, transport error or request over 10 s is an error.
//!
//! The figures are printed and written into BENCHMARKS.md between
//! `<!-- load:begin -->` and `<!-- load:end -->` (other sections are kept).
//!
//! Environment:
//! - `WEBHOOK_LOAD_CONNS` connections (HTTP/1.1) and streams (HTTP/2), default 8
//! - `WEBHOOK_LOAD_CONNS_HIGH` connections of a second webhook/floor pair, default 32 (0: none)
//! - `WEBHOOK_LOAD_SECS` measured seconds per run, default 10
//! - `WEBHOOK_LOAD_WARMUP_SECS` warm-up seconds per run, default 2
//! - `WEBHOOK_LOAD_ROUNDS` rounds of webhook, floor and floor + serde_json per concurrency, default 3
//! - `WEBHOOK_LOAD_THREADS` tokio worker threads, default: the number of CPUs
//! - `WEBHOOK_LOAD_H2=0` skips the HTTP/2 run
//! - `WEBHOOK_LOAD_LOG=1` installs a tracing subscriber at info (written to a
//!   sink), so the per-decision log line is formatted as in `serve`
//! - `WEBHOOK_LOAD_WRITE=0` does not touch BENCHMARKS.md
//!
//! Without `--bench` (`cargo test --benches`) it is a smoke run: 2
//! connections, 0.3 s, no warm-up, BENCHMARKS.md untouched. There are no
//! timing thresholds; only errors fail it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pitrguard::core::Policy;
use pitrguard::inventory::SharedInventory;
use pitrguard::load::{build_index, read_documents};
use pitrguard::metrics::Metrics;
use pitrguard::policy_module::{self, PolicyModule};
use pitrguard::server::tls::{ReloadingTls, TlsFiles};
use pitrguard::server::transport::{Limits, serve_tls};
use pitrguard::server::webhook::{self, App};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

// mimalloc, which won hack/bench-allocator.sh; glibc with `--no-default-features --features runtime`.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A request slower than this counts as an error (the API server's default webhook timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the requests of one connection or stream in one run (a runaway guard).
const MAX_REQUESTS_PER_WORKER: usize = 2_000_000;
/// The floor's answer: an allowed AdmissionReview, as small as the webhook's.
const FLOOR_RESPONSE: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true}}"#;
const BEGIN: &str = "<!-- load:begin -->";
const END: &str = "<!-- load:end -->";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http1,
    Http2,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Http1 => "HTTP/1.1",
            Proto::Http2 => "HTTP/2",
        }
    }
}

#[derive(Clone)]
struct Settings {
    conns: usize,
    /// A second webhook/floor pair at this many connections (`WEBHOOK_LOAD_CONNS_HIGH`, default 32; 0: none).
    conns_high: Option<usize>,
    warmup: Duration,
    measure: Duration,
    threads: usize,
    h2: bool,
    log: bool,
    write: bool,
    smoke: bool,
    /// Webhook and floor runs alternate this many times at each concurrency (`WEBHOOK_LOAD_ROUNDS`);
    /// the ratios are the medians of the rounds', as the machine drifts between runs.
    rounds: usize,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn env_flag(name: &str, default: bool) -> bool {
    std::env::var(name).map(|v| !matches!(v.trim(), "0" | "false" | "no" | "")).unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        let smoke = !std::env::args().any(|a| a == "--bench");
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        let threads = env_num("WEBHOOK_LOAD_THREADS", cpus).max(1);
        if smoke {
            return Settings {
                conns: 2,
                conns_high: None,
                warmup: Duration::ZERO,
                measure: Duration::from_millis(300),
                threads,
                h2: true,
                log: false,
                write: false,
                smoke,
                rounds: 1,
            };
        }
        Settings {
            conns: env_num("WEBHOOK_LOAD_CONNS", 8usize).max(1),
            conns_high: Some(env_num("WEBHOOK_LOAD_CONNS_HIGH", 32usize)).filter(|&c| c > 0),
            warmup: Duration::from_secs_f64(env_num("WEBHOOK_LOAD_WARMUP_SECS", 2.0f64).max(0.0)),
            measure: Duration::from_secs_f64(env_num("WEBHOOK_LOAD_SECS", 10.0f64).max(0.1)),
            threads,
            h2: env_flag("WEBHOOK_LOAD_H2", true),
            log: env_flag("WEBHOOK_LOAD_LOG", false),
            write: env_flag("WEBHOOK_LOAD_WRITE", true),
            smoke,
            rounds: env_num("WEBHOOK_LOAD_ROUNDS", 3usize).max(1),
        }
    }

    /// The command that reproduces this run, with the overrides that were set.
    fn command(&self) -> String {
        let mut vars: Vec<String> =
            std::env::vars().filter(|(k, _)| k.starts_with("WEBHOOK_LOAD_")).map(|(k, v)| format!("{k}={v}")).collect();
        vars.sort();
        vars.push("cargo bench --bench webhook_load".into());
        vars.join(" ")
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------
// servers

fn examples_app(module: Option<Arc<PolicyModule>>) -> App {
    let docs = read_documents(&[repo().join("examples")]).expect("examples/ loads");
    let index = build_index(&docs).expect("examples/ indexes");
    App {
        inventory: Arc::new(SharedInventory::ready(index)),
        policy: Arc::new(Policy::default()),
        metrics: Arc::new(Metrics::new()),
        fresh: None,
        module,
    }
}

/// The policy module as `serve --policy-module` loads it: one worker thread per core.
fn load_module(threads: usize) -> Arc<PolicyModule> {
    let path = std::env::var_os("PITRGUARD_POLICY_WASM")
        .map_or_else(|| repo().join("target/policy/pitrguard-policy.wasm"), PathBuf::from);
    let module = PolicyModule::load(&path, &Policy::default(), policy_module::Limits::default(), threads, None)
        .unwrap_or_else(|e| panic!("{e}; build the module first: hack/build-policy.sh"));
    Arc::new(module)
}

fn floor_router() -> Router {
    Router::new().route(
        "/validate",
        post(|body: Bytes| async move {
            std::hint::black_box(&body);
            ([(header::CONTENT_TYPE, "application/json")], FLOOR_RESPONSE).into_response()
        }),
    )
}

/// The floor that also reads the AdmissionReview (serde_json into nothing).
fn reading_floor_router() -> Router {
    Router::new().route(
        "/validate",
        post(|body: Bytes| async move {
            let read: Result<serde::de::IgnoredAny, _> = serde_json::from_slice(&body);
            if read.is_err() {
                return (StatusCode::BAD_REQUEST, "not JSON").into_response();
            }
            ([(header::CONTENT_TYPE, "application/json")], FLOOR_RESPONSE).into_response()
        }),
    )
}

/// A do-nothing webhook the way kube-rs's admission example is written.
fn kube_noop_router() -> Router {
    use kube::core::DynamicObject;
    use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
    Router::new().route(
        "/validate",
        post(|axum::Json(review): axum::Json<AdmissionReview<DynamicObject>>| async move {
            let req: AdmissionRequest<DynamicObject> = match review.try_into() {
                Ok(req) => req,
                Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
            };
            axum::Json(AdmissionResponse::from(&req).into_review()).into_response()
        }),
    )
}

/// Starts `app` with `serve_tls` on 127.0.0.1:0; returns its port.
async fn start(tls: Arc<ReloadingTls>, app: Router, stop: &watch::Receiver<bool>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let port = listener.local_addr().unwrap().port();
    let mut stop = stop.clone();
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let limits = Limits { drain_timeout: Duration::from_secs(2), ..Limits::default() };
    tokio::spawn(async move { serve_tls(listener, tls, app, limits, shutdown).await.expect("serve_tls") });
    port
}

// ---------------------------------------------------------------------------
// client

struct Client {
    connector: TlsConnector,
    body: Bytes,
}

type Body = Full<Bytes>;

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Body>),
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

impl Client {
    fn new(ca_pem: &str, body: Bytes, proto: Proto) -> Client {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("CA certificate");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = match proto {
            Proto::Http1 => vec![b"http/1.1".to_vec()],
            Proto::Http2 => vec![b"h2".to_vec()],
        };
        Client { connector: TlsConnector::from(Arc::new(config)), body }
    }

    async fn connect(&self, port: u16, proto: Proto) -> anyhow::Result<Sender> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("127.0.0.1")?.to_owned();
        let tls = self.connector.connect(name, tcp).await?;
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(tls);
        match proto {
            Proto::Http1 => {
                anyhow::ensure!(negotiated.as_deref() != Some(b"h2"), "asked for HTTP/1.1, server chose h2");
                let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Sender::H1(sender))
            }
            Proto::Http2 => {
                anyhow::ensure!(negotiated.as_deref() == Some(b"h2"), "asked for h2, server did not agree");
                let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Sender::H2(sender))
            }
        }
    }

    fn request(&self) -> Request<Body> {
        Request::post("/validate")
            .header(header::HOST, "127.0.0.1")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(self.body.clone()))
            .unwrap()
    }

    /// One request; Ok(body) only for a 200 with a fully read body.
    async fn send(&self, sender: &mut Sender) -> anyhow::Result<Bytes> {
        let req = self.request();
        let exchange = async {
            let resp = match sender {
                Sender::H1(s) => {
                    s.ready().await?;
                    s.send_request(req).await?
                }
                Sender::H2(s) => s.send_request(req).await?,
            };
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::ensure!(status == StatusCode::OK, "HTTP {status}: {}", String::from_utf8_lossy(&body));
            Ok(body)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}"))?
    }
}

// ---------------------------------------------------------------------------
// one run

struct Outcome {
    label: String,
    /// Which round of the alternating webhook/floor runs (1 for the runs made once).
    round: usize,
    proto: Proto,
    conns: usize,
    latencies_ns: Vec<u64>,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
}

impl Outcome {
    fn rps(&self) -> f64 {
        self.latencies_ns.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile, in microseconds.
    fn pct_us(&self, p: f64) -> f64 {
        if self.latencies_ns.is_empty() {
            return f64::NAN;
        }
        let n = self.latencies_ns.len();
        let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
        self.latencies_ns[rank.min(n) - 1] as f64 / 1000.0
    }

    fn max_us(&self) -> f64 {
        self.latencies_ns.last().map_or(f64::NAN, |&v| v as f64 / 1000.0)
    }
}

struct Worker {
    latencies_ns: Vec<u64>,
    errors: usize,
    first_error: Option<String>,
}

/// `conns` workers send back to back from now until warm-up + measure; a
/// request counts if it started after the warm-up.
async fn run(label: &str, client: Arc<Client>, port: u16, proto: Proto, s: &Settings) -> Outcome {
    // Connections are made before the clock starts: one per worker for
    // HTTP/1.1, one shared by all streams for HTTP/2.
    let mut senders = Vec::with_capacity(s.conns);
    match proto {
        Proto::Http1 => {
            for _ in 0..s.conns {
                senders.push(client.connect(port, proto).await.expect("connect"));
            }
        }
        Proto::Http2 => {
            let Sender::H2(shared) = client.connect(port, proto).await.expect("connect") else { unreachable!() };
            for _ in 0..s.conns {
                senders.push(Sender::H2(shared.clone()));
            }
        }
    }
    let started = Instant::now();
    let measure_from = started + s.warmup;
    let until = measure_from + s.measure;
    let mut tasks = tokio::task::JoinSet::new();
    for mut sender in senders {
        let client = client.clone();
        tasks.spawn(async move {
            let mut w = Worker { latencies_ns: Vec::with_capacity(1 << 16), errors: 0, first_error: None };
            for _ in 0..MAX_REQUESTS_PER_WORKER {
                let t = Instant::now();
                if t >= until {
                    break;
                }
                let result = client.send(&mut sender).await;
                let took = t.elapsed();
                match result {
                    Ok(_) if t >= measure_from => w.latencies_ns.push(took.as_nanos() as u64),
                    Ok(_) => {}
                    Err(e) => {
                        // Counted in the warm-up too: every request must succeed.
                        w.errors += 1;
                        w.first_error.get_or_insert_with(|| format!("{e:#}"));
                        // A broken HTTP/1.1 connection is replaced; HTTP/2 streams share theirs.
                        if proto == Proto::Http1 {
                            match client.connect(port, proto).await {
                                Ok(fresh) => sender = fresh,
                                Err(e) => {
                                    w.errors += 1;
                                    w.first_error.get_or_insert_with(|| format!("reconnect: {e:#}"));
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            w
        });
    }
    let mut outcome = Outcome {
        conns: s.conns,
        label: label.to_string(),
        round: 1,
        proto,
        latencies_ns: Vec::new(),
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = tasks.join_next().await {
        let w = joined.expect("load worker panicked");
        outcome.latencies_ns.extend(w.latencies_ns);
        outcome.errors += w.errors;
        if outcome.first_error.is_none() {
            outcome.first_error = w.first_error;
        }
    }
    outcome.elapsed = measure_from.elapsed();
    outcome.latencies_ns.sort_unstable();
    outcome
}

// ---------------------------------------------------------------------------
// report

fn sh(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().into())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn row(o: &Outcome, conns: usize) -> String {
    let shape = match o.proto {
        Proto::Http1 => format!("{conns} conns"),
        Proto::Http2 => format!("1 conn, {conns} streams"),
    };
    format!(
        "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
        o.label,
        o.round,
        o.proto.name(),
        shape,
        o.latencies_ns.len(),
        o.rps(),
        o.pct_us(50.0),
        o.pct_us(90.0),
        o.pct_us(99.0),
        o.max_us(),
        o.errors
    )
}

fn report(s: &Settings, outcomes: &[Outcome], load_before: &str, load_after: &str) -> String {
    let floor_at = |conns: usize| {
        outcomes
            .iter()
            .find(|o| o.label == "floor" && o.round == 1 && o.conns == conns && o.proto == Proto::Http1)
            .expect("floor run")
    };
    let rounds_of = |label: &str, conns: usize| -> Vec<&Outcome> {
        outcomes.iter().filter(|o| o.label == label && o.conns == conns && o.proto == Proto::Http1).collect()
    };
    let mut text = String::new();
    let push = |text: &mut String, line: &str| {
        text.push_str(line);
        text.push('\n');
    };
    push(&mut text, "## Webhook under load (`benches/webhook_load.rs`)");
    push(&mut text, "");
    push(&mut text, &format!("Command: `{}`", s.command()));
    push(&mut text, "");
    let commit = sh("git", &["-C", repo().to_str().unwrap_or("."), "rev-parse", "--short", "HEAD"]);
    let dirty = sh("git", &["-C", repo().to_str().unwrap_or("."), "status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|t| !t.is_empty());
    let lines = [
        format!("- date: {}", chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")),
        format!(
            "- machine: nproc {}, {}; load average (1/5/15 min) {load_before} before, {load_after} after",
            sh("nproc", &[]).unwrap_or_else(|| "?".into()),
            cpu_model()
        ),
        format!(
            "- build: {}; commit {}{}",
            sh("rustc", &["-V"]).unwrap_or_else(|| "rustc ?".into()),
            commit.unwrap_or_else(|| "?".into()),
            if dirty { " with uncommitted changes" } else { "" }
        ),
        format!(
            "- setup: one process, tokio multi-thread runtime with {} worker threads shared by both servers and the load \
             generator; TLS 1.3 (ring, ECDSA P-256 dev certificate) via `serve_tls` and `ReloadingTls`; body \
             `examples/admission/review-denied.json` ({} bytes); {} s warm-up, then {} s measured per run; tracing \
             subscriber: {}",
            s.threads,
            std::fs::metadata(repo().join("examples/admission/review-denied.json")).map_or(0, |m| m.len()),
            s.warmup.as_secs_f64(),
            s.measure.as_secs_f64(),
            if s.log { "fmt at info, written to a sink" } else { "none (the per-decision log line is not formatted)" }
        ),
        "- webhook = `webhook::router` with the examples inventory (the request is denied by R10); floor = axum \
         `POST /validate` that reads the body and returns a constant allowed AdmissionReview; webhook --policy-module = \
         the same router judging through `target/policy/pitrguard-policy.wasm` in wasmtime (one worker thread per \
         core, host calls answered from the same inventory); floor + serde_json = the floor, also reading the body \
         with serde_json into `IgnoredAny`; kube-rs no-op = `Json<AdmissionReview<DynamicObject>>` in, \
         `AdmissionResponse::from(&req).into_review()` out (kube-rs's admission example, allowing all); latencies in µs, from sending the request to having read \
         the whole response"
            .to_string(),
    ];
    for l in lines {
        push(&mut text, &l);
    }
    push(&mut text, "");
    push(
        &mut text,
        "| run | round | protocol | concurrency | requests | req/s | p50 µs | p90 µs | p99 µs | max µs | errors |",
    );
    push(&mut text, "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for o in outcomes {
        push(&mut text, &row(o, o.conns));
    }
    push(&mut text, "");
    // Per concurrency: each round's req/s ratios, their medians, and the median p99s.
    let mut ratios = Vec::new();
    let mut reading = Vec::new();
    for conns in std::iter::once(s.conns).chain(s.conns_high) {
        let (webhook, floor, reads) =
            (rounds_of("webhook", conns), rounds_of("floor", conns), rounds_of("floor + serde_json", conns));
        // (median, each round's) of a / b req/s, over the rounds that ran both.
        let per_round = |a: &[&Outcome], b: &[&Outcome]| {
            let each: Vec<f64> =
                a.iter().filter_map(|x| b.iter().find(|y| y.round == x.round).map(|y| x.rps() / y.rps())).collect();
            let shown = each.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ");
            (median(each), shown)
        };
        let p99 = |runs: &[&Outcome]| median(runs.iter().map(|o| o.pct_us(99.0)).collect());
        let (ratio, shown) = per_round(&webhook, &floor);
        ratios.push(format!(
            "webhook ({conns} conns): req/s {ratio:.2}× (median of {} rounds: {shown}), p99 {:.0} µs vs. floor {:.0} µs \
             (medians)",
            webhook.len(),
            p99(&webhook),
            p99(&floor),
        ));
        if !reads.is_empty() {
            let (read_ratio, read_shown) = per_round(&reads, &floor);
            let (over_read, over_read_shown) = per_round(&webhook, &reads);
            reading.push(format!(
                "{conns} conns: floor + serde_json / floor {read_ratio:.2}× ({read_shown}); webhook / (floor + \
                 serde_json) {over_read:.2}× ({over_read_shown}); p99 of floor + serde_json {:.0} µs",
                p99(&reads)
            ));
        }
    }
    if let Some(m) = outcomes.iter().find(|o| o.label == "webhook --policy-module") {
        let floor = floor_at(m.conns);
        ratios.push(format!(
            "webhook --policy-module ({} conns): req/s {:.2}×, p99 {:.2}×",
            m.conns,
            m.rps() / floor.rps(),
            m.pct_us(99.0) / floor.pct_us(99.0)
        ));
    }
    push(&mut text, &format!("Webhook / floor (HTTP/1.1): {}.", ratios.join("; ")));
    let by_label = |label: &str| outcomes.iter().find(|o| o.label == label && o.round == 1 && o.conns == s.conns);
    let native = by_label("webhook").expect("webhook run");
    // What reading the request costs any webhook (in the same rounds), and where a do-nothing
    // kube-rs webhook stands (one run).
    if !reading.is_empty() {
        push(&mut text, "");
        push(&mut text, &format!("Reading floor, medians of the same rounds (HTTP/1.1): {}.", reading.join("; ")));
    }
    if let Some(noop) = by_label("kube-rs no-op") {
        let floor = floor_at(s.conns);
        push(&mut text, "");
        push(
            &mut text,
            &format!(
                "kube-rs no-op ({} conns, HTTP/1.1, one run): kube-rs no-op / floor: req/s {:.2}×; webhook / kube-rs \
                 no-op: req/s {:.2}×, p99 {:.2}×.",
                s.conns,
                noop.rps() / floor.rps(),
                native.rps() / noop.rps(),
                native.pct_us(99.0) / noop.pct_us(99.0)
            ),
        );
    }
    if let Some(m) = outcomes.iter().find(|o| o.label == "webhook --policy-module") {
        push(&mut text, "");
        push(
            &mut text,
            &format!(
                "With / without `--policy-module` (HTTP/1.1): req/s {:.2}×, p99 {:.2}×.",
                m.rps() / native.rps(),
                m.pct_us(99.0) / native.pct_us(99.0)
            ),
        );
    }
    text
}

/// Replaces the text between the markers in BENCHMARKS.md (or appends the
/// section); everything else in the file is kept. Written to a temporary
/// file and renamed into place.
fn write_section(path: &Path, section: &str) -> std::io::Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "# Benchmarks\n\nEvery figure here comes with the command that reproduces it.\n".to_string()
        }
        Err(e) => return Err(e),
    };
    let block = format!("{BEGIN}\n{}{END}", section);
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{block}{}", &old[..b], &old[e + END.len()..]),
        _ => format!("{}\n\n{block}\n", old.trim_end_matches('\n')),
    };
    let tmp = path.with_file_name(".BENCHMARKS.md.webhook_load.tmp");
    std::fs::write(&tmp, new)?;
    std::fs::rename(&tmp, path)
}

// ---------------------------------------------------------------------------

fn main() {
    let s = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(s.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench(s));
}

async fn bench(s: Settings) {
    if s.log {
        tracing_subscriber::fmt().with_env_filter("info").with_writer(std::io::sink).init();
    }
    // Dev certificates, written out and loaded the way `serve` loads them.
    let certs = pitrguard::certs::generate(&["127.0.0.1".to_string(), "localhost".to_string()]).expect("dev certs");
    let dir = tempfile::Builder::new().prefix("pitrguard-webhook-load-").tempdir().expect("tempdir");
    pitrguard::certs::write(dir.path(), &certs).expect("write dev certs");
    let files = TlsFiles { cert: dir.path().join("tls.crt"), key: dir.path().join("tls.key"), client_ca: None };
    let tls = ReloadingTls::load(files).expect("load dev certs");

    let (stop_tx, stop_rx) = watch::channel(false);
    let webhook_port = start(tls.clone(), webhook::router(examples_app(None)), &stop_rx).await;
    let module = load_module(s.threads);
    let module_port = start(tls.clone(), webhook::router(examples_app(Some(module))), &stop_rx).await;
    let floor_port = start(tls.clone(), floor_router(), &stop_rx).await;
    let reading_floor_port = start(tls.clone(), reading_floor_router(), &stop_rx).await;
    let kube_noop_port = start(tls.clone(), kube_noop_router(), &stop_rx).await;

    let body = Bytes::from(
        std::fs::read(repo().join("examples/admission/review-denied.json"))
            .expect("examples/admission/review-denied.json"),
    );
    let h1 = Arc::new(Client::new(&certs.ca_pem, body.clone(), Proto::Http1));
    let h2 = Arc::new(Client::new(&certs.ca_pem, body, Proto::Http2));

    // What each server answers: the webhook must deny (the real path), the floor allow.
    for (port, name, allowed) in [
        (webhook_port, "webhook", false),
        (module_port, "module", false),
        (floor_port, "floor", true),
        (reading_floor_port, "floor + serde_json", true),
        (kube_noop_port, "kube-rs no-op", true),
    ] {
        let mut sender = h1.connect(port, Proto::Http1).await.expect("connect");
        let answer = h1.send(&mut sender).await.unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let v: serde_json::Value = serde_json::from_slice(&answer).expect("JSON answer");
        assert_eq!(v["response"]["allowed"], allowed, "{name} answered {v}");
    }

    let load_before = loadavg();
    println!(
        "webhook_load: {} connections, {:?} warm-up + {:?} measured per run, {} tokio worker threads, load average {load_before}{}",
        s.conns,
        s.warmup,
        s.measure,
        s.threads,
        if s.smoke { " (smoke run: pass --bench, as cargo bench does, for the real one)" } else { "" }
    );
    // The webhook, the floor and the reading floor take turns, in an order rotated each round, so
    // that drift of the machine weighs on all three; the other servers run once.
    let mut plan = Vec::new();
    for conns in std::iter::once(s.conns).chain(s.conns_high) {
        for round in 1..=s.rounds {
            let mut turns =
                [("webhook", webhook_port), ("floor", floor_port), ("floor + serde_json", reading_floor_port)];
            turns.rotate_left((round - 1) % 3);
            for (label, port) in turns {
                plan.push((label, round, port, Proto::Http1, conns));
            }
        }
    }
    plan.push(("webhook --policy-module", 1, module_port, Proto::Http1, s.conns));
    plan.push(("kube-rs no-op", 1, kube_noop_port, Proto::Http1, s.conns));
    if s.h2 {
        plan.push(("webhook", 1, webhook_port, Proto::Http2, s.conns));
    }
    let mut outcomes = Vec::new();
    for (label, round, port, proto, conns) in plan {
        let client = if proto == Proto::Http1 { h1.clone() } else { h2.clone() };
        let mut o = run(label, client, port, proto, &Settings { conns, ..s.clone() }).await;
        o.round = round;
        println!(
            "  {:<16} {:<8} {:>9.0} req/s  p50 {:>7.0} µs  p90 {:>7.0} µs  p99 {:>7.0} µs  max {:>8.0} µs  errors {}",
            o.label,
            o.proto.name(),
            o.rps(),
            o.pct_us(50.0),
            o.pct_us(90.0),
            o.pct_us(99.0),
            o.max_us(),
            o.errors
        );
        if let Some(e) = &o.first_error {
            println!("    first error: {e}");
        }
        outcomes.push(o);
    }
    let load_after = loadavg();
    let _ = stop_tx.send(true);

    let section = report(&s, &outcomes, &load_before, &load_after);
    println!("\n{section}");
    let errors: usize = outcomes.iter().map(|o| o.errors).sum();
    assert!(outcomes.iter().all(|o| !o.latencies_ns.is_empty()), "a run completed no request");
    assert_eq!(errors, 0, "requests failed; see the first errors above");
    if s.write {
        let path = repo().join("BENCHMARKS.md");
        write_section(&path, &section).expect("write BENCHMARKS.md");
        println!("written to {}", path.display());
    }
}
