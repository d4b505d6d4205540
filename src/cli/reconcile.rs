//! `pitrguard reconcile`, and the reconciler flags `serve` shares.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::inventory::SharedInventory;
use crate::metrics::Metrics;
use crate::reconcile::{self, Mode, leader::LeaseConfig};
use crate::server::admin::{self, Admin};
use crate::server::transport::serve_plain;

/// The reconciler's settings, shared by `reconcile` and `serve --reconcile`.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// Label selector: only OpsRequests matching it are claimed (perform) or followed (observe).
    #[arg(long, value_name = "SELECTOR", env = "PITRGUARD_RECONCILE_SELECTOR")]
    pub reconcile_selector: Option<String>,

    /// Name of the Lease that elects the one replica that reconciles.
    #[arg(long, default_value = "pitrguard-reconciler", env = "PITRGUARD_LEASE_NAME")]
    pub lease_name: String,

    /// Namespace of the Lease (default: the pod's namespace, else "default").
    #[arg(long, env = "PITRGUARD_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// This replica's name in the Lease (default: HOSTNAME and process id).
    #[arg(long, env = "PITRGUARD_LEASE_IDENTITY")]
    pub lease_identity: Option<String>,

    /// Seconds the Lease is held without renewal: how long a crashed leader blocks the others.
    #[arg(long, default_value_t = 15, value_name = "SECONDS", env = "PITRGUARD_LEASE_DURATION",
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_duration: u64,

    /// Seconds before the Lease expires at which the leader renews it (less than --lease-duration).
    #[arg(long, default_value_t = 5, value_name = "SECONDS", env = "PITRGUARD_LEASE_GRACE",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lease_grace: u64,
}

impl ReconcileArgs {
    pub fn config(&self, mode: Mode, policy: crate::core::Policy) -> anyhow::Result<reconcile::Config> {
        anyhow::ensure!(
            self.lease_grace < self.lease_duration,
            "--lease-grace ({}) must be shorter than --lease-duration ({})",
            self.lease_grace,
            self.lease_duration
        );
        let namespace = self
            .lease_namespace
            .clone()
            .or_else(reconcile::leader::pod_namespace)
            .unwrap_or_else(|| "default".to_string());
        Ok(reconcile::Config {
            mode,
            selector: self.reconcile_selector.clone(),
            policy,
            lease: LeaseConfig {
                name: self.lease_name.clone(),
                namespace,
                identity: self.lease_identity.clone().unwrap_or_else(reconcile::leader::default_identity),
                duration: self.lease_duration,
                grace: self.lease_grace,
            },
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// observe: report restores as Events and metrics, write nothing (KubeBlocks 0.9, or wherever KubeBlocks'
    /// OpsRequest controller runs). perform: run Restore OpsRequests (KubeBlocks 1.0/1.1 with
    /// controllers.operations.enabled=false).
    #[arg(long, default_value = "observe", env = "PITRGUARD_RECONCILE_MODE",
          value_parser = clap::builder::PossibleValuesParser::new(["observe", "perform"])
              .map(|s| if s == "perform" { Mode::Perform } else { Mode::Observe }))]
    pub mode: Mode,

    /// Address of the plain-HTTP admin port (/healthz, /readyz, /metrics).
    #[arg(long, default_value = "0.0.0.0:9090", env = "PITRGUARD_ADMIN_LISTEN")]
    pub admin_listen: SocketAddr,

    #[command(flatten)]
    pub reconcile: ReconcileArgs,

    #[command(flatten)]
    pub policy: super::PolicyArgs,
}

use clap::builder::TypedValueParser;

pub async fn run(args: &Args) -> anyhow::Result<u8> {
    let config = args.reconcile.config(args.mode, args.policy.policy())?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("pitrguard reconcile needs an in-cluster config or a kubeconfig: {e}"))?;
    let flavour = reconcile::preflight(&client, args.mode).await?;
    let metrics = Arc::new(Metrics::new());
    // Ready once the lease is contended for; the inventory itself is not used here.
    let ready = Arc::new(SharedInventory::pending());
    let admin = Admin {
        inventory: ready.clone(),
        metrics: metrics.clone(),
        registry: Arc::new(metrics.registry()),
        tls: None,
        watch: None,
    };
    let listener = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding --admin-listen {}", args.admin_listen))?;
    tracing::info!(admin = %listener.local_addr()?, mode = args.mode.as_str(), "pitrguard reconciling");
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        super::serve::shutdown_signal().await;
        tracing::info!("shutting down: releasing the lease");
        let _ = stop_tx.send(true);
        super::serve::shutdown_signal().await;
        crate::logging::write_out();
        std::process::exit(130);
    });
    let admin = serve_plain(listener, admin::router(admin), super::serve::waiter(&stop_rx));
    let work =
        reconcile::run(client, flavour, config, metrics, move || ready.mark_ready(), super::serve::waiter(&stop_rx));
    let (a, w) = tokio::join!(admin, work);
    w?;
    a.context("admin server")?;
    tracing::info!("stopped");
    Ok(0)
}
