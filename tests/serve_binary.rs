//! The real `pitrguard serve` binary over real TLS: SIGTERM while
//! AdmissionReviews are in flight (every started request gets its answer, new
//! connections are refused, the process exits 0), and hostile input (a 4xx
//! each, and the server stays up).

use std::process::Command;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

mod common;

use common::process::Stopped;
use common::serve_examples;

const IN_FLIGHT: usize = 6;

fn connector(ca_pem: &str) -> TlsConnector {
    TlsConnector::from(common::load::client_config(ca_pem.as_bytes(), common::load::H1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_in_flight_request_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, admin) = serve_examples(dir.path(), &["--drain-timeout", "15"]);
    let ready = async {
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", admin)).await {
                s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
                let mut out = String::new();
                let _ = s.read_to_string(&mut out).await;
                if out.starts_with("HTTP/1.1 200") {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), ready).await.expect("pitrguard ready");
    let tls = connector(&std::fs::read_to_string(dir.path().join("ca.crt")).unwrap());
    let body = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/admission/review-denied.json")).unwrap();

    // Requests in flight: headers and half of each body sent.
    let mut streams = Vec::new();
    for _ in 0..IN_FLIGHT {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut s = tls.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap();
        let head = format!(
            "POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body[..body.len() / 2]).await.unwrap();
        s.flush().await.unwrap();
        streams.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The listener is closed: no new request gets in.
    let refused = match TcpStream::connect(("127.0.0.1", port)).await {
        Err(_) => true,
        Ok(tcp) => tls.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.is_err(),
    };
    assert!(refused, "a new connection after SIGTERM must be refused");
    assert!(child.try_wait().unwrap().is_none(), "pitrguard must wait for the in-flight requests");

    // The rest of each body: every one is answered in full.
    for mut s in streams {
        s.write_all(&body[body.len() / 2..]).await.unwrap();
        s.flush().await.unwrap();
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        let read = async {
            loop {
                let n = s.read(&mut buf).await.unwrap_or(0);
                reply.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&reply);
                if n == 0 || (text.contains("\r\n\r\n") && text.trim_end().ends_with('}')) {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read).await.expect("an answer");
        let text = String::from_utf8_lossy(&reply);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains(r#""uid":"705ab4f5-6393-11e8-b7cc-42010a800002""#), "{text}");
        assert!(text.contains("12m46s after the end"), "{text}");
    }

    let exited = tokio::task::spawn_blocking(move || {
        for _ in 0..100 {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        None
    })
    .await
    .unwrap();
    assert_eq!(exited.map(|s| s.code()), Some(Some(0)), "pitrguard exits 0 after draining");
}

/// One curl POST of the file `body` as `content_type` over `protocol` (`--http2` or `--http1.1`):
/// (curl's exit code, HTTP status, response body).
fn curl_post(
    protocol: &str,
    ca: &std::path::Path,
    url: &str,
    content_type: &str,
    extra: &[&str],
    body: &std::path::Path,
) -> (i32, u16, String) {
    let out = Command::new("curl")
        .args(["-sS", protocol, "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .args(["--cacert", ca.to_str().unwrap()])
        .args(["-H", &format!("Content-Type: {content_type}")])
        .args(extra)
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let body = format!("{body}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), code.trim().parse().unwrap_or(0), body)
}

const GOOD_REVIEW: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/admission/review-denied.json");

/// Waits until `server` at `url` answers a good review (its dev certificates appear first); fails
/// at once if it exits.
fn wait_until_serving(server: &mut Stopped, ca: &std::path::Path, url: &str) {
    common::process::wait_for(Duration::from_secs(60), "pitrguard serve to answer", || {
        if let Some(status) = server.try_wait().unwrap() {
            panic!("pitrguard serve exited before answering: {status}");
        }
        ca.exists() && curl_post("--http1.1", ca, url, "application/json", &[], GOOD_REVIEW.as_ref()).1 == 200
    });
}

/// `pitrguard serve` on the examples, answering: its temp dir (dev certificates), the process,
/// the CA file and the `/validate` URL.
fn serving_examples() -> (tempfile::TempDir, Stopped, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, _admin) = serve_examples::<&str>(dir.path(), &[]);
    let ca = dir.path().join("ca.crt");
    let url = format!("https://127.0.0.1:{port}/validate");
    wait_until_serving(&mut child, &ca, &url);
    (dir, child, ca, url)
}

/// Bad input over real TLS to the real binary: each gets a 4xx with a JSON error, and the
/// server keeps answering good requests.
#[test]
fn hostile_input_gets_4xx_and_the_server_stays_up() {
    let (dir, mut child, ca, url) = serving_examples();
    let post = |content_type: &str, body: &std::path::Path| -> (u16, String) {
        let (_, status, body) = curl_post("--http1.1", &ca, &url, content_type, &[], body);
        (status, body)
    };
    let good = std::path::PathBuf::from(GOOD_REVIEW);

    let write = |name: &str, bytes: Vec<u8>| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let cases = [
        ("empty", "application/json", write("empty", vec![]), 400),
        (
            "truncated",
            "application/json",
            write("truncated", br#"{"apiVersion":"admission.k8s.io/v1","kind":"Admi"#.to_vec()),
            400,
        ),
        ("4 MiB", "application/json", write("big", vec![b' '; 4 * 1024 * 1024]), 413),
        (
            "deeply nested",
            "application/json",
            write("nested", [vec![b'['; 200_000], vec![b']'; 200_000]].concat()),
            400,
        ),
        ("invalid UTF-8", "application/json", write("utf8", vec![b'{', 0xff, 0xfe, b'}']), 400),
        ("wrong content type", "text/plain", good.clone(), 415),
    ];
    for (what, ct, file, want) in cases {
        let (status, body) = post(ct, &file);
        assert_eq!(status, want, "{what}: {body}");
        let json: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: not JSON: {body}"));
        assert_eq!(json["code"], want, "{what}");
        assert!(child.try_wait().unwrap().is_none(), "{what} took the server down");
        let (status, body) = post("application/json", &good);
        assert_eq!(status, 200, "after {what}: {body}");
        assert!(body.contains("12m46s after the end"), "after {what}: {body}");
    }
}

/// A body over 3 MiB gets a readable 413 over HTTP/2 and over HTTP/1.1, also when the client sends
/// it all at once (no `Expect: 100-continue`): the server drains it before answering.
#[test]
fn a_body_over_3_mib_gets_a_readable_413_over_both_protocols() {
    let (dir, _child, ca, url) = serving_examples();
    for mib in [4, 12] {
        let big = dir.path().join(format!("{mib}mib.json"));
        std::fs::write(&big, vec![b' '; mib * 1024 * 1024]).unwrap();
        for (protocol, extra) in [("--http2", &[][..]), ("--http1.1", &["-H", "Expect:"][..]), ("--http1.1", &[][..])] {
            for attempt in 0..3 {
                let (exit, status, body) = curl_post(protocol, &ca, &url, "application/json", extra, &big);
                let what = format!("{mib} MiB over {protocol} {extra:?}, try {attempt}");
                assert_eq!((exit, status), (0, 413), "{what}: {body}");
                let json: serde_json::Value =
                    serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: not JSON: {body}"));
                assert_eq!(json["code"], 413, "{what}");
            }
        }
    }
    // The server still answers good requests over both protocols.
    for protocol in ["--http2", "--http1.1"] {
        let (_, status, body) = curl_post(protocol, &ca, &url, "application/json", &[], GOOD_REVIEW.as_ref());
        assert_eq!(status, 200, "{protocol}: {body}");
    }
}
