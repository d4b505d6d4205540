//! `pitrguard serve`: the admission webhook over TLS, and the admin port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::inventory::FreshBackups;
use crate::inventory::SharedInventory;
use crate::inventory::live::{self, ApiFresh};
use crate::load::load;
use crate::metrics::Metrics;
use crate::server::admin::{self, Admin, CertificateStatus};
use crate::server::tls::{ReloadingTls, TlsFiles};
use crate::server::transport::{self, Limits, serve_plain, serve_tls};
use crate::server::webhook::{self, App};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Serving certificate (PEM). Without --tls-cert and --tls-key, development certificates are made in --dev-certs-dir.
    #[arg(long, env = "PITRGUARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key of the serving certificate (PEM).
    #[arg(long, env = "PITRGUARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA bundle (PEM) that client certificates must chain to; enables mutual TLS.
    #[arg(long, env = "PITRGUARD_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,

    /// Address of the HTTPS webhook.
    #[arg(long, default_value = "0.0.0.0:9443", env = "PITRGUARD_LISTEN")]
    pub listen: SocketAddr,

    /// Address of the plain-HTTP admin port (/healthz, /readyz, /metrics).
    #[arg(long, default_value = "0.0.0.0:9090", env = "PITRGUARD_ADMIN_LISTEN")]
    pub admin_listen: SocketAddr,

    /// Read Backups, ActionSets and Clusters from these files or directories. Without it, they are
    /// watched in the cluster of the in-cluster config or the current kubeconfig.
    #[arg(long, num_args = 1.., value_delimiter = ',', env = "PITRGUARD_INVENTORY")]
    pub inventory: Vec<PathBuf>,

    /// Without --inventory: watch Backups in this namespace only (default: all namespaces).
    #[arg(long, short = 'n', env = "PITRGUARD_NAMESPACE", conflicts_with = "inventory")]
    pub namespace: Option<String>,

    #[command(flatten)]
    pub policy: super::PolicyArgs,

    #[command(flatten)]
    pub module: super::ModuleArgs,

    /// Where development certificates are written when --tls-cert is not given.
    #[arg(long, default_value = ".pitrguard/dev-certs", env = "PITRGUARD_DEV_CERTS_DIR")]
    pub dev_certs_dir: PathBuf,

    /// The bundled reconciler in this process: off, observe (Events and metrics only) or perform (run Restore
    /// OpsRequests; KubeBlocks 1.0/1.1 with controllers.operations.enabled=false).
    #[arg(long, value_enum, default_value = "off", env = "PITRGUARD_RECONCILE")]
    pub reconcile: crate::reconcile::Mode,

    #[command(flatten)]
    pub reconciler: super::reconcile::ReconcileArgs,

    /// How long in-flight requests may take to finish after SIGTERM (seconds).
    #[arg(long, default_value_t = 20, value_name = "SECONDS", env = "PITRGUARD_DRAIN_TIMEOUT")]
    pub drain_timeout: u64,
}

impl Args {
    /// The certificate files: the given ones, or fresh development certificates.
    fn tls_files(&self) -> anyhow::Result<TlsFiles> {
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            return Ok(TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: self.client_ca.clone() });
        }
        let dir = &self.dev_certs_dir;
        if !dir.join("tls.crt").exists() || !dir.join("tls.key").exists() {
            let hosts: Vec<String> = ["127.0.0.1", "localhost"].map(String::from).into();
            let certs = crate::certs::generate(&hosts).context("making development certificates")?;
            crate::certs::write(dir, &certs).with_context(|| format!("writing {}", dir.display()))?;
        }
        tracing::warn!(
            dir = %dir.display(),
            "no --tls-cert given: serving development certificates; clients trust {}/ca.crt",
            dir.display()
        );
        Ok(TlsFiles { cert: dir.join("tls.crt"), key: dir.join("tls.key"), client_ca: self.client_ca.clone() })
    }
}

impl CertificateStatus for ReloadingTls {
    fn not_after_unix(&self) -> Option<i64> {
        ReloadingTls::not_after_unix(self)
    }

    fn reloads(&self) -> (u64, u64) {
        (self.reloads_total(), self.reload_failures_total())
    }
}

/// Resolves when SIGTERM or Ctrl-C arrives.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

pub(crate) fn waiter(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

pub async fn run(args: &Args) -> anyhow::Result<u8> {
    let metrics = Arc::new(Metrics::new());
    // The reconciler's checks come first: `perform` where it cannot perform refuses to start.
    let reconciler = if args.reconcile == crate::reconcile::Mode::Off {
        None
    } else {
        let config = args.reconciler.config(args.reconcile, args.policy.policy())?;
        let client = kube::Client::try_default()
            .await
            .map_err(|e| anyhow::anyhow!("--reconcile needs an in-cluster config or a kubeconfig: {e}"))?;
        let flavour = crate::reconcile::preflight(&client, args.reconcile).await?;
        Some((client, flavour, config))
    };
    let (inventory, watch, fresh) = if args.inventory.is_empty() {
        // kube's error repeats its causes in its message, so only that message is shown.
        let client = kube::Client::try_default().await.map_err(|e| {
            anyhow::anyhow!("no --inventory given, so pitrguard watches the cluster, but has no usable in-cluster config or kubeconfig: {e}")
        })?;
        let shared = Arc::new(SharedInventory::pending());
        let watch = live::spawn(client.clone(), args.namespace.clone(), shared.clone(), metrics.clone());
        tracing::info!(
            namespace = args.namespace.as_deref().unwrap_or("<all>"),
            "watching Backups, ActionSets and Clusters"
        );
        (shared, Some(watch), Some(Arc::new(ApiFresh::new(client)) as Arc<dyn FreshBackups>))
    } else {
        let index = load(&args.inventory, false)?.index;
        let counts = index.counts();
        tracing::info!(
            backups = counts.backups,
            action_sets = counts.action_sets,
            clusters = counts.clusters,
            "inventory loaded from files"
        );
        (Arc::new(SharedInventory::ready(index)), None, None)
    };

    // Load the certificate and the module before binding, so a bad flag fails fast and clearly.
    let tls = ReloadingTls::load(args.tls_files()?)?;
    let _watcher = tls.spawn_watcher();
    let policy = args.policy.policy();
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let module = args.module.load(&policy, workers, Some(metrics.clone()))?.map(Arc::new);
    let _module_watcher = module.as_ref().map(|m| m.spawn_watcher(crate::policy_module::POLL_INTERVAL));

    let app_metrics = metrics.clone();
    let app = App { inventory: inventory.clone(), policy: Arc::new(policy), metrics: metrics.clone(), fresh, module };
    let registry = Arc::new(metrics.registry());
    let admin = Admin { inventory, metrics, registry, tls: Some(tls.clone() as Arc<dyn CertificateStatus>), watch };

    let listener = transport::bind(args.listen).with_context(|| format!("binding --listen {}", args.listen))?;
    let admin_listener = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding --admin-listen {}", args.admin_listen))?;
    let (listen, admin_addr) = (listener.local_addr()?, admin_listener.local_addr()?);
    tracing::info!(%listen, admin = %admin_addr, "pitrguard serving");
    // The line to wait for: from here on, restores get verdicts (before it, "not ready, retry").
    let ready_inventory = admin.inventory.clone();
    tokio::spawn(async move {
        while !ready_inventory.is_ready() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::info!(
            validate = %format!("https://{listen}/validate"),
            mutate = %format!("https://{listen}/mutate"),
            readyz = %format!("http://{admin_addr}/readyz"),
            "ready"
        );
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stop_tx.send(true);
        // A second signal stops at once.
        shutdown_signal().await;
        tracing::warn!("second signal: exiting without draining");
        crate::logging::write_out();
        std::process::exit(130);
    });

    if let Some((client, flavour, config)) = reconciler {
        let (metrics, stop) = (app_metrics.clone(), waiter(&stop_rx));
        tokio::spawn(async move {
            if let Err(error) = crate::reconcile::run(client, flavour, config, metrics, || {}, stop).await {
                tracing::error!(error = %format!("{error:#}"), "reconciler stopped");
            }
        });
    }

    let limits = Limits { drain_timeout: Duration::from_secs(args.drain_timeout), ..Limits::default() };
    let webhook = serve_tls(listener, tls, webhook::router(app), limits, waiter(&stop_rx));
    let admin = serve_plain(admin_listener, admin::router(admin), waiter(&stop_rx));
    let (w, a) = tokio::join!(webhook, admin);
    w.context("webhook server")?;
    a.context("admin server")?;
    tracing::info!("stopped");
    Ok(0)
}
