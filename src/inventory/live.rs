//! The live inventory: watches of Backups, ActionSets and Clusters (metadata
//! only) that keep a [`SharedInventory`] current, a one-shot list for the
//! CLI's `--live`, and fresh reads for read-your-writes.
//!
//! Only [`BackupFacts`] are kept of a Backup, and Backups are decoded slim
//! ([`SlimBackup`]): no managedFields, and of the large
//! `kubeblocks.io/cluster-snapshot` annotation only that it is there.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, TryStreamExt};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use super::SharedInventory;
use super::relist::RelistedBackups;
use super::slim::SlimBackup;
use crate::core::facts::{ActionSetFacts, BackupFacts};
use crate::core::inventory::Index;
use crate::core::request::RestoreRequest;
use crate::crd::actionset::ActionSet;
use crate::metrics::Metrics;

/// Clusters are watched as metadata only, at the version both KubeBlocks 0.9 and 1.0 serve.
fn cluster_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("apps.kubeblocks.io", "v1alpha1", "Cluster"))
}

fn backups_api(client: &Client, namespace: Option<&str>) -> Api<SlimBackup> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// `PartialObjectMeta` makes every request metadata-only: a Cluster's spec is never transferred.
fn clusters_api(client: &Client, namespace: Option<&str>) -> Api<PartialObjectMeta<DynamicObject>> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &cluster_resource()),
        None => Api::all_with(client.clone(), &cluster_resource()),
    }
}

fn cluster_key(meta: &kube::core::ObjectMeta) -> (String, String) {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

/// Lists everything once (`validate --live`, `windows --live`).
pub async fn list_once(client: &Client, namespace: Option<&str>) -> anyhow::Result<Index> {
    let lp = ListParams::default();
    let backups = backups_api(client, namespace).list(&lp).await?;
    let action_sets = Api::<ActionSet>::all(client.clone()).list(&lp).await?;
    let clusters = clusters_api(client, namespace).list(&lp).await?;
    let mut index = Index::new();
    index.replace_backups(backups.items.into_iter().map(|b| b.facts("")).collect());
    index.replace_action_sets(action_sets.items.iter().map(ActionSetFacts::from_action_set).collect());
    index.replace_clusters(clusters.items.iter().map(|c| cluster_key(&c.metadata)).collect());
    Ok(index)
}

/// What the rules read about one restore, fetched straight from the API server: the source
/// backup S, the Backups of its lineage (one LIST by label selector, not the namespace), its
/// ActionSet and the target Cluster. The reconciler's check before it acts; the same reads the
/// policy module asks its host for.
pub async fn gather(client: &Client, req: &RestoreRequest<'_>) -> anyhow::Result<Index> {
    let mut index = Index::new();
    if let Some(cluster) = req.cluster_name.as_deref().filter(|c| !c.is_empty())
        && clusters_api(client, Some(&req.namespace)).get_opt(cluster).await?.is_some()
    {
        index.apply_cluster(&req.namespace, cluster);
    }
    let ns = req.backup_namespace();
    let Some(name) = req.restore.as_ref().and_then(|r| r.backup_name.as_deref()).filter(|n| !n.is_empty()) else {
        return Ok(index);
    };
    let backups = backups_api(client, Some(ns));
    let Some(s) = backups.get_opt(name).await? else { return Ok(index) };
    let s = s.facts(ns);
    if let Some(selector) = s.candidate_match().label_selector() {
        for b in backups.list(&ListParams::default().labels(&selector)).await?.items {
            index.apply_backup(b.facts(ns));
        }
    }
    if let Some(name) = &s.action_set
        && let Some(a) = Api::<ActionSet>::all(client.clone()).get_opt(name).await?
    {
        index.apply_action_set(ActionSetFacts::from_action_set(&a));
    }
    index.apply_backup(s);
    Ok(index)
}

/// Lists the Backups of one namespace straight from the API server.
pub async fn fresh_backups(client: &Client, namespace: &str) -> anyhow::Result<Index> {
    let list = backups_api(client, Some(namespace)).list(&ListParams::default()).await?;
    let mut index = Index::new();
    index.replace_backups(list.items.into_iter().map(|b| b.facts(namespace)).collect());
    Ok(index)
}

/// How one kind's changes are written into the index.
trait Kind: Send + 'static {
    type Item: Send;
    const NAME: &'static str;
    /// Its place in [`WatchState`].
    const SLOT: usize;
    /// What a re-list gathers until it is complete (InitDone).
    type Listed: Default + Send;
    /// What replaces the kind's objects once the re-list is complete.
    type Complete;
    fn apply(index: &mut Index, item: Self::Item);
    fn delete(index: &mut Index, item: Self::Item);
    fn list(listed: &mut Self::Listed, item: Self::Item);
    /// Called at InitDone, before the index is locked.
    fn complete(listed: Self::Listed) -> Self::Complete;
    /// Replaces the kind's objects in `index` with `complete`; returns how many there are.
    fn replace(index: &mut Index, complete: Self::Complete) -> usize;
}

struct Backups;
impl Kind for Backups {
    type Item = BackupFacts<'static>;
    /// Backups are indexed as they arrive, on a thread of their own: a list of tens of thousands
    /// is never held as facts.
    type Listed = RelistedBackups;
    type Complete = Index;
    const NAME: &'static str = "Backup";
    const SLOT: usize = 0;
    fn apply(index: &mut Index, b: BackupFacts<'static>) {
        index.apply_backup(b);
    }
    fn delete(index: &mut Index, b: BackupFacts<'static>) {
        index.delete_backup(&b.namespace, &b.name);
    }
    fn list(listed: &mut RelistedBackups, b: BackupFacts<'static>) {
        listed.push(b);
    }
    fn complete(listed: RelistedBackups) -> Index {
        listed.finish()
    }
    fn replace(index: &mut Index, listed: Index) -> usize {
        let n = listed.counts().backups;
        index.replace_backups_with(listed);
        n
    }
}

struct ActionSets;
impl Kind for ActionSets {
    type Item = ActionSetFacts;
    type Listed = Vec<ActionSetFacts>;
    type Complete = Vec<ActionSetFacts>;
    const NAME: &'static str = "ActionSet";
    const SLOT: usize = 1;
    fn apply(index: &mut Index, a: ActionSetFacts) {
        index.apply_action_set(a);
    }
    fn delete(index: &mut Index, a: ActionSetFacts) {
        index.delete_action_set(&a.name);
    }
    fn list(listed: &mut Self::Listed, a: ActionSetFacts) {
        listed.push(a);
    }
    fn complete(listed: Self::Listed) -> Self::Complete {
        listed
    }
    fn replace(index: &mut Index, items: Vec<ActionSetFacts>) -> usize {
        let n = items.len();
        index.replace_action_sets(items);
        n
    }
}

struct Clusters;
impl Kind for Clusters {
    type Item = (String, String);
    type Listed = Vec<(String, String)>;
    type Complete = Vec<(String, String)>;
    const NAME: &'static str = "Cluster";
    const SLOT: usize = 2;
    fn apply(index: &mut Index, (ns, name): (String, String)) {
        index.apply_cluster(&ns, &name);
    }
    fn delete(index: &mut Index, (ns, name): (String, String)) {
        index.delete_cluster(&ns, &name);
    }
    fn list(listed: &mut Self::Listed, c: (String, String)) {
        listed.push(c);
    }
    fn complete(listed: Self::Listed) -> Self::Complete {
        listed
    }
    fn replace(index: &mut Index, items: Vec<(String, String)>) -> usize {
        let n = items.len();
        index.replace_clusters(items);
        n
    }
}

/// Health of the watches, for readiness and `/metrics`.
pub struct WatchState {
    synced: AtomicUsize,
    /// Per watch: since when it has been failing; `None` while it is healthy.
    broken_since: std::sync::Mutex<[Option<Instant>; KINDS]>,
}

const KINDS: usize = 3;

impl WatchState {
    fn new() -> Self {
        Self { synced: AtomicUsize::new(0), broken_since: std::sync::Mutex::new([None; KINDS]) }
    }

    /// Seconds the inventory may have missed changes for: 0 while the watches are healthy.
    pub fn staleness(&self) -> Duration {
        let broken = self.broken_since.lock().unwrap_or_else(|e| e.into_inner());
        broken.iter().flatten().map(Instant::elapsed).max().unwrap_or_default()
    }

    fn healthy(&self, kind: usize) {
        self.broken_since.lock().unwrap_or_else(|e| e.into_inner())[kind] = None;
    }

    fn broken(&self, kind: usize) {
        self.broken_since.lock().unwrap_or_else(|e| e.into_inner())[kind].get_or_insert_with(Instant::now);
    }
}

/// Feeds one watch stream into the index until the stream ends (never, in practice).
async fn feed<K: Kind, S>(stream: S, shared: Arc<SharedInventory>, state: Arc<WatchState>, metrics: Arc<Metrics>)
where
    S: Stream<Item = Result<Event<K::Item>, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    let mut relist = K::Listed::default();
    let mut synced_once = false;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(error) => {
                // The watcher re-lists with backoff; the cache keeps answering meanwhile.
                tracing::warn!(kind = K::NAME, %error, "watch failed; serving from the cache and retrying");
                metrics.watch_restarts.inc();
                state.broken(K::SLOT);
                continue;
            }
        };
        // The watch counts as healthy again only once the index holds what it brought: after a
        // re-list, when the whole list has replaced the index (InitDone), not at its first page,
        // so that "staleness 0" always means the index is as current as the API server's answer.
        match event {
            Event::Init => relist = K::Listed::default(),
            Event::InitApply(item) => K::list(&mut relist, item),
            Event::InitDone => {
                let complete = K::complete(std::mem::take(&mut relist));
                let n = K::replace(&mut shared.write(), complete);
                // Outside the lock: what the list brought and the old index are freed by now.
                crate::memory::give_back_freed_everywhere();
                state.healthy(K::SLOT);
                tracing::info!(kind = K::NAME, objects = n, "inventory listed");
                if !synced_once {
                    synced_once = true;
                    if state.synced.fetch_add(1, Ordering::AcqRel) + 1 == KINDS {
                        shared.mark_ready();
                        tracing::info!("inventory synced; ready");
                    }
                }
            }
            Event::Apply(item) => {
                K::apply(&mut shared.write(), item);
                state.healthy(K::SLOT);
            }
            Event::Delete(item) => {
                K::delete(&mut shared.write(), item);
                state.healthy(K::SLOT);
            }
        }
    }
}

fn map_event<A, B>(e: Event<A>, f: impl Fn(A) -> B) -> Event<B> {
    match e {
        Event::Apply(a) => Event::Apply(f(a)),
        Event::Delete(a) => Event::Delete(f(a)),
        Event::Init => Event::Init,
        Event::InitApply(a) => Event::InitApply(f(a)),
        Event::InitDone => Event::InitDone,
    }
}

/// Starts the three watches. `shared` turns ready after each kind's first full list.
pub fn spawn(
    client: Client,
    namespace: Option<String>,
    shared: Arc<SharedInventory>,
    metrics: Arc<Metrics>,
) -> Arc<WatchState> {
    let state = Arc::new(WatchState::new());
    let cfg = watcher::Config::default;
    let ns = namespace.as_deref();

    let backups = watcher::watcher(backups_api(&client, ns), cfg())
        .default_backoff()
        .map_ok(|e| map_event(e, |b: SlimBackup| b.facts("")));
    let action_sets = watcher::watcher(Api::<ActionSet>::all(client.clone()), cfg())
        .default_backoff()
        .map_ok(|e| map_event(e, |a: ActionSet| ActionSetFacts::from_action_set(&a)));
    let clusters = watcher::watcher(clusters_api(&client, ns), cfg())
        .default_backoff()
        .map_ok(|e| map_event(e, |c| cluster_key(&c.metadata)));

    tokio::spawn(feed::<Backups, _>(backups, shared.clone(), state.clone(), metrics.clone()));
    tokio::spawn(feed::<ActionSets, _>(action_sets, shared.clone(), state.clone(), metrics.clone()));
    tokio::spawn(feed::<Clusters, _>(clusters, shared, state.clone(), metrics));
    state
}

/// Fresh reads for the webhook's read-your-writes check. At most
/// [`ApiFresh::CONCURRENT`] LISTs run at once, so a burst of denials cannot
/// turn into a burst of LISTs on the API server; the webhook's timeout bounds
/// the wait for a turn.
pub struct ApiFresh {
    client: Client,
    permits: Arc<tokio::sync::Semaphore>,
}

impl ApiFresh {
    pub const CONCURRENT: usize = 4;

    pub fn new(client: Client) -> Self {
        Self { client, permits: Arc::new(tokio::sync::Semaphore::new(Self::CONCURRENT)) }
    }
}

impl super::FreshBackups for ApiFresh {
    fn backups_in(&self, namespace: String) -> futures::future::BoxFuture<'static, anyhow::Result<Index>> {
        let (client, permits) = (self.client.clone(), self.permits.clone());
        Box::pin(async move {
            let _turn = permits.acquire_owned().await?;
            fresh_backups(&client, &namespace).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::slim::tests::backup;

    /// A re-list after a failed watch: the watch is reported healthy only once the whole list has
    /// replaced the index, never while the index still holds what was there before the outage.
    #[tokio::test]
    async fn a_relist_reports_healthy_only_once_the_index_is_replaced() {
        let shared = Arc::new(SharedInventory::pending());
        shared.write().apply_backup(backup("deleted-during-the-outage"));
        let state = Arc::new(WatchState::new());
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let events = vec![
            Err(watcher::Error::NoResourceVersion),
            Ok(Event::Init),
            Ok(Event::InitApply(backup("a"))),
            Ok(Event::InitApply(backup("b"))),
            Ok(Event::InitDone),
            Ok(Event::Apply(backup("c"))),
        ];
        let n = events.len();
        // Before each event is handed over: is the watch reported failing, and is the old Backup still there?
        let stream = futures::stream::iter(events).enumerate().map({
            let (state, shared, seen) = (state.clone(), shared.clone(), seen.clone());
            move |(i, e)| {
                let failing = state.broken_since.lock().unwrap()[Backups::SLOT].is_some();
                let old = shared.read().counts().backups;
                seen.lock().unwrap().push((i, failing, old));
                e
            }
        });
        feed::<Backups, _>(stream, shared.clone(), state.clone(), Arc::new(Metrics::new())).await;
        let failing_after_all = state.broken_since.lock().unwrap()[Backups::SLOT].is_some();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), n);
        // Handed over: 0 Err, 1 Init, 2 InitApply, 3 InitApply, 4 InitDone, 5 Apply.
        // While the re-list is under way (before InitDone is handled) the watch still counts as failing.
        assert!(seen[2..=4].iter().all(|(_, failing, _)| *failing), "{seen:?}");
        assert_eq!(seen[4].2, 1, "the index still held the old Backup until the list was complete");
        assert!(!seen[5].1, "healthy after InitDone: {seen:?}");
        assert!(!failing_after_all);
        assert_eq!(shared.read().counts().backups, 3, "a, b, c; the deleted one is gone");
    }
}
