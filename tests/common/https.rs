//! A small blocking HTTPS/1.1 client (rustls) with one kept-alive connection:
//! enough to send thousands of AdmissionReviews without a process per request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::Value;

pub struct Https {
    stream: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
}

impl Https {
    /// Connects to 127.0.0.1:`port`, trusting the CA in `ca` (PEM).
    pub fn connect(port: u16, ca: &Path) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&std::fs::read(ca).unwrap()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        Self { stream: BufReader::new(rustls::StreamOwned::new(conn, tcp)) }
    }

    /// POSTs `body` as JSON to `path`: the status and the JSON body, or what went wrong.
    pub fn post(&mut self, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let body = serde_json::to_vec(body).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes())
            .and_then(|()| s.write_all(&body))
            .and_then(|()| s.flush())
            .map_err(|e| e.to_string())?;
        let mut status_line = String::new();
        self.stream.read_line(&mut status_line).map_err(|e| e.to_string())?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or(format!("status line {status_line:?}"))?;
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).map_err(|e| e.to_string())?;
            if line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().map_err(|e| format!("content-length: {e}"))?;
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_slice(&body).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&body)))?))
    }
}
