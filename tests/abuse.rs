//! Slow and abusive clients against the real `pitrguard serve` (issue #13): while each attack
//! runs, well-behaved clients keep sending AdmissionReviews and every answer is checked
//! against the core. The attacks:
//!
//! - **header trickling** (slowloris): TLS connections that send an HTTP/1.1 request head,
//!   or an HTTP/2 preface and HEADERS frame, one byte at a time, and plain TCP connections
//!   that trickle a TLS ClientHello; every one must be cut off by the server before its head
//!   or handshake completes (`Limits::header_read_timeout`, `handshake_timeout`: 5 s);
//! - **thousands of idle connections**: plain TCP, TLS with HTTP/1.1 and TLS with HTTP/2,
//!   sending nothing; each must be closed within the same 5 s (reopened as they are closed,
//!   so that their number holds), and the server's open files must return to what they were;
//! - **many tiny HTTP/2 streams**: HTTP/2 connections that open far more streams than the
//!   server's `SETTINGS_MAX_CONCURRENT_STREAMS` (128), each a tiny POST; the server must
//!   refuse what is over the limit (RST_STREAM(REFUSED_STREAM)) and end such a connection with
//!   GOAWAY(ENHANCE_YOUR_CALM) (h2 allows 1024 refusals per connection);
//! - **rapid reset** (CVE-2023-44487): HTTP/2 connections that open streams and cancel each at
//!   once (HEADERS + RST_STREAM), in bursts, for as long as they are let; the server must end
//!   each: GOAWAY(ENHANCE_YOUR_CALM) once more than 20 cancelled streams wait to be accepted
//!   (h2's limit), or a close at the first-request deadline (5 s), since none of their streams
//!   reaches the router. (A connection that made one real request first and then cancels no
//!   faster than the server accepts is bounded by neither: RELIABILITY.md says what that costs.)
//!
//! Asserted: functional outcomes only (every good request answered, and answered right; the
//! attackers cut off or bounded as above; the server up; its open files back to normal).
//! Latency is measured and printed (`abuse:` lines: p50/p99 of the good clients without and
//! under each attack) but never asserted: `hack/abuse-latency.sh` runs this with longer phases
//! on a release build for the figures of RELIABILITY.md.
//!
//! Environment: `PITRGUARD_ABUSE_SECS` seconds per attack (default 6; the baseline before
//! it takes half as long), `PITRGUARD_ABUSE_IDLE` idle connections (default 3000, bounded by
//! the open-file limit).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use pitrguard::admission::{Answer, Endpoint, decide, parse_review, respond, review_body};
use pitrguard::core::{Index, Policy};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::load::{
    Conn, H1, H2, H2_H1, Latencies, client_config, listen_overflows, open_files, raise_nofile, tls_connect,
};
use common::process::{Stopped, wait_for};

/// The server's header read and handshake timeouts (src/server/transport.rs, `Limits::default`).
const SERVER_TIMEOUT: Duration = Duration::from_secs(5);
/// What a cut-off may take beyond the server's timeout on a busy 2-core machine: the attacker
/// task must be scheduled to see the close.
const SLACK: Duration = Duration::from_secs(10);
const REQUEST_BOUND: Duration = Duration::from_secs(30);

fn attack_secs() -> Duration {
    Duration::from_secs_f64(std::env::var("PITRGUARD_ABUSE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(6.0))
}

/// The attacks run one at a time: each measures the good clients' latency without it first.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

// ---------------------------------------------------------------------------
// the server and the good clients

struct Server {
    child: Stopped,
    port: u16,
    admin: u16,
    ca: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        // Thousands of sockets on both sides: the server inherits this process's limit.
        let nofile = raise_nofile(16_384);
        eprintln!("abuse: open-file limit {nofile}");
        let dir = tempfile::tempdir().unwrap();
        let (mut child, port, admin) = common::serve_examples(&dir.path().join("certs"), &["--drain-timeout", "2"]);
        wait_for(Duration::from_secs(120), "pitrguard serve to be ready", || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("pitrguard serve exited: {status}");
            }
            healthz(admin, "/readyz")
        });
        let ca = std::fs::read(dir.path().join("certs/ca.crt")).unwrap();
        Server { child, port, admin, ca, _dir: dir }
    }

    /// `want` connections, or fewer if the open-file limit (this process's, which the server
    /// inherits: each holds one end of every connection) cannot hold them with room to spare.
    fn connection_budget(want: usize) -> usize {
        let soft = raise_nofile(16_384) as usize;
        let n = want.min(soft.saturating_sub(256));
        if n < want {
            eprintln!("abuse: open-file limit {soft}: {n} idle connections instead of {want}");
        }
        n
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn assert_up(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "pitrguard exited");
        assert!(healthz(self.admin, "/healthz"), "pitrguard /healthz");
    }
}

fn healthz(admin: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", admin)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    if write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.starts_with("HTTP/1.1 200")
}

/// The reviews the good clients send, with the core's answers.
struct Reviews(Vec<(Endpoint, Bytes, Value)>);

fn reviews() -> &'static Reviews {
    static REVIEWS: OnceLock<Reviews> = OnceLock::new();
    REVIEWS.get_or_init(|| {
        let docs = pitrguard::load::read_documents(&[common::examples()]).unwrap();
        let index: Index = pitrguard::load::build_index(&docs).unwrap();
        let mut out = Vec::new();
        for file in ["review-allowed.json", "review-denied.json"] {
            let body = std::fs::read(common::examples().join("admission").join(file)).unwrap();
            for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
                let req = parse_review(&body).unwrap();
                let answer = Answer::from(&decide(&req, &index, &Policy::default()));
                let expected = serde_json::from_slice(&review_body(&respond(endpoint, &req, &answer))).unwrap();
                out.push((endpoint, Bytes::from(body.clone()), expected));
            }
        }
        Reviews(out)
    })
}

#[derive(Default)]
struct Good {
    /// Accept-queue overflows of the machine while these clients ran.
    overflows: AtomicU64,
    keep_alive: Mutex<Latencies>,
    new_connection: Mutex<Latencies>,
    failures: Mutex<Vec<String>>,
    answered: AtomicU64,
}

impl Good {
    fn fail(&self, what: String) {
        let mut f = self.failures.lock().unwrap();
        if f.len() < 10 {
            f.push(what);
        }
    }
}

/// The good clients, until `stop`: one HTTP/1.1 and one HTTP/2 keep-alive connection, and a
/// new connection (HTTP/2 or HTTP/1.1, full handshake) per request; each sends one review
/// then pauses 10 ms. Every answer must be the core's.
async fn good_clients(port: u16, ca: Vec<u8>, stop: Arc<AtomicBool>) -> Arc<Good> {
    let good = Arc::new(Good::default());
    let mut tasks = tokio::task::JoinSet::new();
    for (alpn, keep) in [(H1, true), (H2, true), (H2_H1, false), (H1, false)] {
        let (good, stop, config) = (good.clone(), stop.clone(), client_config(&ca, alpn));
        tasks.spawn(async move {
            let mut conn: Option<Conn> = None;
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let (endpoint, body, expected) = &reviews().0[i % reviews().0.len()];
                i += 1;
                let path = if *endpoint == Endpoint::Validate { "/validate" } else { "/mutate" };
                let started = Instant::now();
                if conn.is_none() || !keep {
                    match tokio::time::timeout(REQUEST_BOUND, Conn::connect(port, &config)).await {
                        Ok(Ok(c)) => conn = Some(c),
                        Ok(Err(e)) => {
                            good.fail(format!("connect: {e:#}"));
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                        Err(_) => {
                            good.fail("connect: timed out".into());
                            continue;
                        }
                    }
                }
                let c = conn.as_mut().unwrap();
                match tokio::time::timeout(REQUEST_BOUND, c.post(path, body.clone())).await {
                    Ok(Ok((StatusCode::OK, answer))) => {
                        let took = started.elapsed();
                        match serde_json::from_slice::<Value>(&answer) {
                            Ok(got) if got == *expected => {
                                good.answered.fetch_add(1, Ordering::Relaxed);
                                let l = if keep { &good.keep_alive } else { &good.new_connection };
                                l.lock().unwrap().push(took);
                            }
                            _ => good.fail(format!("wrong answer: {}", String::from_utf8_lossy(&answer))),
                        }
                    }
                    Ok(Ok((status, answer))) => {
                        good.fail(format!("status {status}: {}", String::from_utf8_lossy(&answer)))
                    }
                    Ok(Err(e)) => {
                        good.fail(format!("request: {e:#}"));
                        conn = None;
                    }
                    Err(_) => {
                        good.fail("request: timed out".into());
                        conn = None;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("a good client panicked");
    }
    good
}

/// Runs the good clients for `d`.
async fn measure(server: &Server, d: Duration) -> Arc<Good> {
    let stop = Arc::new(AtomicBool::new(false));
    let overflows = listen_overflows();
    let clients = tokio::spawn(good_clients(server.port, server.ca.clone(), stop.clone()));
    tokio::time::sleep(d).await;
    stop.store(true, Ordering::Relaxed);
    let good = clients.await.unwrap();
    good.overflows.store(listen_overflows() - overflows, Ordering::Relaxed);
    good
}

fn assert_served(what: &str, good: &Good) {
    let failures = good.failures.lock().unwrap();
    assert!(failures.is_empty(), "{what}: good clients failed: {failures:#?}");
    assert!(good.answered.load(Ordering::Relaxed) > 0, "{what}: no good request answered");
}

fn report(attack: &str, without: &Good, under: &Good) {
    let fmt = |l: &Mutex<Latencies>| {
        let mut l = l.lock().unwrap();
        format!("p50 {:.2} ms, p99 {:.2} ms ({} requests)", ms(l.percentile(50.0)), ms(l.percentile(99.0)), l.len())
    };
    eprintln!("abuse: {attack}: keep-alive without: {}; under: {}", fmt(&without.keep_alive), fmt(&under.keep_alive));
    eprintln!(
        "abuse: {attack}: new connection without: {}; under: {}",
        fmt(&without.new_connection),
        fmt(&under.new_connection)
    );
    eprintln!(
        "abuse: {attack}: accept-queue overflows (machine-wide) without: {}; under: {}",
        without.overflows.load(Ordering::Relaxed),
        under.overflows.load(Ordering::Relaxed)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Baseline, then `attack` (given the stop flag) while the good clients run; checks both.
///
/// The attack runs on a runtime of its own, one thread: the good clients' tasks never queue
/// behind thousands of attacking ones, and the attacker gets about one of the machine's two
/// cores (the server and the good clients share the rest). After `stop` the attack opens
/// nothing new and returns when the server has ended what it holds.
async fn under_attack<F, Fut>(name: &str, attack: F) -> (Server, Fut::Output)
where
    F: FnOnce(u16, Vec<u8>, Arc<AtomicBool>) -> Fut + Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    let mut server = Server::start();
    let d = attack_secs();
    // Warm-up, then the baseline.
    measure(&server, Duration::from_millis(500)).await;
    let without = measure(&server, d / 2).await;
    assert_served(&format!("{name}, baseline"), &without);

    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let (port, ca, stop) = (server.port, server.ca.clone(), stop.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(attack(port, ca, stop))
        })
    };
    // Let the attack build up before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let under = measure(&server, d).await;
    stop.store(true, Ordering::Relaxed);
    let outcome = tokio::task::spawn_blocking(move || attacker.join().expect("the attack panicked")).await.unwrap();
    assert_served(&format!("{name}, under attack"), &under);
    report(name, &without, &under);
    server.assert_up();
    (server, outcome)
}

/// Resolves when the peer closes the connection (EOF or error); discards what it sends.
async fn closed<R: tokio::io::AsyncRead + Unpin>(mut read: R) -> usize {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n,
        }
    }
}

/// The server's open files, once they have settled after an attack (its idle timeouts).
fn settled_open_files(pid: u32, bound: usize) -> usize {
    let mut last = open_files(pid);
    wait_for(SERVER_TIMEOUT * 4, &format!("pitrguard's open files to drop to {bound}"), || {
        last = open_files(pid);
        last <= bound
    });
    last
}

// ---------------------------------------------------------------------------
// header trickling

#[derive(Default)]
struct Cut {
    connections: AtomicUsize,
    /// Connections whose whole head (or handshake) got through: must stay 0.
    completed: AtomicUsize,
    /// The longest time from connect (or handshake) to the server's close, in ms.
    longest_ms: AtomicU64,
    /// Most connections open at once.
    peak: AtomicUsize,
    /// Connections still open [`SERVER_TIMEOUT`] + [`SLACK`] after the attack stopped.
    outlived: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Cut {
    fn lived(&self, since: Instant) {
        self.longest_ms.fetch_max(since.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

const HEAD: &[u8] =
    b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n{}";

/// Sends `bytes` one at a time, every `gap`, until the peer closes; true if all got through.
async fn trickle<W: tokio::io::AsyncWrite + Unpin, R: tokio::io::AsyncRead + Unpin>(
    mut write: W,
    read: R,
    bytes: &[u8],
    gap: Duration,
) -> bool {
    let writer = async {
        for b in bytes {
            if write.write_all(&[*b]).await.is_err() || write.flush().await.is_err() {
                return false;
            }
            tokio::time::sleep(gap).await;
        }
        true
    };
    tokio::select! {
        _ = closed(read) => false,
        all = writer => all,
    }
}

/// `n` trickling connections, each reopened when the server cuts it, until `stop`: a quarter
/// trickle a TLS ClientHello over TCP, a quarter an HTTP/2 HEADERS frame, half an HTTP/1.1 head.
async fn slowloris(port: u16, ca: Vec<u8>, stop: Arc<AtomicBool>, n: usize) -> Arc<Cut> {
    let cut = Arc::new(Cut::default());
    let gap = Duration::from_millis(200);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (cut, stop) = (cut.clone(), stop.clone());
        let (h1, h2) = (client_config(&ca, H1), client_config(&ca, H2));
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Timed from the connect (a handshake) or the end of the handshake (a head).
                let completed = match i % 4 {
                    0 => {
                        // A ClientHello, trickled: a record header, then a body that never completes.
                        let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)).await else { continue };
                        let since = Instant::now();
                        let (read, write) = tcp.into_split();
                        let mut hello = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
                        hello.extend([0u8; 200]);
                        let completed = trickle(write, read, &hello, gap).await;
                        cut.lived(since);
                        completed
                    }
                    1 => {
                        let Ok(tls) = tls_connect(port, &h2).await else { continue };
                        let since = Instant::now();
                        let (read, write) = tokio::io::split(tls);
                        let mut bytes = h2_preface();
                        bytes.extend(frame(1, 0x4 | 0x1, 1, &request_headers(b"/validate", None)));
                        let completed = trickle(write, read, &bytes, gap).await;
                        cut.lived(since);
                        completed
                    }
                    _ => {
                        let Ok(tls) = tls_connect(port, &h1).await else { continue };
                        let since = Instant::now();
                        let (read, write) = tokio::io::split(tls);
                        let completed = trickle(write, read, HEAD, gap).await;
                        cut.lived(since);
                        completed
                    }
                };
                cut.connections.fetch_add(1, Ordering::Relaxed);
                if completed {
                    cut.completed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    cut
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_trickling_is_cut_off_while_good_clients_are_served() {
    let _one = one_at_a_time().await;
    let n = 256;
    let (mut server, cut) = under_attack(&format!("header trickling ({n} connections)"), move |port, ca, stop| {
        slowloris(port, ca, stop, n)
    })
    .await;
    let longest = Duration::from_millis(cut.longest_ms.load(Ordering::Relaxed));
    eprintln!(
        "abuse: header trickling: {} connections, longest lived {:.1} s, completed {}",
        cut.connections.load(Ordering::Relaxed),
        longest.as_secs_f64(),
        cut.completed.load(Ordering::Relaxed)
    );
    assert_eq!(cut.completed.load(Ordering::Relaxed), 0, "a trickled head or handshake got through");
    assert!(cut.connections.load(Ordering::Relaxed) >= n, "{:?}", cut.failures.lock().unwrap());
    assert!(longest <= SERVER_TIMEOUT + SLACK, "a trickling connection lived {longest:?}");
    settled_open_files(server.pid(), 64);
    server.assert_up();
}

// ---------------------------------------------------------------------------
// idle connections

/// `n` idle connections held open, each reopened when the server closes it, until `stop`:
/// three quarters plain TCP, an eighth TLS + HTTP/1.1, an eighth TLS + HTTP/2 (preface and
/// SETTINGS sent, no request); TLS handshakes are what the one attacking thread can afford. After `stop` nothing is reopened, and what is open waits for the
/// server to close it: those still open [`SERVER_TIMEOUT`] + [`SLACK`] later are `outlived`.
async fn idle(port: u16, ca: Vec<u8>, stop: Arc<AtomicBool>, n: usize) -> Arc<Cut> {
    let cut = Arc::new(Cut::default());
    let open = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let (h1, h2) = (client_config(&ca, H1), client_config(&ca, H2));
    for i in 0..n {
        let (cut, stop, open, h1, h2) = (cut.clone(), stop.clone(), open.clone(), h1.clone(), h2.clone());
        tasks.spawn(async move {
            // Spread the first connects over a second, as a real flood would arrive.
            tokio::time::sleep(Duration::from_micros((i as u64 * 1_000_000) / n as u64)).await;
            while !stop.load(Ordering::Relaxed) {
                // Timed from the connect (plain TCP: the handshake timeout) or the end of the
                // handshake (the header read timeout).
                let result: anyhow::Result<()> = async {
                    let since = match i % 8 {
                        0..=5 => {
                            let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
                            let since = Instant::now();
                            open.fetch_add(1, Ordering::Relaxed);
                            closed(tcp).await;
                            since
                        }
                        6 => {
                            let tls = tls_connect(port, &h1).await?;
                            let since = Instant::now();
                            open.fetch_add(1, Ordering::Relaxed);
                            closed(tls).await;
                            since
                        }
                        _ => {
                            let mut tls = tls_connect(port, &h2).await?;
                            let since = Instant::now();
                            open.fetch_add(1, Ordering::Relaxed);
                            // The server may have cut the handshake already (its timeout counts from accept).
                            let _ = tls.write_all(&h2_preface()).await;
                            closed(tls).await;
                            since
                        }
                    };
                    open.fetch_sub(1, Ordering::Relaxed);
                    cut.connections.fetch_add(1, Ordering::Relaxed);
                    cut.lived(since);
                    Ok(())
                }
                .await;
                if let Err(e) = result {
                    {
                        let mut f = cut.failures.lock().unwrap();
                        if f.len() < 5 {
                            f.push(format!("{e:#}"));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    // How many were open at once, sampled.
    let mut peak = 0;
    while !stop.load(Ordering::Relaxed) {
        peak = peak.max(open.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cut.peak.store(peak, Ordering::Relaxed);
    let drained = tokio::time::timeout(SERVER_TIMEOUT + SLACK, async { while tasks.join_next().await.is_some() {} });
    if drained.await.is_err() {
        eprintln!("abuse: idle connections: {} still open after the attack", open.load(Ordering::Relaxed));
        cut.outlived.store(open.load(Ordering::Relaxed), Ordering::Relaxed);
        tasks.abort_all();
    }
    cut
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_are_closed_while_good_clients_are_served() {
    let _one = one_at_a_time().await;
    let want = std::env::var("PITRGUARD_ABUSE_IDLE").ok().and_then(|s| s.parse().ok()).unwrap_or(3000usize);
    let n = Server::connection_budget(want);
    let (mut server, cut) =
        under_attack(&format!("idle connections ({n})"), move |port, ca, stop| idle(port, ca, stop, n)).await;
    let longest = Duration::from_millis(cut.longest_ms.load(Ordering::Relaxed));
    eprintln!(
        "abuse: idle connections: {} opened and closed by the server, at most {} open at once, longest lived {:.1} s; \
         attacker errors {:?}",
        cut.connections.load(Ordering::Relaxed),
        cut.peak.load(Ordering::Relaxed),
        longest.as_secs_f64(),
        cut.failures.lock().unwrap()
    );
    assert!(cut.peak.load(Ordering::Relaxed) >= n / 2, "the attack never held half of its {n} connections open");
    assert_eq!(cut.outlived.load(Ordering::Relaxed), 0, "idle connections were still open after the server's timeouts");
    let files = settled_open_files(server.pid(), 64);
    eprintln!("abuse: idle connections: pitrguard's open files after the attack {files}");
    server.assert_up();
}

// ---------------------------------------------------------------------------
// HTTP/2 by hand

fn h2_preface() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS: a large initial stream window, so that answers never wait for WINDOW_UPDATE.
    let mut settings = Vec::new();
    settings.extend([0x00, 0x04]);
    settings.extend(0x7fff_ffffu32.to_be_bytes());
    out.extend(frame(0x4, 0, 0, &settings));
    // And the same for the connection.
    out.extend(frame(0x8, 0, 0, &(0x7fff_ffffu32 - 65_535).to_be_bytes()));
    out
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// An HPACK block for `POST path` (static-table names, literal values, no Huffman).
fn request_headers(path: &[u8], content_length: Option<usize>) -> Vec<u8> {
    let mut out = vec![0x83, 0x87]; // :method POST, :scheme https
    let literal = |out: &mut Vec<u8>, name_index: u8, value: &[u8]| {
        if name_index < 15 {
            out.push(name_index);
        } else {
            out.extend([0x0f, name_index - 15]);
        }
        out.push(value.len() as u8);
        out.extend(value);
    };
    literal(&mut out, 4, path); // :path
    literal(&mut out, 1, b"localhost"); // :authority
    literal(&mut out, 31, b"application/json"); // content-type
    if let Some(n) = content_length {
        literal(&mut out, 28, n.to_string().as_bytes()); // content-length
    }
    out
}

/// What the server sent on one raw HTTP/2 connection.
#[derive(Debug, Default, Clone)]
struct H2Seen {
    /// Response HEADERS frames (answers).
    answers: usize,
    /// RST_STREAM frames by error code.
    resets: std::collections::BTreeMap<u32, usize>,
    /// GOAWAY: (last stream id, error code, debug data).
    goaway: Option<(u32, u32, String)>,
}

/// Reads frames until the connection ends; answers SETTINGS and PING.
async fn read_frames<R, W>(mut read: R, write: Arc<tokio::sync::Mutex<W>>, seen: Arc<Mutex<H2Seen>>)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut head = [0u8; 9];
    loop {
        if read.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let mut payload = vec![0u8; len];
        if read.read_exact(&mut payload).await.is_err() {
            return;
        }
        let reply = match kind {
            0x1 => {
                seen.lock().unwrap().answers += 1;
                None
            }
            0x3 => {
                let code = u32::from_be_bytes(payload[..4].try_into().unwrap());
                *seen.lock().unwrap().resets.entry(code).or_default() += 1;
                None
            }
            0x4 if flags & 0x1 == 0 => Some(frame(0x4, 0x1, 0, &[])),
            0x6 if flags & 0x1 == 0 => Some(frame(0x6, 0x1, 0, &payload)),
            0x7 => {
                let last = u32::from_be_bytes(payload[..4].try_into().unwrap()) & 0x7fff_ffff;
                let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                let debug = String::from_utf8_lossy(&payload[8..]).into_owned();
                seen.lock().unwrap().goaway = Some((last, code, debug));
                None
            }
            _ => None,
        };
        if let Some(reply) = reply {
            let mut w = write.lock().await;
            if w.write_all(&reply).await.is_err() {
                return;
            }
        }
    }
}

const CANCEL: u32 = 0x8;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// How a raw HTTP/2 attack connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The server sent GOAWAY with this error code.
    GoAway(u32),
    /// The server closed the connection without GOAWAY, this long after the handshake.
    Closed(Duration),
    /// The attack stopped first (its end, or `max_streams` streams sent).
    ByUs,
}

/// One raw HTTP/2 connection: `burst(next_stream_id)` gives the bytes of one burst; bursts are
/// written until the server ends the connection, `max_streams` streams were opened, or `stop`.
/// Returns what the server sent, how many streams were opened and how the connection ended.
async fn h2_attack_connection(
    port: u16,
    config: &Arc<rustls::ClientConfig>,
    stop: &AtomicBool,
    max_streams: u32,
    streams_per_burst: u32,
    gap: Duration,
    burst: impl Fn(u32) -> Vec<u8>,
) -> anyhow::Result<(H2Seen, u32, Ended)> {
    let tls = tls_connect(port, config).await?;
    let since = Instant::now();
    anyhow::ensure!(tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice()), "no h2");
    let (read, write) = tokio::io::split(tls);
    let write = Arc::new(tokio::sync::Mutex::new(write));
    let seen = Arc::new(Mutex::new(H2Seen::default()));
    write.lock().await.write_all(&h2_preface()).await?;
    let reader = tokio::spawn(read_frames(read, write.clone(), seen.clone()));
    let server_ended =
        |reader: &tokio::task::JoinHandle<()>| reader.is_finished() || seen.lock().unwrap().goaway.is_some();
    let mut next = 1u32;
    while next < max_streams * 2 && !stop.load(Ordering::Relaxed) && !server_ended(&reader) {
        let bytes = burst(next);
        next += 2 * streams_per_burst;
        let mut w = write.lock().await;
        if w.write_all(&bytes).await.is_err() || w.flush().await.is_err() {
            break;
        }
        drop(w);
        if gap.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(gap).await;
        }
    }
    // The server's verdict on what was sent: wait for it, briefly once the attack is over.
    let wait = if stop.load(Ordering::Relaxed) { Duration::from_secs(1) } else { SERVER_TIMEOUT + SLACK };
    let _ = tokio::time::timeout(wait, async {
        while !server_ended(&reader) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let lived = since.elapsed();
    let seen = seen.lock().unwrap().clone();
    let ended = match (&seen.goaway, reader.is_finished()) {
        (Some((_, code, _)), _) => Ended::GoAway(*code),
        (None, true) => Ended::Closed(lived),
        (None, false) => Ended::ByUs,
    };
    let _ = write.lock().await.shutdown().await;
    reader.abort();
    Ok((seen, next / 2, ended))
}

#[derive(Default)]
struct H2Outcome {
    connections: usize,
    streams: u64,
    answers: usize,
    resets: std::collections::BTreeMap<u32, usize>,
    /// How the connections ended: "GOAWAY <code> <debug data>", "closed by the server", "by us".
    ended: std::collections::BTreeMap<String, usize>,
    /// Connections the server ended with a GOAWAY other than ENHANCE_YOUR_CALM.
    other_goaway: usize,
    /// The longest a connection lived that the server closed without GOAWAY.
    longest_closed: Duration,
    /// Answers on connections the server closed without GOAWAY.
    answers_on_closed: usize,
    /// Connections that sent all their streams and were still open: the server did not bound them.
    unbounded: usize,
    /// Most streams opened on one connection before it ended.
    most_streams: u32,
    errors: Vec<String>,
}

impl H2Outcome {
    fn add(&mut self, seen: H2Seen, streams: u32, ended: Ended, stopped: bool) {
        self.connections += 1;
        self.streams += u64::from(streams);
        self.most_streams = self.most_streams.max(streams);
        self.answers += seen.answers;
        for (code, n) in &seen.resets {
            *self.resets.entry(*code).or_default() += n;
        }
        let key = match ended {
            Ended::GoAway(code) => {
                if code != ENHANCE_YOUR_CALM {
                    self.other_goaway += 1;
                }
                let debug = seen.goaway.as_ref().map_or(String::new(), |g| g.2.clone());
                format!("GOAWAY code {code} {debug:?}")
            }
            Ended::Closed(lived) => {
                self.longest_closed = self.longest_closed.max(lived);
                self.answers_on_closed += seen.answers;
                // Its GOAWAY can be lost: closed with our frames unread, the connection is reset.
                "closed by the server, no GOAWAY read".to_string()
            }
            Ended::ByUs => {
                if !stopped {
                    self.unbounded += 1;
                }
                "by us".to_string()
            }
        };
        *self.ended.entry(key).or_default() += 1;
    }
}

/// `conns` connections in parallel, each reopened after the server ends it, until `stop`; each
/// writes bursts of `streams_per_burst` streams, `gap` apart (none: as fast as it can).
#[allow(clippy::too_many_arguments)]
async fn h2_flood(
    port: u16,
    ca: Vec<u8>,
    stop: Arc<AtomicBool>,
    conns: usize,
    max_streams: u32,
    streams_per_burst: u32,
    gap: Duration,
    burst: fn(u32, u32) -> Vec<u8>,
) -> H2Outcome {
    let outcome = Arc::new(Mutex::new(H2Outcome::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let (outcome, stop, config) = (outcome.clone(), stop.clone(), client_config(&ca, H2));
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let result = h2_attack_connection(port, &config, &stop, max_streams, streams_per_burst, gap, |next| {
                    burst(next, streams_per_burst)
                })
                .await;
                let mut o = outcome.lock().unwrap();
                match result {
                    Ok((seen, streams, ended)) => o.add(seen, streams, ended, stop.load(Ordering::Relaxed)),
                    Err(e) => o.errors.push(format!("{e:#}")),
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Arc::try_unwrap(outcome).ok().unwrap().into_inner().unwrap()
}

/// `n` tiny POSTs (`{}`) on streams `first`, `first + 2`, ...
fn tiny_streams(first: u32, n: u32) -> Vec<u8> {
    let headers = request_headers(b"/validate", Some(2));
    let mut out = Vec::new();
    for i in 0..n {
        let id = first + 2 * i;
        out.extend(frame(0x1, 0x4, id, &headers));
        out.extend(frame(0x0, 0x1, id, b"{}"));
    }
    out
}

/// Stream 1 a real (tiny) request, then [`rapid_resets`]: the connection has made a request,
/// so the first-request deadline no longer applies to it. For bursts of one stream.
fn request_then_rapid_resets(first: u32, n: u32) -> Vec<u8> {
    if first == 1 { tiny_streams(1, 1) } else { rapid_resets(first, n) }
}

/// `n` streams opened and cancelled at once (HEADERS without END_STREAM, then RST_STREAM(CANCEL)).
fn rapid_resets(first: u32, n: u32) -> Vec<u8> {
    let headers = request_headers(b"/validate", None);
    let mut out = Vec::new();
    for i in 0..n {
        let id = first + 2 * i;
        out.extend(frame(0x1, 0x4, id, &headers));
        out.extend(frame(0x3, 0, id, &CANCEL.to_be_bytes()));
    }
    out
}

fn print_h2(name: &str, o: &H2Outcome) {
    eprintln!(
        "abuse: {name}: {} connections, {} streams opened (at most {} on one), {} answers, RST_STREAM by code {:?}, \
         ended {:?} (closed without GOAWAY after at most {:.1} s), attacker errors {:?}",
        o.connections,
        o.streams,
        o.most_streams,
        o.answers,
        o.resets,
        o.ended,
        o.longest_closed.as_secs_f64(),
        &o.errors[..o.errors.len().min(3)]
    );
}

/// Every connection was ended by the server: GOAWAY(ENHANCE_YOUR_CALM), or closed without an
/// answer within the first-request deadline (an HTTP/2 connection whose streams all were
/// cancelled before reaching the router has not made a request).
fn assert_bounded(o: &H2Outcome) {
    assert!(o.connections > 0, "no attack connection completed: {:?}", o.errors);
    assert_eq!(o.unbounded, 0, "connections sent all their streams and were not stopped: {:?}", o.ended);
    assert_eq!(o.other_goaway, 0, "a GOAWAY other than ENHANCE_YOUR_CALM: {:?}", o.ended);
    assert!(o.longest_closed <= SERVER_TIMEOUT + SLACK, "a connection lived {:?}", o.longest_closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tiny_h2_streams_are_refused_beyond_the_limit_while_good_clients_are_served() {
    let _one = one_at_a_time().await;
    // 4 connections, each opening 2000 streams in bursts of 100 (16 times the server's limit).
    let (mut server, o) = under_attack("many tiny HTTP/2 streams (4 connections)", |port, ca, stop| {
        h2_flood(port, ca, stop, 4, 2000, 100, Duration::ZERO, tiny_streams)
    })
    .await;
    print_h2("many tiny HTTP/2 streams", &o);
    assert_bounded(&o);
    assert!(o.resets.get(&REFUSED_STREAM).copied().unwrap_or(0) > 0, "streams over the limit must be refused");
    settled_open_files(server.pid(), 64);
    server.assert_up();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_connections_are_ended_while_good_clients_are_served() {
    let _one = one_at_a_time().await;
    // 4 connections, each opening and cancelling streams in bursts of 100 for as long as the
    // server lets it (no request ever reaches the router).
    let (mut server, o) = under_attack("rapid reset (4 connections)", |port, ca, stop| {
        h2_flood(port, ca, stop, 4, u32::MAX / 4, 100, Duration::ZERO, rapid_resets)
    })
    .await;
    print_h2("rapid reset", &o);
    assert_bounded(&o);
    assert_eq!(o.answers_on_closed, 0);
    settled_open_files(server.pid(), 64);
    server.assert_up();
}

/// The rapid reset the server does not bound: one real request first, then one cancelled stream
/// every 2 ms per connection, slow enough that the server has accepted each before its reset
/// arrives (so h2's limit of 20 cancelled streams waiting to be accepted is never reached).
/// Not run by `cargo test` (it asserts nothing about the attacker); hack/abuse-latency.sh runs
/// it for the figures: how long its connections last and what the good clients see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: hack/abuse-latency.sh"]
async fn rapid_reset_after_a_request_is_measured() {
    let _one = one_at_a_time().await;
    let (mut server, o) = under_attack("rapid reset after one request (4 connections)", |port, ca, stop| {
        h2_flood(port, ca, stop, 4, u32::MAX / 4, 1, Duration::from_millis(2), request_then_rapid_resets)
    })
    .await;
    print_h2("rapid reset after one request", &o);
    settled_open_files(server.pid(), 64);
    server.assert_up();
}
