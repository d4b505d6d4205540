//! Leader election with a Lease in pitrguard's namespace (kube-lease-manager): only the holder
//! reconciles, and losing the lease drops the controller, which cancels every reconcile in flight.
//!
//! The manager keeps saying "leader" while it cannot reach the API server (it retries with a
//! backoff of up to 30 s and reports only changes it has seen). So the replica acts only while the
//! API server itself shows the Lease held by it and not run out: a watch of the Lease confirms
//! every renewal, and when the lease's time (renewTime + leaseDurationSeconds) passes without a
//! confirmed renewal, work stops at once, as if the lease were lost, until a renewal is seen again.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

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
    let client_for_watch = client.clone();
    let manager = LeaseManagerBuilder::new(client, &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(lease.duration)
        .with_grace(lease.grace)
        .build()
        .await
        .map_err(|e| anyhow::anyhow!("lease {}/{}: {e}", lease.namespace, lease.name))?;
    let (mut leader, task) = manager.watch().await;
    let (mut confirmed, confirmer) = confirm_lease(client_for_watch, lease);
    tracing::info!(lease = %format!("{}/{}", lease.namespace, lease.name), identity = %lease.identity, "reconciler: waiting for the lease");
    started();
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            changed = leader.wait_for(|l| *l) => if changed.is_err() { break },
        }
        // The manager holds the lease; act once the API server shows it held by us, not run out.
        tokio::select! {
            _ = &mut stop => break,
            _ = leader.wait_for(|l| !*l) => {
                tracing::info!("reconciler: the lease is held by another replica");
                continue
            }
            seen = confirmed.wait_for(|c| c.ours_until().is_some_and(|t| t > SystemTime::now())) => if seen.is_err() { break },
        }
        tracing::info!(identity = %lease.identity, "reconciler: leading");
        metrics.reconcile_leader.set(1);
        tokio::select! {
            _ = &mut stop => { metrics.reconcile_leader.set(0); break }
            _ = work() => {}
            _ = leader.wait_for(|l| !*l) => tracing::warn!("reconciler: lost the lease; stopped at once"),
            why = unconfirmed(&mut confirmed) => match why {
                Confirmation::Other => tracing::warn!("reconciler: lost the lease; stopped at once"),
                _ => tracing::warn!(
                    "reconciler: the lease ran out without a renewal confirmed by the API server; stopped at once"
                ),
            },
        }
        metrics.reconcile_leader.set(0);
    }
    confirmer.abort();
    // Dropping the receiver makes the manager release the lease.
    drop(leader);
    match tokio::time::timeout(std::time::Duration::from_secs(5), task).await {
        Ok(Ok(Ok(_))) => tracing::info!("reconciler: lease released"),
        other => tracing::warn!(?other, "reconciler: the lease was not released cleanly"),
    }
    Ok(())
}

/// The Lease as the API server last showed it to this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirmation {
    /// Not seen yet, or not there.
    None,
    /// Held by this replica until then (its renewTime + leaseDurationSeconds).
    Ours(SystemTime),
    /// Held by another replica, or by nobody.
    Other,
}

impl Confirmation {
    fn of(lease: &Lease, identity: &str) -> Self {
        let Some(spec) = &lease.spec else { return Self::Other };
        if spec.holder_identity.as_deref() != Some(identity) {
            return Self::Other;
        }
        match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(renew), Some(secs)) => {
                Self::Ours(SystemTime::from(renew.0) + Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
            }
            _ => Self::Other,
        }
    }

    fn ours_until(self) -> Option<SystemTime> {
        match self {
            Self::Ours(t) => Some(t),
            _ => None,
        }
    }
}

/// Reconnects the Lease's watch after one second, always: it is one small object.
struct EverySecond;

impl Iterator for EverySecond {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }
}

impl kube::runtime::utils::Backoff for EverySecond {
    fn reset(&mut self) {}
}

/// Watches the Lease: the receiver holds what the API server last showed of it.
fn confirm_lease(client: Client, lease: &LeaseConfig) -> (watch::Receiver<Confirmation>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(Confirmation::None);
    let api: Api<Lease> = Api::namespaced(client, &lease.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", lease.name));
    let identity = lease.identity.clone();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher::watcher(api, config).backoff(EverySecond));
        let mut listed = false;
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => listed = false,
                Ok(Event::InitApply(l) | Event::Apply(l)) => {
                    listed = true;
                    tx.send_replace(Confirmation::of(&l, &identity));
                }
                Ok(Event::InitDone) if !listed => {
                    tx.send_replace(Confirmation::None);
                }
                Ok(Event::Delete(_)) => {
                    tx.send_replace(Confirmation::None);
                }
                // A failing watch confirms nothing more: the last confirmation runs out by itself.
                Ok(Event::InitDone) | Err(_) => {}
            }
        }
    });
    (rx, task)
}

/// Resolves when this replica can no longer count on the lease: the API server showed it held by
/// another (`Other`), or its time passed without a renewal seen.
async fn unconfirmed(confirmed: &mut watch::Receiver<Confirmation>) -> Confirmation {
    loop {
        let now = *confirmed.borrow_and_update();
        let Some(left) = now.ours_until().and_then(|t| t.duration_since(SystemTime::now()).ok()) else {
            return now;
        };
        tokio::select! {
            _ = tokio::time::sleep(left) => {}
            changed = confirmed.changed() => if changed.is_err() { return Confirmation::None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: &str, renewed: SystemTime, secs: i32) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(renewed.try_into().unwrap())),
                lease_duration_seconds: Some(secs),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_is_ours_until_its_renewal_plus_its_duration() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(Confirmation::of(&lease("a", t, 4), "a"), Confirmation::Ours(t + Duration::from_secs(4)));
        assert_eq!(Confirmation::of(&lease("b", t, 4), "a"), Confirmation::Other);
        assert_eq!(Confirmation::of(&Lease::default(), "a"), Confirmation::Other);
    }

    #[tokio::test]
    async fn work_stops_when_the_lease_runs_out_without_a_confirmed_renewal() {
        let until = SystemTime::now() + Duration::from_millis(300);
        let (tx, mut rx) = watch::channel(Confirmation::Ours(until));
        let started = std::time::Instant::now();
        // A renewal seen in time extends it.
        let renew = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send_replace(Confirmation::Ours(until + Duration::from_millis(300)));
            tx
        });
        assert!(matches!(unconfirmed(&mut rx).await, Confirmation::Ours(_)));
        assert!(started.elapsed() >= Duration::from_millis(550), "{:?}", started.elapsed());
        let tx = renew.await.unwrap();
        // Another holder: at once.
        tx.send_replace(Confirmation::Ours(SystemTime::now() + Duration::from_secs(60)));
        tx.send_replace(Confirmation::Other);
        assert_eq!(unconfirmed(&mut rx).await, Confirmation::Other);
    }
}
