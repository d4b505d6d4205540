//! `pitrguard certs`: a development CA and a serving certificate signed by
//! it, for running the webhook without cert-manager (see
//! `certs/README.md`). The CA's private key is not kept: to rotate, run the
//! command again and update the webhook's `caBundle`.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use chrono::Datelike as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The default `--hosts`: local runs, and the in-cluster Service name the
/// API server calls.
pub const DEFAULT_HOSTS: &str = "127.0.0.1,localhost,pitrguard.pitrguard-system.svc";

const DAY: Duration = Duration::from_secs(24 * 3600);
/// Validity of the development CA and of the serving certificate.
const CA_DAYS: u32 = 3650;
const LEAF_DAYS: u32 = 365;

/// A development CA and a serving certificate, PEM.
#[derive(Clone)]
pub struct DevCerts {
    /// The CA certificate: what clients (the API server) trust.
    pub ca_pem: String,
    /// The serving certificate, signed by the CA.
    pub cert_pem: String,
    /// The serving certificate's private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for DevCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCerts")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl DevCerts {
    /// The CA certificate as a webhook's `caBundle`: base64 of the PEM.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes())
    }
}

/// A host a certificate can name: an IP address, or a DNS name of RFC 1123 labels (letters,
/// digits and `-`, 1 to 63 characters, no `-` at either end; at most 253 characters), optionally
/// with a leading `*.` wildcard.
fn check_host(host: &str) -> Result<(), String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let name = name.strip_prefix("*.").unwrap_or(name);
    if name.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("label {label:?} must have 1 to 63 characters"));
        }
        if let Some(c) = label.chars().find(|c| !c.is_ascii_alphanumeric() && *c != '-') {
            return Err(format!("{c:?} is not allowed (letters, digits, '-' and '.' are)"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    Ok(())
}

/// Generates a new CA (CA:TRUE, pathlen 0, keyCertSign) and a serving
/// certificate it signs (CA:FALSE, serverAuth) valid for `hosts`: IP
/// addresses become IP SANs, anything else a DNS SAN. ECDSA P-256 keys.
/// The first host is also the subject's common name.
pub fn generate(hosts: &[String]) -> Result<DevCerts, rcgen::Error> {
    let hosts: Vec<String> = hosts.iter().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()).collect();
    // Backdated a day so that a node with a slightly late clock accepts it.
    let (year, month, day) = yesterday();
    let not_before = rcgen::date_time_ymd(year, month, day);

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name("pitrguard development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = not_before;
    ca.not_after = not_before + DAY * CA_DAYS;
    let ca_cert = ca.self_signed(&ca_key)?;

    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(hosts.clone())?;
    leaf.distinguished_name = name(hosts.first().map_or("pitrguard", String::as_str));
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = not_before;
    leaf.not_after = not_before + DAY * LEAF_DAYS;
    let issuer = Issuer::from_params(&ca, &ca_key);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    Ok(DevCerts { ca_pem: ca_cert.pem(), cert_pem: leaf_cert.pem(), key_pem: leaf_key.serialize_pem() })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "pitrguard");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// (year, month, day) of yesterday, UTC.
fn yesterday() -> (i32, u8, u8) {
    let day = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    // month() is 1..=12 and day() 1..=31: both fit a u8.
    (day.year(), day.month() as u8, day.day() as u8)
}

/// Writes `ca.crt`, `tls.crt`, `tls.key` (mode 0600) and `ca-bundle.b64`
/// (the `caBundle`, one line) into `dir`, creating it if needed. Each file
/// is written to a temporary name and renamed into place, so a server
/// reading the directory never sees a half-written file.
pub fn write(dir: &Path, certs: &DevCerts) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    write_atomic(&dir.join("ca.crt"), certs.ca_pem.as_bytes(), 0o644)?;
    // Key before certificate: a watching server then sees the pair
    // complete when the certificate lands.
    write_atomic(&dir.join("tls.key"), certs.key_pem.as_bytes(), 0o600)?;
    write_atomic(&dir.join("tls.crt"), certs.cert_pem.as_bytes(), 0o644)?;
    let bundle = format!("{}\n", certs.ca_bundle());
    write_atomic(&dir.join("ca-bundle.b64"), bundle.as_bytes(), 0o644)?;
    Ok(())
}

fn write_atomic(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let file_name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(content)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `pitrguard certs`: make development certificates for the webhook.
#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Directory to write ca.crt, tls.crt, tls.key and ca-bundle.b64 into
    /// (created if missing; existing files are replaced).
    #[arg(long, value_name = "DIR", env = "PITRGUARD_OUT")]
    pub out: PathBuf,
    /// Names and IP addresses the serving certificate is valid for,
    /// comma-separated. IP addresses become IP SANs, names DNS SANs.
    #[arg(
        long,
        value_name = "HOSTS",
        env = "PITRGUARD_HOSTS",
        value_delimiter = ',',
        default_value = DEFAULT_HOSTS
    )]
    pub hosts: Vec<String>,
}

/// Runs `pitrguard certs`: generates, writes, and prints to `out` what it
/// wrote and the `caBundle`. Exit code 0.
pub fn run(args: &CertsArgs, out: &mut dyn io::Write) -> anyhow::Result<u8> {
    let hosts: Vec<String> = args.hosts.iter().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()).collect();
    anyhow::ensure!(!hosts.is_empty(), "--hosts: give at least one name or IP address");
    for host in &hosts {
        check_host(host).map_err(|why| anyhow::anyhow!("--hosts: {host:?} is not a DNS name or IP address: {why}"))?;
    }
    let certs = generate(&hosts).context("--hosts: cannot make a certificate for these hosts")?;
    write(&args.out, &certs).with_context(|| format!("--out {}", args.out.display()))?;

    let dir = &args.out;
    writeln!(out, "wrote {}", dir.join("ca.crt").display())?;
    writeln!(out, "wrote {} (valid for: {})", dir.join("tls.crt").display(), hosts.join(", "))?;
    writeln!(out, "wrote {} (mode 0600)", dir.join("tls.key").display())?;
    writeln!(out, "wrote {}", dir.join("ca-bundle.b64").display())?;
    writeln!(
        out,
        "serve with: --tls-cert {} --tls-key {}",
        dir.join("tls.crt").display(),
        dir.join("tls.key").display()
    )?;
    writeln!(out, "caBundle: {}", certs.ca_bundle())?;
    Ok(0)
}
