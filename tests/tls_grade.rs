//! The real `pitrguard serve` graded by two TLS implementations that share no code with
//! rustls: OpenSSL (`openssl s_client`, one handshake per protocol and cipher suite it knows) and
//! nmap's `ssl-enum-ciphers` (its own TLS code in Lua). Both are run against the binary with its
//! development certificate (ECDSA P-256) and with an RSA 2048 certificate, since which TLS 1.2
//! suites a server can pick depends on its key. Then mutual TLS against the same binary with
//! curl: no client certificate, or one from another CA, gets no answer; the right CA's does.
//!
//! Needs `openssl`, `curl` and `nmap` (Debian: `apt-get install nmap`; `.ci/run` installs it).
//! `cargo test --test tls_grade -- --nocapture` prints the figures of RELIABILITY.md.

mod common;

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::{Stopped, wait_for};
use common::serve_examples;

/// Key exchange groups of at least 128-bit strength. `ffdhe2048` (112-bit) is not among them.
const STRONG_GROUPS: [&str; 5] = ["X25519", "X448", "P-256", "P-384", "P-521"];
/// Every group OpenSSL 3 offers for TLS 1.2 and 1.3 key exchange.
const ALL_GROUPS: [&str; 10] =
    ["X25519", "X448", "P-256", "P-384", "P-521", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192"];
/// The TLS 1.3 suites OpenSSL implements (`-ciphersuites`); only the first three are on by default.
const TLS13_SUITES: [&str; 5] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
];

/// One line of `openssl ciphers -stdname -v`.
#[derive(Debug, Clone)]
struct Suite {
    iana: String,
    openssl: String,
    /// The lowest protocol it is defined for: SSLv3, TLSv1, TLSv1.2 or TLSv1.3.
    since: String,
    kx: String,
    au: String,
    enc: String,
    mac: String,
}

/// Every cipher suite this OpenSSL knows, including those off by default and at security level 0.
fn catalogue() -> Vec<Suite> {
    let out = Command::new("openssl")
        .args(["ciphers", "-stdname", "-v", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"])
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(out.status.success(), "openssl ciphers: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let suites: Vec<Suite> = text
        .lines()
        .map(|l| {
            // TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 - ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 Kx=ECDH Au=RSA Enc=AESGCM(128) Mac=AEAD
            let f: Vec<&str> = l.split_whitespace().collect();
            let field = |k: &str| f.iter().find_map(|x| x.strip_prefix(k)).unwrap_or_default().to_string();
            Suite {
                iana: f[0].into(),
                openssl: f[2].into(),
                since: f[3].into(),
                kx: field("Kx="),
                au: field("Au="),
                enc: field("Enc="),
                mac: field("Mac="),
            }
        })
        .collect();
    assert!(suites.len() > 100, "openssl lists only {} suites:\n{text}", suites.len());
    suites
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// The handshake completed: protocol, suite (OpenSSL's name), the server's temporary key.
    Accepted { protocol: String, suite: String, temp_key: String },
    /// The server answered the ClientHello with an alert.
    Refused,
    /// OpenSSL could not even send such a ClientHello (for example a PSK suite without a PSK, or a
    /// TLS 1.2 suite under `-tls1`): no verdict on the server, so the grading never accepts it.
    NotOffered,
}

/// One `openssl s_client` handshake with 127.0.0.1:`port`. Anything but a completed handshake, a
/// server alert or a ClientHello OpenSSL refused to send fails the test: the server must answer
/// every hello, with a handshake or an alert.
fn handshake(port: u16, args: &[&str]) -> Outcome {
    let out = Command::new("openssl")
        .args(["s_client", "-brief", "-connect", &format!("127.0.0.1:{port}")])
        // Nothing is verified, so the system's CA store is not loaded (most of s_client's CPU time).
        .args(["-no-CAfile", "-no-CApath", "-no-CAstore"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let line = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
    if out.status.success() && text.contains("CONNECTION ESTABLISHED") {
        return Outcome::Accepted {
            protocol: line("Protocol version:").unwrap_or_default(),
            suite: line("Ciphersuite:").unwrap_or_default(),
            temp_key: line("Server Temp Key:").unwrap_or_default(),
        };
    }
    if text.contains("SSL alert number") {
        return Outcome::Refused;
    }
    if text.contains("no ciphers available")
        || text.contains("no protocols available")
        || text.contains("no suitable")
        || text.contains("Error with command")
        || text.contains("Call to SSL_CONF_cmd")
    {
        return Outcome::NotOffered;
    }
    panic!("openssl s_client {args:?}: neither a handshake, nor a server alert, nor a local refusal:\n{text}");
}

/// Every handshake of `jobs`, one after the other: the two grading tests run at the same time, so
/// that is two openssl processes at a time on 2 cores.
fn handshakes(port: u16, jobs: &[Vec<String>]) -> Vec<Outcome> {
    jobs.iter().map(|job| handshake(port, &job.iter().map(String::as_str).collect::<Vec<_>>())).collect()
}

/// `s_client` arguments that offer exactly `suite` under `protocol` (`-tls1_2`, ...): PSK and SRP
/// suites are only offered with a PSK or an SRP login, so one is given (the server has neither).
fn offer(protocol: &str, suite: &Suite) -> Vec<String> {
    let mut args = vec![protocol.to_string(), "-cipher".into(), format!("{}:@SECLEVEL=0", suite.openssl)];
    if suite.kx.contains("PSK") || suite.au == "PSK" {
        args.extend(["-psk".into(), "1a2b3c4d".into()]);
    }
    if suite.kx == "SRP" {
        args.extend(["-srpuser".into(), "pitrguard".into(), "-srppass".into(), "pass:pitrguard".into()]);
    }
    args
}

/// Whether this OpenSSL's s_client can speak SSLv3 at all (Debian's cannot: no `-ssl3`).
fn has_ssl3() -> bool {
    let out = Command::new("openssl").args(["s_client", "-help"]).output().unwrap();
    String::from_utf8_lossy(&out.stderr).lines().any(|l| l.trim_start().starts_with("-ssl3 "))
}

/// What one server accepted: TLS 1.2 suites by OpenSSL's names, TLS 1.3 suites by IANA's.
#[derive(Debug)]
struct Grade {
    tls12: BTreeSet<String>,
    tls13: BTreeSet<String>,
}

/// Enumerates protocols and suites with `openssl s_client` and asserts the policy: nothing below
/// TLS 1.2, only ECDHE + AEAD suites in TLS 1.2, TLS 1.3 without the truncated-tag CCM_8 suite.
fn grade_with_openssl(what: &str, port: u16, suites: &[Suite]) -> Grade {
    let all = "ALL:COMPLEMENTOFALL:@SECLEVEL=0".to_string();
    let mut rows = Vec::new();

    // Below TLS 1.2: first a ClientHello offering every suite at once, which the server must answer
    // with an alert (so the hello was sent and refused), then one hello per suite defined there.
    let mut old = vec!["tls1", "tls1_1"];
    if has_ssl3() {
        old.insert(0, "ssl3");
    } else {
        eprintln!("{what}: SSLv3 not tried: this OpenSSL's s_client has no -ssl3");
    }
    for proto in old {
        let flag = format!("-{proto}");
        let outcome = handshake(port, &[&flag, "-cipher", &all]);
        assert_eq!(outcome, Outcome::Refused, "{what}: {proto} with every suite offered must get a server alert");
        let defined: Vec<&Suite> = suites.iter().filter(|s| ["SSLv3", "TLSv1"].contains(&s.since.as_str())).collect();
        let jobs: Vec<Vec<String>> = defined.iter().map(|s| offer(&flag, s)).collect();
        // Every one reaches the server (no local refusal) and gets an alert.
        for (suite, outcome) in defined.iter().zip(handshakes(port, &jobs)) {
            assert_eq!(outcome, Outcome::Refused, "{what}: {proto} with {}", suite.openssl);
        }
        rows.push((proto.to_string(), defined.len(), 0));
    }

    // TLS 1.2: one hello per suite defined up to TLS 1.2.
    let tls12_suites: Vec<&Suite> = suites.iter().filter(|s| s.since != "TLSv1.3").collect();
    let jobs: Vec<Vec<String>> = tls12_suites.iter().map(|s| offer("-tls1_2", s)).collect();
    let mut tls12 = BTreeSet::new();
    for (suite, outcome) in tls12_suites.iter().zip(handshakes(port, &jobs)) {
        assert_ne!(outcome, Outcome::NotOffered, "{what}: OpenSSL did not offer {} in TLS 1.2", suite.openssl);
        if let Outcome::Accepted { protocol, suite: chosen, .. } = outcome {
            assert_eq!(protocol, "TLSv1.2", "{what}");
            assert_eq!(chosen, suite.openssl, "{what}: offered only {} but got {chosen}", suite.openssl);
            // ECDHE key exchange (forward secrecy), certificate authentication, an AEAD cipher.
            let strong = suite.kx == "ECDH"
                && ["RSA", "ECDSA"].contains(&suite.au.as_str())
                && suite.mac == "AEAD"
                && (suite.enc.starts_with("AESGCM(") || suite.enc == "CHACHA20/POLY1305(256)");
            let weak_name =
                ["CBC", "-SHA:", "3DES", "DES-", "RC4", "NULL", "EXP", "ADH", "AECDH", "anon", "PSK", "SRP"]
                    .iter()
                    .any(|w| format!("{}:", suite.openssl).contains(w) || suite.iana.contains(w));
            assert!(strong && !weak_name, "{what}: TLS 1.2 accepted a weak suite: {suite:?}");
            tls12.insert(suite.openssl.clone());
        }
    }
    assert!(!tls12.is_empty(), "{what}: no TLS 1.2 suite accepted: the Kubernetes API server could not connect");
    rows.push(("tls1_2".into(), tls12_suites.len(), tls12.len()));

    // TLS 1.3: one hello per suite.
    let jobs: Vec<Vec<String>> =
        TLS13_SUITES.iter().map(|s| vec!["-tls1_3".into(), "-ciphersuites".into(), s.to_string()]).collect();
    let mut tls13 = BTreeSet::new();
    for (suite, outcome) in TLS13_SUITES.iter().zip(handshakes(port, &jobs)) {
        assert_ne!(outcome, Outcome::NotOffered, "{what}: OpenSSL did not offer {suite}");
        if let Outcome::Accepted { protocol, suite: chosen, .. } = outcome {
            assert_eq!((protocol.as_str(), chosen.as_str()), ("TLSv1.3", *suite), "{what}");
            assert_ne!(*suite, "TLS_AES_128_CCM_8_SHA256", "{what}: a truncated 64-bit tag");
            tls13.insert(suite.to_string());
        }
    }
    assert!(!tls13.is_empty(), "{what}: no TLS 1.3 suite accepted");
    rows.push(("tls1_3".into(), TLS13_SUITES.len(), tls13.len()));

    for (proto, tried, accepted) in &rows {
        eprintln!("{what}: {proto}: {tried} suites tried one by one, {accepted} accepted");
    }
    eprintln!("{what}: TLS 1.2 accepted: {}", tls12.iter().cloned().collect::<Vec<_>>().join(" "));
    eprintln!("{what}: TLS 1.3 accepted: {}", tls13.iter().cloned().collect::<Vec<_>>().join(" "));
    Grade { tls12, tls13 }
}

/// Key exchange groups, one hello per group and protocol: only strong ones are accepted.
fn grade_groups(what: &str, port: u16) {
    for proto in ["-tls1_2", "-tls1_3"] {
        let jobs: Vec<Vec<String>> =
            ALL_GROUPS.iter().map(|g| vec![proto.to_string(), "-groups".into(), g.to_string()]).collect();
        let mut accepted = Vec::new();
        for (group, outcome) in ALL_GROUPS.iter().zip(handshakes(port, &jobs)) {
            assert_ne!(outcome, Outcome::NotOffered, "{what}: OpenSSL did not offer the group {group} in {proto}");
            if let Outcome::Accepted { temp_key, .. } = outcome {
                assert!(STRONG_GROUPS.contains(group), "{what}: {proto} accepted the group {group} ({temp_key})");
                accepted.push(*group);
            }
        }
        assert!(!accepted.is_empty(), "{what}: {proto}: no key exchange group accepted");
        eprintln!("{what}: {proto} groups: {} tried, accepted {}", ALL_GROUPS.len(), accepted.join(" "));
    }
}

/// nmap's `ssl-enum-ciphers` on 127.0.0.1:`port`: its output must show TLS 1.2 and 1.3 only, every
/// suite graded A, and the same suites OpenSSL found.
fn grade_with_nmap(what: &str, port: u16, suites: &[Suite], openssl: &Grade) {
    let out = Command::new("nmap")
        .args(["-sT", "-Pn", "-n", "-p", &port.to_string(), "--script", "ssl-enum-ciphers", "127.0.0.1"])
        .output()
        .unwrap_or_else(|e| panic!("nmap runs ({e}): apt-get install nmap (.ci/run installs it)"));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "nmap: {text}{}", String::from_utf8_lossy(&out.stderr));
    eprintln!(
        "{what}: nmap ssl-enum-ciphers:\n{}",
        text.lines().filter(|l| l.starts_with('|')).collect::<Vec<_>>().join("\n")
    );
    // |   TLSv1.2:
    // |       TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (secp256r1) - A
    // |_  least strength: A
    let mut section = String::new();
    let mut found: Vec<(String, String, String)> = Vec::new();
    for line in text.lines().filter_map(|l| l.strip_prefix('|')) {
        let line = line.trim_start_matches('_').trim();
        if let Some(proto) = line.strip_suffix(':').filter(|p| p.starts_with("TLSv") || p.starts_with("SSLv")) {
            section = proto.to_string();
        } else if let Some((name, grade)) = line.rsplit_once(" - ")
            && name.starts_with("TLS_")
        {
            let name = name.split_whitespace().next().unwrap().to_string();
            found.push((section.clone(), name, grade.to_string()));
        }
    }
    assert!(text.contains("least strength: A"), "{what}: nmap's least strength is not A:\n{text}");
    let protocols: BTreeSet<&str> = found.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(protocols, BTreeSet::from(["TLSv1.2", "TLSv1.3"]), "{what}: nmap saw:\n{text}");
    assert!(found.iter().all(|(_, _, g)| g == "A"), "{what}: a suite graded below A:\n{text}");
    // Cross-check with OpenSSL, by IANA name.
    let nmap12: BTreeSet<String> = found.iter().filter(|(p, _, _)| p == "TLSv1.2").map(|(_, n, _)| n.clone()).collect();
    let openssl12: BTreeSet<String> =
        suites.iter().filter(|s| openssl.tls12.contains(&s.openssl)).map(|s| s.iana.clone()).collect();
    assert_eq!(nmap12, openssl12, "{what}: nmap and OpenSSL disagree on the TLS 1.2 suites");
    // nmap names TLS 1.3 suites TLS_AKE_WITH_<cipher>; nmap 7.93 knows no CCM suites for TLS 1.3.
    let nmap13: BTreeSet<String> = found
        .iter()
        .filter(|(p, _, _)| p == "TLSv1.3")
        .map(|(_, n, _)| n.replacen("TLS_AKE_WITH_", "TLS_", 1))
        .collect();
    assert_eq!(nmap13, openssl.tls13, "{what}: nmap and OpenSSL disagree on the TLS 1.3 suites");
}

/// Waits until `server` accepts TCP connections on `port` (pitrguard binds after its certificate
/// loaded); fails at once if it exits.
fn wait_listening(server: &mut Stopped, port: u16) {
    wait_for(Duration::from_secs(60), "the server to listen", || {
        if let Some(status) = server.try_wait().unwrap() {
            panic!("the server exited: {status}");
        }
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

#[test]
fn development_certificate_ecdsa_graded_by_openssl_and_nmap() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port, _admin) = serve_examples::<&str>(dir.path(), &[]);
    wait_listening(&mut server, port);
    let suites = catalogue();
    let what = "dev certificate (ECDSA P-256)";
    let grade = grade_with_openssl(what, port, &suites);
    // With an ECDSA key only ECDSA-signed suites can be chosen.
    assert!(grade.tls12.iter().all(|s| s.starts_with("ECDHE-ECDSA-")), "{:?}", grade.tls12);
    grade_with_nmap(what, port, &suites, &grade);
    assert!(server.try_wait().unwrap().is_none(), "the server went down while graded");
}

/// A self-signed RSA 2048 certificate for 127.0.0.1 made by OpenSSL, in `dir`: (cert, key).
fn rsa_certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("rsa.crt"), dir.join("rsa.key"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .args([&key, Path::new("-out"), &cert])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success(), "openssl req");
    (cert, key)
}

#[test]
fn rsa_certificate_graded_by_openssl_and_nmap() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = rsa_certificate(dir.path());
    let args = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    let (mut server, port, _admin) = serve_examples(dir.path(), &args);
    wait_listening(&mut server, port);
    let suites = catalogue();
    let what = "RSA 2048 certificate";
    let grade = grade_with_openssl(what, port, &suites);
    // With an RSA key: ECDHE-RSA only, never RSA key exchange (AES128-GCM-SHA256 etc.).
    assert!(grade.tls12.iter().all(|s| s.starts_with("ECDHE-RSA-")), "{:?}", grade.tls12);
    // Groups on the RSA server: in TLS 1.2 an OpenSSL client also requires an ECDSA server's curve
    // among the offered groups, which would hide the key exchange behind the certificate's curve.
    grade_groups(what, port);
    grade_with_nmap(what, port, &suites, &grade);
    assert!(server.try_wait().unwrap().is_none(), "the server went down while graded");
}

// ---------------------------------------------------------------------------
// mutual TLS against the real binary

/// A CA and a client certificate it signs, as PEM files in `dir`: (ca, cert, key).
fn client_pki(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name.push(DnType::CommonName, name);
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &Issuer::from_params(&ca, &ca_key)).unwrap();
    let paths = (dir.join(format!("{name}-ca.crt")), dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// curl POSTs the examples' denied review to `url` over the TLS versions `tls` (curl flags):
/// the HTTP status (0: no answer) and the body with curl's error text.
fn curl_validate(url: &str, ca: &Path, tls: &[&str], client: Option<(&Path, &Path)>) -> (u16, String) {
    let review = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/admission/review-denied.json");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"]).args(tls).arg("--cacert").arg(ca).args([
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{review}"),
    ]);
    if let Some((cert, key)) = client {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let out = cmd.arg(url).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), format!("{body}{}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn mutual_tls_refuses_clients_without_a_certificate_of_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (apiserver_ca, apiserver_cert, apiserver_key) = client_pki(dir.path(), "kube-apiserver");
    let (_, stranger_cert, stranger_key) = client_pki(dir.path(), "stranger");
    let args = ["--client-ca", apiserver_ca.to_str().unwrap()];
    let (mut server, port, _admin) = serve_examples(dir.path(), &args);
    wait_listening(&mut server, port);
    let url = format!("https://127.0.0.1:{port}/validate");
    let ca = dir.path().join("ca.crt");
    wait_for(Duration::from_secs(30), "the dev CA file", || ca.exists());

    for tls in [&["--tlsv1.3"][..], &["--tlsv1.2", "--tls-max", "1.2"][..]] {
        let call = |client| curl_validate(&url, &ca, tls, client);
        let (status, text) = call(None);
        assert_eq!(status, 0, "{tls:?}: no client certificate must get no HTTP answer: {text}");
        let (status, text) = call(Some((&stranger_cert, &stranger_key)));
        assert_eq!(status, 0, "{tls:?}: a certificate of another CA must get no HTTP answer: {text}");
        let (status, text) = call(Some((&apiserver_cert, &apiserver_key)));
        assert_eq!(status, 200, "{tls:?}: the client CA's certificate: {text}");
        assert!(text.contains("12m46s after the end"), "{text}");
    }
    // OpenSSL's view of the TLS 1.2 handshake: without a certificate the server alerts; with one
    // from the client CA the handshake completes.
    assert_eq!(handshake(port, &["-tls1_2"]), Outcome::Refused);
    let (cert, key) = (apiserver_cert.to_str().unwrap(), apiserver_key.to_str().unwrap());
    assert!(matches!(handshake(port, &["-tls1_2", "-cert", cert, "-key", key]), Outcome::Accepted { .. }));
    assert!(server.try_wait().unwrap().is_none(), "the server went down");
}

// ---------------------------------------------------------------------------
// the grading itself

/// The grading fails where it must: against `openssl s_server` configured badly, once accepting
/// TLS 1.0, once offering a CBC suite with RSA key exchange in TLS 1.2.
#[test]
fn the_grading_fails_a_server_with_tls10_or_a_weak_tls12_suite() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = rsa_certificate(dir.path());
    let suites = catalogue();
    // Only the suites these servers are about: the weak one and a strong one.
    let few: Vec<Suite> = suites
        .iter()
        .filter(|s| ["AES128-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"].contains(&s.openssl.as_str()))
        .cloned()
        .collect();
    assert_eq!(few.len(), 2);
    for (what, server_args, expected) in [
        ("TLS 1.0", ["-tls1", "-cipher", "ALL:@SECLEVEL=0"], "with every suite offered must get a server alert"),
        (
            "CBC in TLS 1.2",
            ["-tls1_2", "-cipher", "AES128-SHA256:ECDHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0"],
            "weak suite",
        ),
    ] {
        let port = common::process::free_port();
        let server = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
            .args([&cert, Path::new("-key"), &key])
            .args(server_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = Stopped(server);
        wait_listening(&mut server, port);
        let failed = std::panic::catch_unwind(|| grade_with_openssl(what, port, &few)).expect_err(what);
        let message = failed
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| failed.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(message.contains(expected), "{what}: the grading failed for another reason: {message}");
    }
}
