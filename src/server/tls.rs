//! TLS for the webhook: the rustls server configuration and certificate
//! reload without restart.
//!
//! [`ReloadingTls`] owns the serving certificate. The [`ServerConfig`] it
//! hands out resolves the certificate on every handshake through a
//! [`ResolvesServerCert`] that reads the *current* key, so rotating the
//! serving certificate swaps one pointer and never needs a new config:
//! handshakes already in progress and established connections keep the
//! certificate they started with, new handshakes get the new one.
//!
//! Files are re-read when [`ReloadingTls::spawn_watcher`] sees a change in
//! their parent directories (which is where Kubernetes swaps the `..data`
//! symlink of a Secret volume) and, as a fallback, every few seconds. New
//! material is fully validated (PEM parses, the key matches the leaf, the
//! leaf has not expired) before it is used; anything broken is logged and
//! the certificate in use is kept.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How often the files are re-read even when no file event was seen.
/// inotify does not see every way a file can change (a symlink target
/// outside the watched directories, some network file systems), so the
/// watcher also compares the file contents on this period.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// A certificate that expires sooner than this is reported at warn level
/// when it is loaded.
const EXPIRY_WARNING_SECS: i64 = 7 * 24 * 3600;

const FLAG_CERT: &str = "--tls-cert";
const FLAG_KEY: &str = "--tls-key";
const FLAG_CLIENT_CA: &str = "--client-ca";

/// Where the serving certificate, its key and (optionally) the CA for
/// client certificates are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`--tls-key`).
    pub key: PathBuf,
    /// PEM CA certificate(s); when set, every client must present a
    /// certificate signed by one of them (`--client-ca`).
    pub client_ca: Option<PathBuf>,
}

/// Why TLS material could not be loaded. Every message names the flag
/// whose file has to be fixed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{flag} {}: cannot read: {error}", path.display())]
    Read { flag: &'static str, path: PathBuf, error: std::io::Error },
    /// The file was read but its content is not usable.
    #[error("{flag} {}: {reason}", path.display())]
    Invalid { flag: &'static str, path: PathBuf, reason: String },
    /// The private key is valid but belongs to another certificate.
    #[error(
        "--tls-key {} does not match the certificate in --tls-cert {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// rustls refused the configuration (should not happen with valid input).
    #[error("building the TLS configuration: {0}")]
    Config(String),
}

impl TlsError {
    /// The command-line flag whose file is at fault, if one is.
    pub fn flag(&self) -> Option<&'static str> {
        match self {
            TlsError::Read { flag, .. } | TlsError::Invalid { flag, .. } => Some(flag),
            TlsError::KeyMismatch { .. } => Some(FLAG_KEY),
            TlsError::Config(_) => None,
        }
    }
}

/// The serving certificate, reloadable at run time. See the module docs.
pub struct ReloadingTls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
    config: RwLock<Arc<ServerConfig>>,
    not_after: RwLock<Option<i64>>,
    /// Serialises reloads; holds what is in use and what was last rejected.
    state: Mutex<ReloadState>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

impl fmt::Debug for ReloadingTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingTls")
            .field("files", &self.files)
            .field("not_after_unix", &self.not_after_unix())
            .field("reloads_total", &self.reloads_total())
            .field("reload_failures_total", &self.reload_failures_total())
            .finish_non_exhaustive()
    }
}

impl ReloadingTls {
    /// Reads and validates the certificate, key and client CA. Call this
    /// before binding the port, so that a bad file fails the start with a
    /// message naming the flag instead of failing every handshake.
    pub fn load(files: TlsFiles) -> Result<Arc<ReloadingTls>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let snapshot = Snapshot::read(&files)?;
        let material = Material::parse(&files, &snapshot, &provider)?;
        let current = Arc::new(CurrentCert(RwLock::new(material.key)));
        let config = build_config(&provider, current.clone(), material.client_roots)?;
        log_loaded(&files, material.not_after, "TLS certificate loaded");
        Ok(Arc::new(ReloadingTls {
            files,
            provider,
            current,
            config: RwLock::new(config),
            not_after: RwLock::new(Some(material.not_after)),
            state: Mutex::new(ReloadState { in_use: snapshot, last_rejected: None }),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }))
    }

    /// The files this was loaded from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The rustls configuration for new connections: TLS 1.3 and 1.2 only,
    /// ALPN `h2` and `http/1.1`, the ring provider, the current serving
    /// certificate resolved per handshake, and client-certificate
    /// verification when a client CA was given. Take it per connection: it
    /// is replaced only when the client CA file changes.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        read(&self.config).clone()
    }

    /// Re-reads the files. `Ok(true)`: new material is now in use for new
    /// handshakes. `Ok(false)`: the files are byte-for-byte the ones in use,
    /// or the ones already rejected by an earlier call (not reported twice).
    /// `Err`: the files changed but the new material is unusable (unreadable,
    /// not PEM, key does not match the certificate, expired); this is logged
    /// at warn level, counted in [`reload_failures_total`], and the
    /// certificate in use is kept.
    ///
    /// [`reload_failures_total`]: ReloadingTls::reload_failures_total
    pub fn reload(&self) -> Result<bool, TlsError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = match Snapshot::read(&self.files) {
            Ok(snapshot) => snapshot,
            Err(error) => {
                let rejected = Rejected::Message(error.to_string());
                return self.reject(&mut state, rejected, error);
            }
        };
        if snapshot == state.in_use {
            state.last_rejected = None;
            return Ok(false);
        }
        let parsed = Material::parse(&self.files, &snapshot, &self.provider).and_then(|m| {
            // A new client CA needs a new verifier, hence a new config;
            // a new serving certificate alone does not.
            let config = if snapshot.client_ca != state.in_use.client_ca {
                Some(build_config(&self.provider, self.current.clone(), m.client_roots.clone())?)
            } else {
                None
            };
            Ok((m, config))
        });
        let (material, config) = match parsed {
            Ok(parsed) => parsed,
            Err(error) => return self.reject(&mut state, Rejected::Content(snapshot), error),
        };
        if let Some(config) = config {
            *write(&self.config) = config;
        }
        *write(&self.current.0) = material.key;
        *write(&self.not_after) = Some(material.not_after);
        state.in_use = snapshot;
        state.last_rejected = None;
        self.reloads.fetch_add(1, Ordering::Relaxed);
        log_loaded(&self.files, material.not_after, "TLS certificate reloaded");
        Ok(true)
    }

    fn reject(&self, state: &mut ReloadState, rejected: Rejected, error: TlsError) -> Result<bool, TlsError> {
        if state.last_rejected.as_ref() == Some(&rejected) {
            tracing::debug!(%error, "TLS files still unusable; keeping the certificate in use");
            return Ok(false);
        }
        state.last_rejected = Some(rejected);
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%error, "new TLS files rejected; keeping the certificate in use");
        Err(error)
    }

    /// Watches the parent directories of the files (Kubernetes updates a
    /// Secret volume by swapping the `..data` symlink there) and re-reads
    /// the files after a change, plus every [`POLL_INTERVAL`] as a
    /// fallback. The task ends when this `ReloadingTls` is dropped, or when
    /// the handle is aborted.
    pub fn spawn_watcher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        self.spawn_watcher_with_poll(POLL_INTERVAL)
    }

    /// [`spawn_watcher`](ReloadingTls::spawn_watcher) with another polling
    /// period.
    pub fn spawn_watcher_with_poll(self: &Arc<Self>, poll: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let f = &self.files;
        let dirs =
            crate::file_watch::parent_dirs([&f.cert, &f.key].into_iter().chain(&f.client_ca).map(PathBuf::as_path));
        // The outcome of a reload is logged and counted by `reload` itself.
        tokio::spawn(crate::file_watch::watch("TLS", dirs, poll, move || {
            weak.upgrade().map(|tls| tls.reload()).is_some()
        }))
    }

    /// Expiry (notAfter, Unix seconds) of the serving certificate in use.
    pub fn not_after_unix(&self) -> Option<i64> {
        *read(&self.not_after)
    }

    /// Successful reloads since start (the initial load not included).
    pub fn reloads_total(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Reloads that found new but unusable files.
    pub fn reload_failures_total(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------
// reload internals

struct ReloadState {
    in_use: Snapshot,
    last_rejected: Option<Rejected>,
}

/// The raw bytes of the files. Compared whole: exact, and these files are
/// a few kilobytes.
#[derive(Clone, PartialEq, Eq)]
struct Snapshot {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

#[derive(PartialEq, Eq)]
enum Rejected {
    Content(Snapshot),
    /// The files could not be read; remembered by the error text.
    Message(String),
}

impl Snapshot {
    fn read(files: &TlsFiles) -> Result<Snapshot, TlsError> {
        Ok(Snapshot {
            cert: read_file(FLAG_CERT, &files.cert)?,
            key: read_file(FLAG_KEY, &files.key)?,
            client_ca: match &files.client_ca {
                Some(path) => Some(read_file(FLAG_CLIENT_CA, path)?),
                None => None,
            },
        })
    }
}

fn read_file(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read { flag, path: path.to_owned(), error })
}

/// Validated material, ready to serve.
struct Material {
    key: Arc<CertifiedKey>,
    not_after: i64,
    client_roots: Option<Arc<RootCertStore>>,
}

impl Material {
    fn parse(files: &TlsFiles, snapshot: &Snapshot, provider: &CryptoProvider) -> Result<Material, TlsError> {
        let invalid = |flag, path: &Path, reason: String| TlsError::Invalid { flag, path: path.to_owned(), reason };

        let chain = parse_certs(&snapshot.cert).map_err(|r| invalid(FLAG_CERT, &files.cert, r))?;
        let (not_before, not_after) = validity(&chain[0]).map_err(|r| invalid(FLAG_CERT, &files.cert, r))?;
        let now = chrono::Utc::now().timestamp();
        if not_after <= now {
            return Err(invalid(FLAG_CERT, &files.cert, format!("certificate expired at {}", rfc3339(not_after))));
        }
        if not_before > now {
            // Not fatal: clock skew between the issuer and this node is
            // common right after issuance.
            tracing::warn!(
                cert = %files.cert.display(),
                not_before = %rfc3339(not_before),
                "TLS certificate is not valid yet"
            );
        }

        let key = PrivateKeyDer::from_pem_slice(&snapshot.key).map_err(|e| {
            let reason = match e {
                rustls_pki_types::pem::Error::NoItemsFound => "no PEM private key found \
                     (expected a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)"
                    .to_owned(),
                e => format!("not a PEM private key: {e}"),
            };
            invalid(FLAG_KEY, &files.key, reason)
        })?;
        let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                TlsError::KeyMismatch { cert: files.cert.clone(), key: files.key.clone() }
            }
            e => invalid(FLAG_KEY, &files.key, format!("unusable private key: {e}")),
        })?;

        let client_roots = match (&files.client_ca, &snapshot.client_ca) {
            (Some(path), Some(pem)) => {
                let certs = parse_certs(pem).map_err(|r| invalid(FLAG_CLIENT_CA, path, r))?;
                let mut roots = RootCertStore::empty();
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|e| invalid(FLAG_CLIENT_CA, path, format!("not a usable CA certificate: {e}")))?;
                }
                Some(Arc::new(roots))
            }
            _ => None,
        };

        Ok(Material { key: Arc::new(certified), not_after, client_roots })
    }
}

fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        let hint = if PrivateKeyDer::from_pem_slice(pem).is_ok() { " (this file holds a private key)" } else { "" };
        return Err(format!("no PEM CERTIFICATE block found{hint}"));
    }
    Ok(certs)
}

/// (notBefore, notAfter) of a certificate, Unix seconds.
fn validity(cert: &CertificateDer<'_>) -> Result<(i64, i64), String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let validity = parsed.validity();
    Ok((validity.not_before.timestamp(), validity.not_after.timestamp()))
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map(|t| t.to_rfc3339()).unwrap_or_else(|| unix.to_string())
}

fn log_loaded(files: &TlsFiles, not_after: i64, message: &'static str) {
    let remaining = not_after - chrono::Utc::now().timestamp();
    if remaining < EXPIRY_WARNING_SECS {
        tracing::warn!(
            cert = %files.cert.display(),
            not_after = %rfc3339(not_after),
            "{message}; it expires in less than 7 days"
        );
    } else {
        tracing::info!(
            cert = %files.cert.display(),
            not_after = %rfc3339(not_after),
            client_auth = files.client_ca.is_some(),
            "{message}"
        );
    }
}

// ---------------------------------------------------------------------------
// rustls configuration

/// Hands rustls the certificate in use at the time of each handshake.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(read(&self.0).clone())
    }
}

fn build_config(
    provider: &Arc<CryptoProvider>,
    resolver: Arc<CurrentCert>,
    client_roots: Option<Arc<RootCertStore>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_roots {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| TlsError::Config(format!("client certificate verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

// ---------------------------------------------------------------------------

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
