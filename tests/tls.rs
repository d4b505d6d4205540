//! The TLS transport in-process: real sockets on 127.0.0.1, certificates
//! from `pitrguard::certs`, a rustls client, curl/openssl (OpenSSL), and a
//! trivial router: this layer must not care what the router does.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Request, StatusCode, Version};
use axum::routing::{get, post};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pitrguard::certs::{self, DevCerts};
use pitrguard::server::tls::{ReloadingTls, TlsError, TlsFiles};
use pitrguard::server::transport::{Limits, serve_plain, serve_tls};
use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

/// Upper bound of every test.
const TEST_BOUND: Duration = Duration::from_secs(90);
/// Upper bound of one wait inside a test ("eventually").
const WAIT: Duration = Duration::from_secs(15);
const VALIDATE_BODY: &[u8] = br#"{"response":{"allowed":true}}"#;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn bounded<F: Future>(f: F) -> F::Output {
    timeout(TEST_BOUND, f).await.expect("test exceeded its time bound")
}

// ---------------------------------------------------------------------------
// certificates and files

fn dev_certs() -> DevCerts {
    certs::generate(&["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap()
}

fn leaf_der(certs: &DevCerts) -> Vec<u8> {
    CertificateDer::from_pem_slice(certs.cert_pem.as_bytes()).unwrap().as_ref().to_vec()
}

/// Writes `content` to a temporary name next to `path`, then renames it
/// over `path` (what a careful tool does).
fn put(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp-new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `tls.crt` and `tls.key` in `dir`.
fn put_pair(dir: &Path, certs: &DevCerts) -> TlsFiles {
    put(&dir.join("tls.key"), &certs.key_pem);
    put(&dir.join("tls.crt"), &certs.cert_pem);
    TlsFiles { cert: dir.join("tls.crt"), key: dir.join("tls.key"), client_ca: None }
}

/// A Kubernetes Secret volume: `tls.crt -> ..data/tls.crt`,
/// `..data -> ..<version>`.
fn k8s_volume(dir: &Path, version: &str, certs: &DevCerts) -> TlsFiles {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("tls.crt"), &certs.cert_pem).unwrap();
    std::fs::write(data.join("tls.key"), &certs.key_pem).unwrap();
    std::os::unix::fs::symlink(format!("..{version}"), dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", dir.join("tls.key")).unwrap();
    TlsFiles { cert: dir.join("tls.crt"), key: dir.join("tls.key"), client_ca: None }
}

/// What the kubelet does on a Secret update: a new timestamped directory,
/// a new `..data_tmp` symlink to it, renamed over `..data` (atomic), the
/// old directory removed.
fn k8s_swap(dir: &Path, old: &str, new: &str, certs: &DevCerts) {
    let data = dir.join(format!("..{new}"));
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("tls.crt"), &certs.cert_pem).unwrap();
    std::fs::write(data.join("tls.key"), &certs.key_pem).unwrap();
    std::os::unix::fs::symlink(format!("..{new}"), dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join(format!("..{old}"))).unwrap();
}

/// A CA for client certificates and a client certificate it signs.
struct ClientPki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn client_pki(cn: &str) -> ClientPki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, "test client CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name.push(DnType::CommonName, cn);
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &Issuer::from_params(&ca, &ca_key)).unwrap();
    ClientPki { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

// ---------------------------------------------------------------------------
// the server

#[derive(Clone)]
struct AppState {
    /// Requests that reached `/hold`.
    held: Arc<AtomicUsize>,
    /// `/hold` answers once this is true.
    release: Arc<watch::Sender<bool>>,
}

fn app(state: AppState) -> Router {
    Router::new()
        .route(
            "/validate",
            // Reads the request body, as an admission handler does (an
            // HTTP/2 answer sent before the body is read ends with
            // RST_STREAM(NO_ERROR), which curl 7.88 reports as an error).
            post(|_review: Bytes| async {
                ([("content-type", "application/json")], Bytes::from_static(VALIDATE_BODY))
            }),
        )
        .route("/hold", post(hold))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn hold(State(state): State<AppState>) -> &'static str {
    let mut release = state.release.subscribe();
    state.held.fetch_add(1, Ordering::SeqCst);
    let _ = release.wait_for(|released| *released).await;
    "released"
}

struct Server {
    addr: SocketAddr,
    tls: Arc<ReloadingTls>,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
    watcher: Option<JoinHandle<()>>,
}

impl Server {
    async fn start(files: TlsFiles, limits: Limits, watch_poll: Option<Duration>) -> Server {
        let tls = ReloadingTls::load(files).expect("valid TLS files");
        let watcher = watch_poll.map(|poll| tls.spawn_watcher_with_poll(poll));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AppState { held: Arc::new(AtomicUsize::new(0)), release: Arc::new(watch::channel(false).0) };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_tls(listener, tls.clone(), app(state.clone()), limits, async move {
            let _ = stopped.await;
        }));
        Server { addr, tls, state, stop: Some(stop), task: Some(task), watcher }
    }

    fn shutdown(&mut self) {
        let _ = self.stop.take().expect("shut down once").send(());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        if let Some(watcher) = &self.watcher {
            watcher.abort();
        }
    }
}

/// The defaults (5s handshake and header timeouts: roomy on a busy
/// 2-core machine), with a 10s drain.
fn test_limits() -> Limits {
    Limits { drain_timeout: Duration::from_secs(10), ..Limits::default() }
}

// ---------------------------------------------------------------------------
// a rustls + hyper client

const H2_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1: &[&[u8]] = &[b"http/1.1"];

fn client_config(trusted_cas: &[&str], alpn: &[&[u8]]) -> ClientConfig {
    client_config_with(trusted_cas, alpn, None, false)
}

fn client_config_with(
    trusted_cas: &[&str],
    alpn: &[&[u8]],
    client_cert: Option<(&str, &str)>,
    tls12_only: bool,
) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in trusted_cas {
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let builder = ClientConfig::builder_with_provider(provider);
    let builder = if tls12_only {
        builder.with_protocol_versions(&[&rustls::version::TLS12])
    } else {
        builder.with_safe_default_protocol_versions()
    }
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<_, _>>().unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Every connection does a full handshake, so it sees the certificate
    // the server uses now.
    config.resumption = Resumption::disabled();
    config
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

struct Client {
    sender: Sender,
    peer_cert: Vec<u8>,
    tls_version: rustls::ProtocolVersion,
}

struct Reply {
    status: StatusCode,
    version: Version,
    body: Bytes,
}

impl Client {
    async fn connect(addr: SocketAddr, config: &ClientConfig) -> anyhow::Result<Client> {
        let tcp = TcpStream::connect(addr).await?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config.clone()));
        let name = ServerName::try_from("localhost")?.to_owned();
        let stream = connector.connect(name, tcp).await?;
        let (_, session) = stream.get_ref();
        let peer_cert = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default();
        let tls_version = session.protocol_version().unwrap();
        let h2 = session.alpn_protocol() == Some(b"h2".as_slice());
        let io = TokioIo::new(stream);
        let sender = if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = http1::handshake(io).await?;
            tokio::spawn(conn);
            Sender::H1(sender)
        };
        Ok(Client { sender, peer_cert, tls_version })
    }

    /// Another stream on the same HTTP/2 connection.
    fn h2_stream(&self) -> Client {
        match &self.sender {
            Sender::H2(sender) => Client {
                sender: Sender::H2(sender.clone()),
                peer_cert: self.peer_cert.clone(),
                tls_version: self.tls_version,
            },
            Sender::H1(_) => panic!("not an HTTP/2 connection"),
        }
    }

    async fn post(&mut self, path: &str) -> anyhow::Result<Reply> {
        let body = Full::new(Bytes::from_static(b"{}"));
        let response = match &mut self.sender {
            Sender::H1(sender) => {
                sender.ready().await?;
                let request = Request::post(path)
                    .header("host", "localhost")
                    .header("content-type", "application/json")
                    .body(body)?;
                sender.send_request(request).await?
            }
            Sender::H2(sender) => {
                sender.ready().await?;
                let request = Request::post(format!("https://localhost{path}"))
                    .header("content-type", "application/json")
                    .body(body)?;
                sender.send_request(request).await?
            }
        };
        let status = response.status();
        let version = response.version();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply { status, version, body })
    }
}

/// One request on a new connection; checks the answer of `/validate`.
async fn validate_once(addr: SocketAddr, config: &ClientConfig) -> anyhow::Result<Client> {
    let mut client = timeout(WAIT, Client::connect(addr, config)).await??;
    let reply = timeout(WAIT, client.post("/validate")).await??;
    anyhow::ensure!(reply.status == StatusCode::OK, "status {}", reply.status);
    anyhow::ensure!(reply.body == VALIDATE_BODY, "body {:?}", reply.body);
    Ok(client)
}

/// Waits until a new handshake presents `der`.
async fn wait_for_cert(addr: SocketAddr, config: &ClientConfig, der: &[u8]) {
    timeout(WAIT, async {
        loop {
            if let Ok(client) = validate_once(addr, config).await
                && client.peer_cert == der
            {
                return;
            }
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a new handshake sees the new certificate");
}

// ---------------------------------------------------------------------------
// a load generator: new connections and keep-alive connections

#[derive(Debug, Default)]
struct LoadReport {
    ok: usize,
    failures: Vec<String>,
}

struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<LoadReport>>,
}

impl Load {
    fn start(addr: SocketAddr, trusted_cas: &[&str]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let both = client_config(trusted_cas, H2_H1);
        let h1 = client_config(trusted_cas, H1);
        let mut tasks = Vec::new();
        // A new connection (full handshake) per request, HTTP/2 and HTTP/1.1.
        for config in [both.clone(), h1.clone()] {
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut report = LoadReport::default();
                while !stop.load(Ordering::Relaxed) {
                    match validate_once(addr, &config).await {
                        Ok(_) => report.ok += 1,
                        Err(e) => report.failures.push(format!("new connection: {e:#}")),
                    }
                    sleep(Duration::from_millis(5)).await;
                }
                report
            }));
        }
        // One keep-alive connection each, HTTP/2 and HTTP/1.1, used throughout.
        for config in [both, h1] {
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut report = LoadReport::default();
                let mut client = match validate_once(addr, &config).await {
                    Ok(client) => client,
                    Err(e) => {
                        report.failures.push(format!("keep-alive connect: {e:#}"));
                        return report;
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    match timeout(WAIT, client.post("/validate")).await {
                        Ok(Ok(reply)) if reply.status == StatusCode::OK => report.ok += 1,
                        Ok(Ok(reply)) => report.failures.push(format!("keep-alive: status {}", reply.status)),
                        Ok(Err(e)) => report.failures.push(format!("keep-alive: {e:#}")),
                        Err(_) => report.failures.push("keep-alive: timed out".to_owned()),
                    }
                    sleep(Duration::from_millis(5)).await;
                }
                report
            }));
        }
        Load { stop, tasks }
    }

    async fn finish(self) -> Vec<LoadReport> {
        self.stop.store(true, Ordering::Relaxed);
        let mut reports = Vec::new();
        for task in self.tasks {
            reports.push(timeout(WAIT, task).await.unwrap().unwrap());
        }
        reports
    }
}

fn assert_no_failures(reports: &[LoadReport]) {
    for (i, report) in reports.iter().enumerate() {
        assert!(
            report.failures.is_empty(),
            "load task {i}: {} failed, {} ok: {:?}",
            report.failures.len(),
            report.ok,
            report.failures
        );
        assert!(report.ok > 0, "load task {i} sent no request");
    }
}

// ---------------------------------------------------------------------------
// protocol versions and ALPN

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rustls_client_gets_h2_by_alpn_and_http11_otherwise() {
    init_tracing();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = dev_certs();
        let server = Server::start(put_pair(dir.path(), &pki), test_limits(), None).await;
        let cas = [pki.ca_pem.as_str()];

        let mut client = Client::connect(server.addr, &client_config(&cas, H2_H1)).await.unwrap();
        assert_eq!(client.peer_cert, leaf_der(&pki));
        assert_eq!(client.tls_version, rustls::ProtocolVersion::TLSv1_3);
        for _ in 0..3 {
            let reply = client.post("/validate").await.unwrap();
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.version, Version::HTTP_2);
            assert_eq!(reply.body, VALIDATE_BODY);
        }

        for alpn in [H1, &[][..]] {
            let mut client = Client::connect(server.addr, &client_config(&cas, alpn)).await.unwrap();
            for _ in 0..3 {
                let reply = client.post("/validate").await.unwrap();
                assert_eq!(reply.status, StatusCode::OK);
                assert_eq!(reply.version, Version::HTTP_11, "ALPN {alpn:?}");
                assert_eq!(reply.body, VALIDATE_BODY);
            }
        }

        // TLS 1.2 is still accepted.
        let config = client_config_with(&cas, H2_H1, None, true);
        let client = validate_once(server.addr, &config).await.unwrap();
        assert_eq!(client.tls_version, rustls::ProtocolVersion::TLSv1_2);

        // A client that does not trust the CA fails the handshake; the
        // server keeps serving.
        let other = dev_certs();
        let err = Client::connect(server.addr, &client_config(&[&other.ca_pem], H2_H1)).await;
        assert!(err.is_err(), "a client trusting another CA must fail");
        validate_once(server.addr, &client_config(&cas, H2_H1)).await.unwrap();
    })
    .await;
}

/// curl on the `/validate` URL: `Ok((http_version, status, body))` or
/// `Err(stderr)`.
async fn curl(args: Vec<String>) -> Result<(String, String, String), String> {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "-X", "POST", "-d", "{}"])
            .args(["-w", "\n%{http_version} %{http_code}"])
            .args(args)
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let stdout = String::from_utf8(output.stdout).unwrap();
    let (body, last) = stdout.rsplit_once('\n').unwrap();
    let (version, status) = last.split_once(' ').unwrap();
    Ok((version.to_owned(), status.to_owned(), body.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http2_and_http11_work_and_tls11_is_refused_by_the_server() {
    init_tracing();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = dev_certs();
        certs::write(dir.path(), &pki).unwrap();
        let files = TlsFiles { cert: dir.path().join("tls.crt"), key: dir.path().join("tls.key"), client_ca: None };
        let server = Server::start(files, test_limits(), None).await;
        let ca = dir.path().join("ca.crt").display().to_string();
        let url = format!("https://127.0.0.1:{}/validate", server.addr.port());
        let expected = String::from_utf8(VALIDATE_BODY.to_vec()).unwrap();

        for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
            for tls in ["--tlsv1.2", "--tlsv1.3"] {
                let args = vec!["--cacert".into(), ca.clone(), flag.into(), tls.into(), url.clone()];
                let got = curl(args).await.unwrap_or_else(|e| panic!("curl {flag} {tls}: {e}"));
                assert_eq!(got, (version.to_owned(), "200".to_owned(), expected.clone()));
            }
        }
        // The DNS SAN works too.
        let by_name = format!("https://localhost:{}/validate", server.addr.port());
        let args = vec!["--cacert".into(), ca.clone(), by_name];
        assert_eq!(curl(args).await.unwrap().1, "200");

        // TLS 1.1. Debian's OpenSSL refuses TLS < 1.2 at its default
        // security level, so lower the level to 0: then the client really
        // offers TLS 1.1, and the failure must be an alert *received from
        // the server* (rustls answers a TLS 1.1 ClientHello with
        // handshake_failure, because such a hello has no
        // signature_algorithms, or with protocol_version), not a local
        // refusal to offer TLS 1.1.
        let args = vec![
            "--cacert".into(),
            ca.clone(),
            "--tlsv1.1".into(),
            "--tls-max".into(),
            "1.1".into(),
            "--ciphers".into(),
            "DEFAULT:@SECLEVEL=0".into(),
            url.clone(),
        ];
        let err = curl(args).await.expect_err("TLS 1.1 must be refused");
        if !server_alert(&err) {
            assert!(
                err.contains("no protocols available") || err.contains("unsupported protocol"),
                "unexpected curl error for TLS 1.1: {err}"
            );
            // This curl would not even offer TLS 1.1; ask openssl s_client.
            let out = openssl_tls11(server.addr).await;
            assert!(server_alert(&out), "the server must refuse a TLS 1.1 ClientHello with an alert: {out}");
        }
        // And the server still serves.
        validate_once(server.addr, &client_config(&[&pki.ca_pem], H2_H1)).await.unwrap();
    })
    .await;
}

/// OpenSSL's text for a fatal alert received from the peer.
fn server_alert(text: &str) -> bool {
    text.contains("alert handshake failure") || text.contains("alert protocol version")
}

async fn openssl_tls11(addr: SocketAddr) -> String {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("openssl")
            .args(["s_client", "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])
            .args(["-connect", &addr.to_string()])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl runs")
    })
    .await
    .unwrap();
    assert!(!output.status.success(), "openssl s_client -tls1_1 must fail");
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_tls11_client_hello_gets_protocol_version_alert() {
    // Independent of any local TLS library's policy: a hand-made TLS 1.1
    // ClientHello must be answered with a fatal protocol_version alert.
    init_tracing();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = dev_certs();
        let server = Server::start(put_pair(dir.path(), &pki), test_limits(), None).await;

        let mut hello_body = Vec::new();
        hello_body.extend_from_slice(&[0x03, 0x02]); // client_version TLS 1.1
        hello_body.extend_from_slice(&[0x42; 32]); // random
        hello_body.push(0); // session id
        // Cipher suites rustls supports for TLS 1.2 (ECDHE AES-GCM), so
        // that only the version is wrong.
        hello_body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]);
        hello_body.extend_from_slice(&[0x01, 0x00]); // compression: null
        let extensions: &[u8] = &[
            // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256
            0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04,
            // supported_groups: x25519, secp256r1
            0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17, // ec_point_formats: uncompressed
            0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,
        ];
        hello_body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        hello_body.extend_from_slice(extensions);
        let mut handshake = vec![0x01, 0x00];
        handshake.extend_from_slice(&(hello_body.len() as u16).to_be_bytes());
        handshake.extend_from_slice(&hello_body);
        let mut record = vec![0x16, 0x03, 0x02];
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend_from_slice(&handshake);

        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(&record).await.unwrap();
        let mut reply = Vec::new();
        let _ = timeout(WAIT, tcp.read_to_end(&mut reply)).await.unwrap();
        // Alert record: type 21, 2-byte version, length 2, level fatal (2),
        // description protocol_version (70).
        assert!(reply.len() >= 7, "no alert: {reply:?}");
        assert_eq!(reply[0], 21, "an alert record: {reply:?}");
        assert_eq!(&reply[5..7], &[2, 70], "fatal protocol_version: {reply:?}");
    })
    .await;
}

// ---------------------------------------------------------------------------
// client certificates

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_requires_a_client_certificate_signed_by_it() {
    init_tracing();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = dev_certs();
        let clients = client_pki("kube-apiserver");
        let stranger = client_pki("stranger");
        let mut files = put_pair(dir.path(), &pki);
        let ca_path = dir.path().join("client-ca.crt");
        std::fs::write(&ca_path, &clients.ca_pem).unwrap();
        files.client_ca = Some(ca_path);
        let server = Server::start(files, test_limits(), None).await;
        let cas = [pki.ca_pem.as_str()];

        // No certificate: refused (in TLS 1.3 the client learns it at the
        // first read, so check the request, not only the handshake).
        for alpn in [H2_H1, H1] {
            let refused = validate_once(server.addr, &client_config(&cas, alpn)).await;
            assert!(refused.is_err(), "no client certificate must be refused");
        }
        // A certificate from another CA: refused.
        let config = client_config_with(&cas, H2_H1, Some((&stranger.cert_pem, &stranger.key_pem)), false);
        assert!(validate_once(server.addr, &config).await.is_err());
        // A certificate signed by the client CA: accepted, over both HTTP
        // versions and both TLS versions.
        for (alpn, tls12) in [(H2_H1, false), (H1, false), (H2_H1, true)] {
            let config = client_config_with(&cas, alpn, Some((&clients.cert_pem, &clients.key_pem)), tls12);
            validate_once(server.addr, &config).await.unwrap();
        }

        // The same with curl (OpenSSL).
        let tmp = dir.path();
        std::fs::write(tmp.join("ca.crt"), &pki.ca_pem).unwrap();
        std::fs::write(tmp.join("client.crt"), &clients.cert_pem).unwrap();
        std::fs::write(tmp.join("client.key"), &clients.key_pem).unwrap();
        let path = |name: &str| tmp.join(name).display().to_string();
        let url = format!("https://127.0.0.1:{}/validate", server.addr.port());
        let without = curl(vec!["--cacert".into(), path("ca.crt"), url.clone()]).await;
        assert!(without.is_err(), "curl without a client certificate: {without:?}");
        let with = curl(vec![
            "--cacert".into(),
            path("ca.crt"),
            "--cert".into(),
            path("client.crt"),
            "--key".into(),
            path("client.key"),
            url,
        ])
        .await
        .unwrap();
        assert_eq!(with.1, "200");

        // Rotating the client CA file takes effect for new connections,
        // without a restart: the stranger's CA replaces the old one.
        put(server.tls.files().client_ca.as_ref().unwrap(), &stranger.ca_pem);
        assert!(server.tls.reload().unwrap());
        let stranger_config = client_config_with(&cas, H2_H1, Some((&stranger.cert_pem, &stranger.key_pem)), false);
        let old_config = client_config_with(&cas, H2_H1, Some((&clients.cert_pem, &clients.key_pem)), false);
        validate_once(server.addr, &stranger_config).await.unwrap();
        assert!(validate_once(server.addr, &old_config).await.is_err());
        // The serving certificate did not change.
        assert_eq!(validate_once(server.addr, &stranger_config).await.unwrap().peer_cert, leaf_der(&pki));
    })
    .await;
}

// ---------------------------------------------------------------------------
// rotation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_rename_under_load_drops_no_request() {
    init_tracing();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let generations: Vec<DevCerts> = (0..4).map(|_| dev_certs()).collect();
        // The client trusts every generation's CA (a caBundle during a CA
        // rotation holds old and new).
        let cas: Vec<&str> = generations.iter().map(|c| c.ca_pem.as_str()).collect();
        let files = put_pair(dir.path(), &generations[0]);
        let server = Server::start(files, test_limits(), Some(Duration::from_secs(5))).await;
        let probe = client_config(&cas, H2_H1);
        wait_for_cert(server.addr, &probe, &leaf_der(&generations[0])).await;

        let load = Load::start(server.addr, &cas);
        sleep(Duration::from_millis(200)).await;
        for certs in &generations[1..] {
            put_pair(dir.path(), certs);
            wait_for_cert(server.addr, &probe, &leaf_der(certs)).await;
            sleep(Duration::from_millis(100)).await;
        }

        // A broken certificate is rejected; the last good one stays.
        let failures = server.tls.reload_failures_total();
        put(&dir.path().join("tls.crt"), "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n");
        timeout(WAIT, async {
            while server.tls.reload_failures_total() == failures {
                sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the broken certificate is noticed and rejected");
        sleep(Duration::from_millis(100)).await;
        let last = leaf_der(&generations[3]);
        assert_eq!(validate_once(server.addr, &probe).await.unwrap().peer_cert, last);

        let reports = load.finish().await;
        assert_no_failures(&reports);
        assert!(server.tls.reloads_total() >= 3, "{}", server.tls.reloads_total());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_kubernetes_data_symlink_swap_under_load() {
    init_tracing();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let generations: Vec<DevCerts> = (0..3).map(|_| dev_certs()).collect();
        let cas: Vec<&str> = generations.iter().map(|c| c.ca_pem.as_str()).collect();
        let files = k8s_volume(dir.path(), "2026_01_01_00_00_00.0", &generations[0]);
        // Polling far slower than the test: the swap must be seen by the
        // directory watch.
        let server = Server::start(files, test_limits(), Some(Duration::from_secs(60))).await;
        let probe = client_config(&cas, H2_H1);
        wait_for_cert(server.addr, &probe, &leaf_der(&generations[0])).await;

        let load = Load::start(server.addr, &cas);
        sleep(Duration::from_millis(200)).await;
        let versions = ["2026_01_01_00_00_00.0", "2026_02_01_00_00_00.0", "2026_03_01_00_00_00.0"];
        for (i, certs) in generations.iter().enumerate().skip(1) {
            k8s_swap(dir.path(), versions[i - 1], versions[i], certs);
            wait_for_cert(server.addr, &probe, &leaf_der(certs)).await;
            sleep(Duration::from_millis(100)).await;
        }
        let reports = load.finish().await;
        assert_no_failures(&reports);
        assert_eq!(server.tls.reloads_total(), 2);
        assert_eq!(server.tls.reload_failures_total(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_sees_a_change_the_directory_watch_cannot() {
    // tls.crt and tls.key are symlinks into another directory, and the
    // files there are replaced: nothing changes in the watched directory.
    init_tracing();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (watched, real) = (dir.path().join("watched"), dir.path().join("real"));
        std::fs::create_dir(&watched).unwrap();
        std::fs::create_dir(&real).unwrap();
        let (old, new) = (dev_certs(), dev_certs());
        put_pair(&real, &old);
        std::os::unix::fs::symlink(real.join("tls.crt"), watched.join("tls.crt")).unwrap();
        std::os::unix::fs::symlink(real.join("tls.key"), watched.join("tls.key")).unwrap();
        let files = TlsFiles { cert: watched.join("tls.crt"), key: watched.join("tls.key"), client_ca: None };
        let server = Server::start(files, test_limits(), Some(Duration::from_millis(300))).await;
        let probe = client_config(&[&old.ca_pem, &new.ca_pem], H2_H1);
        wait_for_cert(server.addr, &probe, &leaf_der(&old)).await;
        put_pair(&real, &new);
        wait_for_cert(server.addr, &probe, &leaf_der(&new)).await;
        assert_eq!(server.tls.reloads_total(), 1);
    })
    .await;
}

fn expired_pair() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_new_files_are_rejected_and_the_old_certificate_kept() {
    init_tracing();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dev_certs(), dev_certs());
        let files = put_pair(dir.path(), &first);
        // No watcher: reload() is driven by hand, so each outcome is seen.
        let server = Server::start(files, test_limits(), None).await;
        let tls = &server.tls;
        let probe = client_config(&[&first.ca_pem, &second.ca_pem], H2_H1);
        let serves = |der: Vec<u8>| {
            let probe = probe.clone();
            let addr = server.addr;
            async move {
                let client = validate_once(addr, &probe).await.unwrap();
                assert_eq!(client.peer_cert, der);
            }
        };
        let first_expiry = tls.not_after_unix().expect("expiry known");
        assert!(first_expiry > chrono::Utc::now().timestamp());

        assert!(!tls.reload().unwrap(), "unchanged files");

        // Garbage certificate.
        put(&dir.path().join("tls.crt"), "garbage\n");
        let err = tls.reload().unwrap_err();
        assert_eq!(err.flag(), Some("--tls-cert"), "{err}");
        assert!(err.to_string().contains("--tls-cert"), "{err}");
        assert_eq!(tls.reload_failures_total(), 1);
        serves(leaf_der(&first)).await;
        // The same broken files are not reported again.
        assert!(!tls.reload().unwrap());
        assert_eq!(tls.reload_failures_total(), 1);

        // A valid certificate with the old key.
        put(&dir.path().join("tls.crt"), &second.cert_pem);
        let err = tls.reload().unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert!(err.to_string().contains("--tls-key"), "{err}");
        assert_eq!(tls.reload_failures_total(), 2);
        serves(leaf_der(&first)).await;

        // A missing key file.
        std::fs::remove_file(dir.path().join("tls.key")).unwrap();
        let err = tls.reload().unwrap_err();
        assert_eq!(err.flag(), Some("--tls-key"), "{err}");
        serves(leaf_der(&first)).await;

        // An expired certificate with its own key.
        let (cert, key) = expired_pair();
        put(&dir.path().join("tls.key"), &key);
        put(&dir.path().join("tls.crt"), &cert);
        let err = tls.reload().unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        assert_eq!(tls.reload_failures_total(), 4);
        assert_eq!(tls.not_after_unix(), Some(first_expiry));
        serves(leaf_der(&first)).await;

        // Finally a good pair.
        put_pair(dir.path(), &second);
        assert!(tls.reload().unwrap());
        assert!(!tls.reload().unwrap());
        assert_eq!(tls.reloads_total(), 1);
        assert_eq!(tls.reload_failures_total(), 4);
        serves(leaf_der(&second)).await;
        let expiry = tls.not_after_unix().unwrap();
        assert!(expiry > chrono::Utc::now().timestamp());
    })
    .await;
}

#[test]
fn load_errors_name_the_flag_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dev_certs(), dev_certs());
    let d = dir.path();
    std::fs::write(d.join("a.crt"), &a.cert_pem).unwrap();
    std::fs::write(d.join("a.key"), &a.key_pem).unwrap();
    std::fs::write(d.join("b.key"), &b.key_pem).unwrap();
    std::fs::write(d.join("garbage"), "hello\n").unwrap();
    let files = |cert: &str, key: &str, ca: Option<&str>| TlsFiles {
        cert: d.join(cert),
        key: d.join(key),
        client_ca: ca.map(|c| d.join(c)),
    };
    let cases: [(TlsFiles, &str, &str); 7] = [
        (files("missing.crt", "a.key", None), "--tls-cert", "cannot read"),
        (files("garbage", "a.key", None), "--tls-cert", "no PEM CERTIFICATE"),
        (files("a.key", "a.crt", None), "--tls-cert", "holds a private key"),
        (files("a.crt", "missing.key", None), "--tls-key", "cannot read"),
        (files("a.crt", "garbage", None), "--tls-key", "no PEM private key"),
        (files("a.crt", "b.key", None), "--tls-key", "does not match"),
        (files("a.crt", "a.key", Some("garbage")), "--client-ca", "no PEM CERTIFICATE"),
    ];
    for (files, flag, text) in cases {
        let err = ReloadingTls::load(files.clone()).expect_err("must fail");
        let message = err.to_string();
        assert_eq!(err.flag(), Some(flag), "{files:?}: {message}");
        assert!(message.starts_with(flag), "{files:?}: {message}");
        assert!(message.contains(text), "{files:?}: {message}");
    }
    let tls = ReloadingTls::load(files("a.crt", "a.key", None)).unwrap();
    assert!(tls.not_after_unix().is_some());
    assert_eq!(tls.server_config().alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
}

// ---------------------------------------------------------------------------
// shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_refuses_new_connections() {
    init_tracing();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = dev_certs();
        let limits = Limits { drain_timeout: Duration::from_secs(20), ..test_limits() };
        let mut server = Server::start(put_pair(dir.path(), &pki), limits, None).await;
        let both = client_config(&[&pki.ca_pem], H2_H1);
        let h1 = client_config(&[&pki.ca_pem], H1);

        // An idle keep-alive connection of each kind must not hold the drain.
        let idle_h2 = validate_once(server.addr, &both).await.unwrap();
        let idle_h1 = validate_once(server.addr, &h1).await.unwrap();

        // 4 streams on one HTTP/2 connection, 4 HTTP/1.1 connections.
        let h2 = Client::connect(server.addr, &both).await.unwrap();
        let mut in_flight = Vec::new();
        for i in 0..8 {
            let mut client = if i < 4 { h2.h2_stream() } else { Client::connect(server.addr, &h1).await.unwrap() };
            in_flight.push(tokio::spawn(async move { client.post("/hold").await }));
        }
        timeout(WAIT, async {
            while server.state.held.load(Ordering::SeqCst) < 8 {
                sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("all 8 requests reach the handler");

        let shutdown_at = Instant::now();
        server.shutdown();
        // New connections are refused while the requests are still held.
        timeout(WAIT, async {
            loop {
                match TcpStream::connect(server.addr).await {
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
                    _ => sleep(Duration::from_millis(10)).await,
                }
            }
        })
        .await
        .expect("new connections are refused after shutdown");
        let task = server.task.take().unwrap();
        assert!(!task.is_finished(), "serve_tls waits for the requests in flight");
        assert!(validate_once(server.addr, &both).await.is_err(), "no new request is served after shutdown");

        // Let the handlers answer: every request in flight gets its 200.
        server.state.release.send_replace(true);
        for request in in_flight {
            let reply = timeout(WAIT, request).await.unwrap().unwrap().unwrap();
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.body, "released");
        }
        timeout(limits.drain_timeout, task)
            .await
            .expect("serve_tls returns within the drain timeout")
            .unwrap()
            .unwrap();
        assert!(shutdown_at.elapsed() < limits.drain_timeout);
        drop((idle_h1, idle_h2, h2));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_shutdown_when_a_request_never_ends() {
    init_tracing();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = dev_certs();
        let limits =
            Limits { drain_timeout: Duration::from_secs(1), request_timeout: Duration::from_secs(60), ..test_limits() };
        let mut server = Server::start(put_pair(dir.path(), &pki), limits, None).await;
        let mut stuck = Client::connect(server.addr, &client_config(&[&pki.ca_pem], H2_H1)).await.unwrap();
        let request = tokio::spawn(async move { stuck.post("/hold").await });
        timeout(WAIT, async {
            while server.state.held.load(Ordering::SeqCst) < 1 {
                sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        server.shutdown();
        let task = server.task.take().unwrap();
        // Generous bound: the drain timeout plus scheduling slack.
        timeout(limits.drain_timeout + Duration::from_secs(5), task)
            .await
            .expect("serve_tls returns once the drain timeout is over")
            .unwrap()
            .unwrap();
        let result = timeout(WAIT, request).await.unwrap().unwrap();
        assert!(result.is_err(), "the stuck request is cut: {:?}", result.map(|r| r.status));
    })
    .await;
}

// ---------------------------------------------------------------------------
// slow clients

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_while_others_are_served() {
    init_tracing();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = dev_certs();
        let limits = Limits {
            handshake_timeout: Duration::from_secs(1),
            header_read_timeout: Duration::from_secs(1),
            ..test_limits()
        };
        let server = Server::start(put_pair(dir.path(), &pki), limits, None).await;
        let addr = server.addr;
        let cas = [pki.ca_pem.as_str()];
        let h1 = client_config(&cas, H1);
        let both = client_config(&cas, H2_H1);

        /// Resolves when the server closes the connection.
        async fn closed_by_server<R: tokio::io::AsyncRead + Unpin>(mut read: R) {
            let mut buf = [0u8; 1024];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        }

        // 1. TCP connect, then silence: the handshake timeout.
        let silent = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            timeout(WAIT, closed_by_server(tcp))
                .await
                .expect("a silent TCP connection is closed");
        };
        // 2. Half a ClientHello, then silence: the handshake timeout.
        let half_hello = async {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
            timeout(WAIT, closed_by_server(tcp))
                .await
                .expect("a stalled handshake is closed");
        };
        // 3. TLS + HTTP/1.1, the request head one byte every 100ms: the
        //    header read timeout, long before the head is complete.
        let slow_head = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(h1.clone()));
            let stream = connector
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            let (read, mut write) = tokio::io::split(stream);
            let head = b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
            let writer = async move {
                for byte in head {
                    if write.write_all(&[*byte]).await.is_err() || write.flush().await.is_err() {
                        return false; // cut off
                    }
                    sleep(Duration::from_millis(100)).await;
                }
                true // the whole head got through
            };
            tokio::select! {
                () = closed_by_server(read) => {}
                completed = writer => assert!(!completed, "a slow request head must be cut off"),
            }
        };
        // 4. TLS with ALPN h2, then no HTTP/2 preface at all.
        let silent_h2 = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(both.clone()));
            let stream = connector
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            assert_eq!(stream.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
            timeout(WAIT, closed_by_server(stream))
                .await
                .expect("an HTTP/2 connection without a request is closed");
        };
        // 5. Meanwhile, normal clients are served.
        let stop = Arc::new(AtomicBool::new(false));
        let normal = {
            let stop = stop.clone();
            let configs = [h1.clone(), both.clone()];
            async move {
                let mut served = 0;
                while !stop.load(Ordering::Relaxed) {
                    for config in &configs {
                        validate_once(addr, config).await.expect("a normal client is served");
                        served += 1;
                    }
                    sleep(Duration::from_millis(20)).await;
                }
                served
            }
        };
        let slow = async {
            tokio::join!(silent, half_hello, slow_head, silent_h2);
            stop.store(true, Ordering::Relaxed);
        };
        let ((), served) = tokio::join!(slow, normal);
        assert!(served > 0);
        // And the server is still fine afterwards.
        validate_once(addr, &both).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_body_gets_408_within_request_timeout() {
    init_tracing();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = dev_certs();
        let limits = Limits { request_timeout: Duration::from_secs(1), ..test_limits() };
        // A router that reads the body, as the admission router does.
        let tls = ReloadingTls::load(put_pair(dir.path(), &pki)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/validate", post(|body: Bytes| async move { body }));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_tls(listener, tls, router, limits, async move {
            let _ = stopped.await;
        }));

        let tcp = TcpStream::connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&[&pki.ca_pem], H1)));
        let mut stream = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
        stream.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{").await.unwrap();
        stream.flush().await.unwrap();
        // Never send the rest of the body.
        let mut response = Vec::new();
        let mut buf = [0u8; 1024];
        timeout(WAIT, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        response.extend_from_slice(&buf[..n]);
                        if response.windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                }
            }
        })
        .await
        .expect("the slow body is cut by the request timeout");
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");

        let _ = stop.send(());
        timeout(WAIT, task).await.unwrap().unwrap().unwrap();
    })
    .await;
}

// ---------------------------------------------------------------------------
// the admin port

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_server_serves_http11_and_shuts_down() {
    init_tracing();
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/healthz", get(|| async { "ok" }));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_plain(listener, router, async move {
            let _ = stopped.await;
        }));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        let request = Request::get("/healthz").header("host", "localhost").body(Full::new(Bytes::new())).unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "ok");
        let _ = stop.send(());
        timeout(WAIT, task).await.unwrap().unwrap().unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
    })
    .await;
}

// ---------------------------------------------------------------------------
// `pitrguard certs`

#[test]
fn dev_certs_are_a_ca_and_a_server_leaf_with_the_right_sans() {
    use x509_parser::prelude::*;
    let hosts = ["127.0.0.1", "::1", "localhost", "pitrguard.pitrguard-system.svc"].map(String::from);
    let certs = certs::generate(&hosts).unwrap();

    let ca_der = CertificateDer::from_pem_slice(certs.ca_pem.as_bytes()).unwrap();
    let (_, ca) = parse_x509_certificate(&ca_der).unwrap();
    let bc = ca.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert!(ca.key_usage().unwrap().unwrap().value.key_cert_sign());

    let leaf_der = CertificateDer::from_pem_slice(certs.cert_pem.as_bytes()).unwrap();
    let (_, leaf) = parse_x509_certificate(&leaf_der).unwrap();
    assert!(!leaf.basic_constraints().unwrap().unwrap().value.ca, "CA:FALSE explicit");
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth);
    assert_eq!(leaf.issuer(), ca.subject());
    let sans = &leaf.subject_alternative_name().unwrap().unwrap().value.general_names;
    let mut ips = Vec::new();
    let mut names = Vec::new();
    for san in sans {
        match san {
            GeneralName::IPAddress(ip) => ips.push(ip.to_vec()),
            GeneralName::DNSName(name) => names.push(name.to_string()),
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    assert_eq!(ips, vec![vec![127, 0, 0, 1], std::net::Ipv6Addr::LOCALHOST.octets().to_vec()]);
    assert_eq!(names, vec!["localhost", "pitrguard.pitrguard-system.svc"]);
    let now = chrono::Utc::now().timestamp();
    assert!(leaf.validity().not_before.timestamp() < now);
    assert!(leaf.validity().not_after.timestamp() > now + 300 * 86400);

    // rustls accepts the pair and webpki the chain (for the in-cluster name).
    let dir = tempfile::tempdir().unwrap();
    certs::write(dir.path(), &certs).unwrap();
    ReloadingTls::load(TlsFiles { cert: dir.path().join("tls.crt"), key: dir.path().join("tls.key"), client_ca: None })
        .unwrap();
}

#[test]
fn certs_write_and_run_produce_the_files() {
    use base64::Engine as _;
    use clap::Parser;
    use std::os::unix::fs::PermissionsExt;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        certs: certs::CertsArgs,
    }

    let dir = tempfile::tempdir().unwrap();
    let out: PathBuf = dir.path().join("dev");
    let cli = Cli::try_parse_from(["x", "--out", out.to_str().unwrap()]).unwrap();
    assert_eq!(cli.certs.hosts, vec!["127.0.0.1", "localhost", "pitrguard.pitrguard-system.svc"]);
    let cli =
        Cli::try_parse_from(["x", "--out", out.to_str().unwrap(), "--hosts", "10.0.0.1,webhook.example"]).unwrap();
    assert_eq!(cli.certs.hosts, vec!["10.0.0.1", "webhook.example"]);
    assert!(Cli::try_parse_from(["x"]).is_err(), "--out is required");

    let mut printed = Vec::new();
    assert_eq!(certs::run(&cli.certs, &mut printed).unwrap(), 0);
    let printed = String::from_utf8(printed).unwrap();
    assert!(printed.contains("valid for: 10.0.0.1, webhook.example"), "{printed}");
    for name in ["ca.crt", "tls.crt", "tls.key", "ca-bundle.b64"] {
        assert!(out.join(name).is_file(), "{name}");
    }
    let mode = std::fs::metadata(out.join("tls.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let bundle = std::fs::read_to_string(out.join("ca-bundle.b64")).unwrap();
    assert_eq!(bundle.lines().count(), 1);
    let decoded = base64::engine::general_purpose::STANDARD.decode(bundle.trim_end()).unwrap();
    assert_eq!(decoded, std::fs::read(out.join("ca.crt")).unwrap());
    // Leftover temporary files: none.
    let names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
}
