//! The reconciler's wiring: discovery, the lease, and the controller over OpsRequests, Clusters
//! and DataProtection Restores.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::{Flavour, cluster, flavour, leader, observe, ops, perform};
use crate::core::Policy;
use crate::metrics::Metrics;

/// `--reconcile off|observe|perform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Off,
    Observe,
    Perform,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Observe => "observe",
            Mode::Perform => "perform",
        }
    }
}

/// The settings of a running reconciler.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    /// Label selector narrowing which OpsRequests are claimed (perform) or followed (observe).
    pub selector: Option<String>,
    pub policy: Policy,
    pub lease: leader::LeaseConfig,
}

/// What every reconcile shares.
pub struct Ctx {
    pub mode: Mode,
    pub client: Client,
    pub flavour: Flavour,
    pub ops_resource: ApiResource,
    pub policy: Policy,
    pub identity: String,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub store: Store<DynamicObject>,
    /// observe: what has been reported already (ops uid, what).
    pub reported: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

impl Ctx {
    pub fn ops_api(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &self.ops_resource)
    }

    pub fn cluster_api(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &self.flavour.cluster_resource())
    }

    pub fn restore_api(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &restore_resource())
    }
}

/// DataProtection Restores, which KubeBlocks' Component controller creates for a restored Cluster.
pub fn restore_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("dataprotection.kubeblocks.io", "v1alpha1", "Restore"))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == 409)
    }
}

/// Discovery, before anything is served: `perform` refuses to start where it cannot perform.
pub async fn preflight(client: &Client, mode: Mode) -> anyhow::Result<Flavour> {
    let flavour = flavour::discover(client).await?;
    tracing::info!(flavour = flavour.as_str(), mode = mode.as_str(), "reconciler: KubeBlocks flavour discovered");
    if mode == Mode::Perform {
        flavour.can_perform()?;
    }
    Ok(flavour)
}

/// Runs the reconciler until `stop` resolves: leader election, then the controller while this
/// replica holds the lease. `started` is called once the lease is being contended for.
pub async fn run(
    client: Client,
    flavour: Flavour,
    config: Config,
    metrics: Arc<Metrics>,
    started: impl Fn() + Send + 'static,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if config.mode == Mode::Off {
        return Ok(());
    }
    let groups: Vec<ApiResource> = match config.mode {
        Mode::Perform => vec![flavour::operations_resource()],
        _ => flavour.ops_resources(),
    };
    let identity = config.lease.identity.clone();
    let work = {
        let (client, metrics, config) = (client.clone(), metrics.clone(), config.clone());
        move || {
            let runs = groups
                .iter()
                .cloned()
                .map(|ar| controller(client.clone(), ar, flavour, config.clone(), identity.clone(), metrics.clone()));
            futures::future::join_all(runs)
        }
    };
    leader::run_while_leader(client, &config.lease, metrics, started, work, stop).await
}

/// One controller over the OpsRequests of one API group.
async fn controller(
    client: Client,
    ops_resource: ApiResource,
    flavour: Flavour,
    config: Config,
    identity: String,
    metrics: Arc<Metrics>,
) {
    let ops_api: Api<DynamicObject> = Api::all_with(client.clone(), &ops_resource);
    let mut wc = watcher::Config::default().any_semantic();
    if let Some(s) = &config.selector {
        wc = wc.labels(s);
    }
    let controller = Controller::new_with(ops_api, wc, ops_resource.clone());
    let store = controller.store();
    let cluster_ar = flavour.cluster_resource();
    let (ops_ar1, ops_ar2) = (ops_resource.clone(), ops_resource.clone());
    let store_for_restores = store.clone();
    let controller = controller
        .watches_with(
            Api::<DynamicObject>::all_with(client.clone(), &cluster_ar),
            cluster_ar.clone(),
            watcher::Config::default().any_semantic(),
            move |c: DynamicObject| ops_of_cluster(&c, &ops_ar1),
        )
        .watches_with(
            Api::<DynamicObject>::all_with(client.clone(), &restore_resource()),
            restore_resource(),
            watcher::Config::default().any_semantic(),
            move |r: DynamicObject| ops_of_restore(&r, &store_for_restores, &ops_ar2),
        );
    let reporter = Reporter { controller: "pitrguard".into(), instance: Some(identity.clone()) };
    let ctx = Arc::new(Ctx {
        mode: config.mode,
        recorder: Recorder::new(client.clone(), reporter),
        client,
        flavour,
        ops_resource,
        policy: config.policy.clone(),
        identity,
        metrics: metrics.clone(),
        store,
        reported: Default::default(),
    });
    let mode = config.mode;
    tracing::info!(group = %ctx.ops_resource.group, mode = mode.as_str(), "reconciler: watching OpsRequests");
    controller
        .run(
            move |ops, ctx| async move {
                let result = match mode {
                    Mode::Perform => perform::reconcile(ops, ctx.clone()).await,
                    _ => observe::reconcile(ops, ctx.clone()).await,
                };
                ops::count_phases(&ctx);
                let label = match &result {
                    Ok(_) => "success",
                    Err(e) if e.is_conflict() => "conflict",
                    Err(_) => "error",
                };
                ctx.metrics
                    .reconciles
                    .get_or_create(&crate::metrics::ReconcileLabels { mode: mode.as_str(), result: label })
                    .inc();
                result
            },
            error_policy,
            ctx,
        )
        .for_each(|r| async move {
            if let Err(error) = r {
                tracing::debug!(%error, "reconcile");
            }
        })
        .await;
}

fn error_policy(ops: Arc<DynamicObject>, error: &Error, ctx: Arc<Ctx>) -> Action {
    if error.is_conflict() {
        // Someone wrote first: read again at once.
        return Action::requeue(Duration::from_millis(200));
    }
    tracing::warn!(namespace = ops.namespace().unwrap_or_default(), name = ops.name_any(), %error, "reconcile failed; retrying");
    // As upstream: a retryable error is a Warning Event DoActionFailed, and the OpsRequest stays where it is.
    let ops = ops::Ops::new(&ops);
    if ctx.mode == Mode::Perform && ops.annotation(ops::ANNOTATION_CLAIMED_BY).is_some() && !ops.is_terminal() {
        let note = error.to_string();
        tokio::spawn(async move { ops::event(&ctx, &ops, true, "DoActionFailed", &note).await });
    }
    Action::requeue(Duration::from_secs(5))
}

/// A Cluster names its OpsRequests in `kubeblocks.io/ops-request`.
fn ops_of_cluster(c: &DynamicObject, ops_ar: &ApiResource) -> Vec<ObjectRef<DynamicObject>> {
    let ns = c.namespace().unwrap_or_default();
    let names: Vec<serde_json::Value> = c
        .annotations()
        .get(cluster::ANNOTATION_OPS_REQUEST)
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_default();
    names
        .iter()
        .filter_map(|o| o.get("name").and_then(serde_json::Value::as_str))
        .map(|n| ObjectRef::new_with(n, ops_ar.clone()).within(&ns))
        .collect()
}

/// A Restore belongs to the Cluster of its `app.kubernetes.io/instance` label, and so to every
/// OpsRequest restoring that Cluster.
fn ops_of_restore(
    r: &DynamicObject,
    store: &Store<DynamicObject>,
    ops_ar: &ApiResource,
) -> Vec<ObjectRef<DynamicObject>> {
    let ns = r.namespace().unwrap_or_default();
    let Some(instance) = r.labels().get(cluster::LABEL_INSTANCE).cloned() else {
        return vec![];
    };
    store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
        .filter(|o| o.data.pointer("/spec/clusterName").and_then(serde_json::Value::as_str) == Some(instance.as_str()))
        .map(|o| ObjectRef::new_with(&o.name_any(), ops_ar.clone()).within(&ns))
        .collect()
}
