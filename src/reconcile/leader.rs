//! Leader election with a Lease in pitrguard's namespace (kube-lease-manager): only the holder
//! reconciles, and losing the lease drops the controller, which cancels every reconcile in flight.

use std::sync::Arc;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// Seconds a lease is held without renewal.
    pub duration: u64,
    /// Seconds before expiry at which the holder renews.
    pub grace: u64,
}

/// The namespace a pod runs in, from its service-account mount.
pub fn pod_namespace() -> Option<String> {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A name for this replica: the pod name (HOSTNAME) and the process id.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "pitrguard".into());
    format!("{host}-{}", std::process::id())
}

/// Runs `work()` whenever this replica holds the lease, until `stop` resolves. On stop the lease
/// is released, so another replica takes over at once.
pub async fn run_while_leader<W, F>(
    client: Client,
    lease: &LeaseConfig,
    metrics: Arc<Metrics>,
    started: impl Fn() + Send + 'static,
    work: W,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    W: Fn() -> F,
    F: Future,
{
    anyhow::ensure!(lease.grace < lease.duration, "--lease-grace must be shorter than --lease-duration");
    let manager = LeaseManagerBuilder::new(client, &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(lease.duration)
        .with_grace(lease.grace)
        .build()
        .await
        .map_err(|e| anyhow::anyhow!("lease {}/{}: {e}", lease.namespace, lease.name))?;
    let (mut leader, task) = manager.watch().await;
    tracing::info!(lease = %format!("{}/{}", lease.namespace, lease.name), identity = %lease.identity, "reconciler: waiting for the lease");
    started();
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            changed = leader.wait_for(|l| *l) => if changed.is_err() { break },
        }
        tracing::info!(identity = %lease.identity, "reconciler: leading");
        metrics.reconcile_leader.set(1);
        tokio::select! {
            _ = &mut stop => { metrics.reconcile_leader.set(0); break }
            _ = work() => {}
            _ = leader.wait_for(|l| !*l) => tracing::warn!("reconciler: lost the lease; stopped at once"),
        }
        metrics.reconcile_leader.set(0);
    }
    // Dropping the receiver makes the manager release the lease.
    drop(leader);
    match tokio::time::timeout(std::time::Duration::from_secs(5), task).await {
        Ok(Ok(Ok(_))) => tracing::info!("reconciler: lease released"),
        other => tracing::warn!(?other, "reconciler: the lease was not released cleanly"),
    }
    Ok(())
}
