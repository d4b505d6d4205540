//! An HTTPS client for load and abuse tests (rustls + hyper): HTTP/2 or HTTP/1.1 as
//! ALPN decides, one connection per [`Conn`] (HTTP/2 streams share it), the leaf
//! certificate the server presented, and latency statistics. Also: the RSS of a
//! process, and raising this process's open-file limit.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

pub const H2_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
pub const H2: &[&[u8]] = &[b"h2"];
pub const H1: &[&[u8]] = &[b"http/1.1"];

/// A client configuration trusting `ca_pem`, offering `alpn`. Resumption is off: every
/// connection does a full handshake, so it sees the certificate the server uses now.
pub fn client_config(ca_pem: &[u8], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// A TLS connection to 127.0.0.1 after its handshake (server name `localhost`).
pub async fn tls_connect(
    port: u16,
    config: &Arc<ClientConfig>,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    Ok(connector.connect(ServerName::try_from("localhost")?.to_owned(), tcp).await?)
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One HTTPS connection (or one stream handle of an HTTP/2 connection).
pub struct Conn {
    sender: Sender,
    /// The DER of the leaf certificate the server presented.
    pub leaf: Vec<u8>,
}

impl Conn {
    pub async fn connect(port: u16, config: &Arc<ClientConfig>) -> anyhow::Result<Conn> {
        let stream = tls_connect(port, config).await?;
        let (_, session) = stream.get_ref();
        let leaf = session.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec()).unwrap_or_default();
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
        Ok(Conn { sender, leaf })
    }

    pub fn is_h2(&self) -> bool {
        matches!(self.sender, Sender::H2(_))
    }

    /// Another stream on the same HTTP/2 connection.
    pub fn stream(&self) -> Conn {
        match &self.sender {
            Sender::H2(s) => Conn { sender: Sender::H2(s.clone()), leaf: self.leaf.clone() },
            Sender::H1(_) => panic!("not an HTTP/2 connection"),
        }
    }

    /// POSTs `body` (JSON) to `path`: the status and the whole response body.
    pub async fn post(&mut self, path: &str, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        let body = Full::new(body);
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
        Ok((status, response.into_body().collect().await?.to_bytes()))
    }
}

/// Latencies of one client, in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies(pub Vec<u64>);

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_nanos() as u64);
    }

    /// Nearest-rank percentile.
    pub fn percentile(&mut self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.sort_unstable();
        let n = self.0.len();
        let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
        Duration::from_nanos(self.0[rank.min(n) - 1])
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// The resident set size of process `pid`, in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The open files of process `pid` (entries of /proc/PID/fd).
pub fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// This process's open-file limit `(soft, hard)` (`Max open files` of /proc/self/limits).
pub fn nofile_limit() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let mut nums =
        line.split_whitespace().filter_map(|w| w.parse::<u64>().ok().or((w == "unlimited").then_some(u64::MAX)));
    (nums.next().unwrap(), nums.next().unwrap())
}

/// Raises this process's soft open-file limit to `want` (at most the hard limit) with
/// `prlimit` (util-linux); children started afterwards inherit it. Returns the soft limit now.
pub fn raise_nofile(want: u64) -> u64 {
    let (soft, hard) = nofile_limit();
    let target = want.min(hard);
    if soft < target {
        let status = std::process::Command::new("prlimit")
            .args(["--pid", &std::process::id().to_string(), &format!("--nofile={target}:{hard}")])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "prlimit could not raise the open-file limit to {target}");
    }
    nofile_limit().0
}

/// The kernel's count of connections dropped because a listening socket's accept queue was
/// full (`TcpExt: ListenOverflows` of /proc/net/netstat; the whole machine's).
pub fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .map_or(0, |(_, v)| v.parse().unwrap_or(0))
}
