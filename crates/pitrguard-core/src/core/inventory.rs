//! The inventory the rules read: Backups, ActionSets and Cluster names.
//!
//! [`Inventory`] is the read-only view the core needs; [`Index`] is the one
//! implementation, a synchronous state machine with `apply`/`delete` that the
//! file loader fills once and the live cache keeps current from watches.
//!
//! Cost of a decision: one hash lookup for S, one for the groups of base
//! candidates sharing S's (cluster-uid, instance, component) labels, then one
//! B-tree range query per group (one per backup-policy label): O(g · log n). In a
//! real namespace every continuous backup carries all three labels and g = 1.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use chrono::{DateTime, Utc};
// Hashing names is a good part of a decision; foldhash is several times faster than SipHash and
// still seeded per process.
use foldhash::{HashMap, HashSet};

use super::facts::{ActionSetFacts, BackupFacts, BackupType, CandidateMatch, Lineage, Str};

/// A base backup as the window computations see it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BaseRef<'a> {
    pub end: DateTime<Utc>,
    pub name: Str<'a>,
}

/// A string the index keeps: shared by its maps and sets, not copied, and lent to the facts it
/// hands out.
type Text = Arc<str>;

/// The read side of the inventory. Object-safe and synchronous: the core never waits.
pub trait Inventory {
    fn backup(&self, namespace: &str, name: &str) -> Option<BackupFacts<'_>>;
    fn action_set(&self, name: &str) -> Option<ActionSetFacts>;
    /// `baseBackupRequired` of the ActionSet `name`, when there is one (what a decision reads of it).
    fn base_backup_required(&self, action_set: &str) -> Option<bool> {
        self.action_set(action_set).map(|a| a.base_backup_required)
    }
    fn cluster_exists(&self, namespace: &str, name: &str) -> bool;
    /// Base candidates of `s` (same namespace, matching lineage) with `from <= end <= to`,
    /// ordered by end, then name.
    fn bases_ending_between(&self, s: &BackupFacts<'_>, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<BaseRef<'_>> {
        self.bases_in(s, from, to, Pick::All)
    }
    /// The earliest such candidate (ties: smallest name).
    fn earliest_base(&self, s: &BackupFacts<'_>, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<BaseRef<'_>> {
        self.bases_in(s, from, to, Pick::Earliest).into_iter().next()
    }
    /// The latest such candidate (ties: smallest name), as KubeBlocks picks it.
    fn latest_base(&self, s: &BackupFacts<'_>, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<BaseRef<'_>> {
        self.bases_in(s, from, to, Pick::Latest).into_iter().next()
    }
    /// The one range query the three above are made of.
    fn bases_in(&self, s: &BackupFacts<'_>, from: DateTime<Utc>, to: DateTime<Utc>, pick: Pick) -> Vec<BaseRef<'_>>;
    /// Names of continuous backups in `namespace` whose lineage matches `m`.
    fn continuous_like(&self, namespace: &str, m: &CandidateMatch<'_>) -> Vec<String>;
    /// Every continuous backup, for `pitrguard windows`.
    fn continuous_backups(&self) -> Vec<BackupFacts<'_>>;
    /// Every Backup in `namespace`, in no particular order (a policy module's list call).
    fn for_each_backup_in(&self, namespace: &str, f: &mut dyn FnMut(&BackupFacts<'_>));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    All,
    Earliest,
    Latest,
}

/// Object counts, for `/metrics` and progress messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub backups: usize,
    pub action_sets: usize,
    pub clusters: usize,
}

/// Strings that repeat across Backups (phases, types, backup policies, ActionSets), stored once.
/// Id 0 is "absent". They are few (per cluster, not per Backup) and kept for the index's life.
#[derive(Debug, Default)]
struct Symbols {
    ids: HashMap<Text, u32>,
    strings: Vec<Text>,
}

impl Symbols {
    fn intern(&mut self, s: Option<&str>) -> u32 {
        let Some(s) = s else { return 0 };
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let shared: Text = s.into();
        self.strings.push(shared.clone());
        let id = u32::try_from(self.strings.len()).expect("fewer than 2^32 distinct strings");
        self.ids.insert(shared, id);
        id
    }

    fn get(&self, id: u32) -> Option<&str> {
        id.checked_sub(1).map(|i| &*self.strings[i as usize])
    }

    fn lent(&self, id: u32) -> Option<Str<'_>> {
        self.get(id).map(Cow::Borrowed)
    }
}

/// The lineages (per cluster) of every Backup, stored once.
#[derive(Debug, Default)]
struct Lineages {
    ids: HashMap<LineageLabels, u32>,
    all: Vec<LineageLabels>,
}

impl Lineages {
    fn intern(&mut self, l: &Lineage<'_>) -> u32 {
        let key = l.labels();
        if let Some(&id) = self.ids.get(&key as &dyn LabelsKey<4>) {
            return id;
        }
        let own = Labels::own(key);
        self.all.push(own.clone());
        let id = u32::try_from(self.all.len() - 1).expect("fewer than 2^32 lineages");
        self.ids.insert(own, id);
        id
    }

    fn get(&self, id: u32) -> &LineageLabels {
        &self.all[id as usize]
    }
}

/// One Backup as the index keeps it: [`BackupFacts`] with the repeating strings replaced by
/// ids, and the name and namespace held by the maps it sits in.
#[derive(Debug, Clone, Copy)]
struct Stored {
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    backup_type: u32,
    phase: u32,
    lineage: u32,
    policy_name: u32,
    action_set: u32,
    has_cluster_snapshot: bool,
}

/// A Backup name, shared by the by-name map, the time-ordered sets and the facts handed out.
type Name = Text;

/// The smallest name, for range bounds; one shared allocation rather than one per query.
fn no_name() -> Name {
    static EMPTY: std::sync::OnceLock<Name> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Name::from("")).clone()
}

#[derive(Debug, Default)]
struct Namespace {
    backups: HashMap<Name, Stored>,
    /// Completed Full/Incremental backups with an end, by lineage, sorted by (end, name).
    bases: ByLineage<BTreeSet<(DateTime<Utc>, Name)>>,
    /// Continuous backups by lineage.
    continuous: ByLineage<BTreeSet<Name>>,
    clusters: HashSet<String>,
}

impl Namespace {
    /// `lineage` is the index's own copy of `b.lineage`.
    fn index(&mut self, b: &BackupFacts<'_>, name: &Name, lineage: &LineageLabels) {
        if b.is_base() {
            let end = b.end.expect("is_base implies an end");
            self.bases.group(lineage).insert((end, name.clone()));
        }
        if b.is_continuous() {
            self.continuous.group(lineage).insert(name.clone());
        }
    }

    fn unindex(&mut self, b: &BackupFacts<'_>, name: &Name) {
        if let Some(end) = b.end.filter(|_| b.is_base()) {
            self.bases.remove(&b.lineage, |set| {
                set.remove(&(end, name.clone()));
                set.is_empty()
            });
        }
        if b.is_continuous() {
            self.continuous.remove(&b.lineage, |set| {
                set.remove(&*b.name);
                set.is_empty()
            });
        }
    }
}

/// Labels the index keeps, its own copies. Looked up by borrowed labels ([`LabelsKey`]), so that
/// neither a decision nor a load clones a name to find them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Labels<const N: usize>([Option<Text>; N]);

/// A cluster's three labels, (cluster uid, instance, component): what a full candidate match compares.
type ClusterLabels = Labels<3>;
/// A lineage: the three cluster labels and the backup-policy label ([`Lineage::labels`]).
type LineageLabels = Labels<4>;

impl<const N: usize> Labels<N> {
    fn own(labels: [Option<&str>; N]) -> Self {
        Self(labels.map(|l| l.map(Text::from)))
    }
}

impl LineageLabels {
    /// The lineage, borrowing the index's strings.
    fn lineage(&self) -> Lineage<'_> {
        let [cluster_uid, instance, component, policy_label] = self.labels().map(|l| l.map(Cow::Borrowed));
        Lineage { cluster_uid, instance, component, policy_label }
    }
}

/// Labels as a key, owned or borrowed (a `HashMap` looks up `dyn LabelsKey`).
trait LabelsKey<const N: usize> {
    fn labels(&self) -> [Option<&str>; N];
}

impl<const N: usize> LabelsKey<N> for Labels<N> {
    fn labels(&self) -> [Option<&str>; N] {
        self.0.each_ref().map(Option::as_deref)
    }
}

impl<const N: usize> LabelsKey<N> for [Option<&str>; N] {
    fn labels(&self) -> [Option<&str>; N] {
        *self
    }
}

impl<'a, const N: usize> std::borrow::Borrow<dyn LabelsKey<N> + 'a> for Labels<N> {
    fn borrow(&self) -> &(dyn LabelsKey<N> + 'a) {
        self
    }
}

// Both forms hash and compare as their borrowed labels, as `Borrow` requires.
impl<const N: usize> std::hash::Hash for Labels<N> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.labels().hash(h)
    }
}

impl<const N: usize> std::hash::Hash for dyn LabelsKey<N> + '_ {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.labels().hash(h)
    }
}

impl<const N: usize> PartialEq for dyn LabelsKey<N> + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.labels() == other.labels()
    }
}

impl<const N: usize> Eq for dyn LabelsKey<N> + '_ {}

/// A namespace's Backups grouped by lineage. A continuous backup with all three cluster labels (every
/// one KubeBlocks takes) finds its groups with one hash lookup; one with fewer scans the groups.
#[derive(Debug)]
struct ByLineage<T> {
    /// By cluster labels, then one group per `backup-policy` label (almost always one).
    groups: HashMap<ClusterLabels, Vec<(LineageLabels, T)>>,
}

impl<T> Default for ByLineage<T> {
    fn default() -> Self {
        Self { groups: HashMap::default() }
    }
}

/// The three cluster labels of a lineage's four ([`Lineage::labels`]).
fn cluster_labels(lineage: [Option<&str>; 4]) -> [Option<&str>; 3] {
    [lineage[0], lineage[1], lineage[2]]
}

impl<T: Default> ByLineage<T> {
    /// The group of `lineage`, one of the index's [`Lineages`].
    fn group(&mut self, lineage: &LineageLabels) -> &mut T {
        let key = cluster_labels(lineage.labels());
        if !self.groups.contains_key(&key as &dyn LabelsKey<3>) {
            // The key shares the lineage's strings rather than copying them.
            let [uid, instance, component, _] = lineage.0.clone();
            self.groups.insert(Labels([uid, instance, component]), Vec::new());
        }
        let groups = self.groups.get_mut(&key as &dyn LabelsKey<3>).expect("inserted above");
        let at = match groups.iter().position(|(l, _)| l == lineage) {
            Some(at) => at,
            None => {
                groups.push((lineage.clone(), T::default()));
                groups.len() - 1
            }
        };
        &mut groups[at].1
    }

    /// Removes from the group of `lineage` with `remove`, which says whether the group is then empty.
    fn remove(&mut self, lineage: &Lineage<'_>, remove: impl FnOnce(&mut T) -> bool) {
        let labels = lineage.labels();
        let key = cluster_labels(labels);
        let Some(groups) = self.groups.get_mut(&key as &dyn LabelsKey<3>) else { return };
        let Some(at) = groups.iter().position(|(l, _)| l.labels() == labels) else { return };
        if remove(&mut groups[at].1) {
            groups.swap_remove(at);
            if groups.is_empty() {
                self.groups.remove(&key as &dyn LabelsKey<3>);
            }
        }
    }
}

impl<T> ByLineage<T> {
    /// The groups whose lineage `m` matches, in no particular order: with all three cluster labels
    /// (every continuous backup KubeBlocks takes) one hash lookup, else a scan of every group.
    fn matching<'a: 'm, 'm>(&'a self, m: &'m CandidateMatch<'_>) -> impl Iterator<Item = &'a T> + 'm {
        let key = match *m {
            CandidateMatch::Labels { cluster_uid: Some(u), instance: Some(i), component: Some(c) } => {
                Some([Some(u), Some(i), Some(c)])
            }
            _ => None,
        };
        // Two optional iterators rather than a boxed one: a decision allocates nothing to find its groups.
        let scanned =
            key.is_none().then(|| self.groups.values().flatten().filter(move |(l, _)| m.matches(&l.lineage())));
        let found = key.and_then(|key| self.groups.get(&key as &dyn LabelsKey<3>)).into_iter().flatten();
        found.chain(scanned.into_iter().flatten()).map(|(_, group)| group)
    }

    fn values(&self) -> impl Iterator<Item = &T> {
        self.groups.values().flatten().map(|(_, group)| group)
    }

    fn clear(&mut self) {
        self.groups.clear();
    }
}

fn base_ref((end, name): &(DateTime<Utc>, Name)) -> BaseRef<'_> {
    BaseRef { end: *end, name: Cow::Borrowed(name) }
}

/// The bound just past every entry that ends at or before `to`.
fn ending_after(to: DateTime<Utc>) -> Bound<(DateTime<Utc>, Name)> {
    match to.checked_add_signed(chrono::TimeDelta::nanoseconds(1)) {
        Some(next) => Bound::Excluded((next, no_name())),
        None => Bound::Unbounded,
    }
}

/// Entries of `set` with `from <= end <= to`, in (end, name) order.
fn ending_between(
    set: &BTreeSet<(DateTime<Utc>, Name)>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> impl DoubleEndedIterator<Item = &(DateTime<Utc>, Name)> {
    set.range((Bound::Included((from, no_name())), ending_after(to)))
}

/// The entry of `set` with the latest end in `[from, to]`, the smallest name among ties.
/// One search of the tree, for its upper end: the lower end is checked on the entry found.
fn latest_ending_between(
    set: &BTreeSet<(DateTime<Utc>, Name)>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<&(DateTime<Utc>, Name)> {
    let mut below = set.range((Bound::Unbounded, ending_after(to)));
    let last = below.next_back().filter(|last| last.0 >= from)?;
    let mut first = last;
    while let Some(before) = below.next_back().filter(|b| b.0 == last.0) {
        first = before;
    }
    Some(first)
}

/// The facts of a stored Backup, lending the index's strings: a decision copies none.
fn facts<'a>(
    sym: &'a Symbols,
    lineages: &'a Lineages,
    namespace: &'a str,
    name: &'a str,
    s: &Stored,
) -> BackupFacts<'a> {
    BackupFacts {
        namespace: Cow::Borrowed(namespace),
        name: Cow::Borrowed(name),
        backup_type: BackupType::from_label(sym.get(s.backup_type)),
        phase: sym.lent(s.phase),
        start: s.start,
        end: s.end,
        lineage: lineages.get(s.lineage).lineage(),
        policy_name: sym.lent(s.policy_name),
        action_set: sym.lent(s.action_set),
        has_cluster_snapshot: s.has_cluster_snapshot,
    }
}

/// The in-memory inventory.
///
/// Compact, because it holds every Backup of a cluster-wide installation: a Backup costs its
/// name once (shared by the maps), two times and a few ids; the strings that repeat per
/// cluster (lineage labels, phase, type, policy, ActionSet) are stored once.
#[derive(Debug, Default)]
pub struct Index {
    namespaces: HashMap<Text, Namespace>,
    action_sets: HashMap<String, ActionSetFacts>,
    symbols: Symbols,
    lineages: Lineages,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    fn store(&mut self, b: &BackupFacts<'_>) -> Stored {
        let s = &mut self.symbols;
        Stored {
            start: b.start,
            end: b.end,
            backup_type: s.intern(Some(b.backup_type.as_str())),
            phase: s.intern(b.phase.as_deref()),
            lineage: self.lineages.intern(&b.lineage),
            policy_name: s.intern(b.policy_name.as_deref()),
            action_set: s.intern(b.action_set.as_deref()),
            has_cluster_snapshot: b.has_cluster_snapshot,
        }
    }

    fn facts<'a>(&'a self, namespace: &'a str, name: &'a str, s: &Stored) -> BackupFacts<'a> {
        facts(&self.symbols, &self.lineages, namespace, name, s)
    }

    /// Adds or replaces a Backup.
    pub fn apply_backup(&mut self, b: BackupFacts<'_>) {
        self.delete_backup(&b.namespace, &b.name);
        let stored = self.store(&b);
        // Copies of its own (here and in the lineages): the facts' strings were made where the
        // object was decoded, among that object's other, short-lived strings, and a string kept
        // there would pin the allocator's pages of all of them.
        if !self.namespaces.contains_key(&*b.namespace) {
            self.namespaces.insert(Text::from(&*b.namespace), Namespace::default());
        }
        let ns = self.namespaces.get_mut(&*b.namespace).expect("inserted above");
        let name = Name::from(&*b.name);
        ns.index(&b, &name, self.lineages.get(stored.lineage));
        ns.backups.insert(name, stored);
    }

    pub fn delete_backup(&mut self, namespace: &str, name: &str) {
        let Some(ns) = self.namespaces.get(namespace) else { return };
        let Some((name, &stored)) = ns.backups.get_key_value(name) else { return };
        let name = name.clone();
        // The old facts borrow the symbols and lineages, which the removal leaves alone.
        let Self { namespaces, symbols, lineages, .. } = self;
        let old = facts(symbols, lineages, namespace, &name, &stored);
        if let Some(ns) = namespaces.get_mut(namespace) {
            ns.backups.remove(&name);
            ns.unindex(&old, &name);
        }
    }

    pub fn apply_action_set(&mut self, a: ActionSetFacts) {
        self.action_sets.insert(a.name.clone(), a);
    }

    pub fn delete_action_set(&mut self, name: &str) {
        self.action_sets.remove(name);
    }

    pub fn apply_cluster(&mut self, namespace: &str, name: &str) {
        self.namespaces.entry(namespace.into()).or_default().clusters.insert(name.to_string());
    }

    pub fn delete_cluster(&mut self, namespace: &str, name: &str) {
        if let Some(ns) = self.namespaces.get_mut(namespace) {
            ns.clusters.remove(name);
        }
    }

    /// Replaces every Backup with `backups` (a watch's full re-list).
    pub fn replace_backups(&mut self, backups: Vec<BackupFacts<'_>>) {
        let mut listed = Index::new();
        for b in backups {
            listed.apply_backup(b);
        }
        self.replace_backups_with(listed);
    }

    /// Replaces every Backup with the Backups of `listed` (its ActionSets and Clusters are not
    /// read). A watch builds `listed` item by item while a re-list arrives, rather than holding
    /// the list: the facts of each item are freed at once, so the names the index keeps are not
    /// left scattered among freed copies that the allocator cannot give back.
    pub fn replace_backups_with(&mut self, listed: Index) {
        for ns in self.namespaces.values_mut() {
            ns.backups.clear();
            ns.bases.clear();
            ns.continuous.clear();
        }
        // Only Backups refer to the symbols and lineages, and every Backup is replaced.
        self.symbols = listed.symbols;
        self.lineages = listed.lineages;
        for (name, part) in listed.namespaces {
            let ns = self.namespaces.entry(name).or_default();
            (ns.backups, ns.bases, ns.continuous) = (part.backups, part.bases, part.continuous);
        }
    }

    pub fn replace_action_sets(&mut self, action_sets: Vec<ActionSetFacts>) {
        self.action_sets = action_sets.into_iter().map(|a| (a.name.clone(), a)).collect();
    }

    /// Replaces every Cluster with `clusters`, given as (namespace, name).
    pub fn replace_clusters(&mut self, clusters: Vec<(String, String)>) {
        for ns in self.namespaces.values_mut() {
            ns.clusters.clear();
        }
        for (namespace, name) in clusters {
            self.apply_cluster(&namespace, &name);
        }
    }

    pub fn counts(&self) -> Counts {
        Counts {
            backups: self.namespaces.values().map(|n| n.backups.len()).sum(),
            action_sets: self.action_sets.len(),
            clusters: self.namespaces.values().map(|n| n.clusters.len()).sum(),
        }
    }
}

impl Inventory for Index {
    fn backup(&self, namespace: &str, name: &str) -> Option<BackupFacts<'_>> {
        let (namespace, ns) = self.namespaces.get_key_value(namespace)?;
        let (name, stored) = ns.backups.get_key_value(name)?;
        Some(self.facts(namespace, name, stored))
    }

    fn action_set(&self, name: &str) -> Option<ActionSetFacts> {
        self.action_sets.get(name).cloned()
    }

    fn base_backup_required(&self, action_set: &str) -> Option<bool> {
        self.action_sets.get(action_set).map(|a| a.base_backup_required)
    }

    fn cluster_exists(&self, namespace: &str, name: &str) -> bool {
        self.namespaces.get(namespace).is_some_and(|n| n.clusters.contains(name))
    }

    fn bases_in(&self, s: &BackupFacts<'_>, from: DateTime<Utc>, to: DateTime<Utc>, pick: Pick) -> Vec<BaseRef<'_>> {
        let Some(ns) = self.namespaces.get(&*s.namespace) else {
            return Vec::new();
        };
        if from > to {
            return Vec::new();
        }
        // S's labels, borrowed: no string is cloned to find its groups.
        let m = s.candidate_match();
        if pick == Pick::All {
            let mut found = Vec::new();
            for set in ns.bases.matching(&m) {
                found.extend(ending_between(set, from, to).map(base_ref));
            }
            found.sort();
            return found;
        }
        // One candidate per lineage group, and the best of those: no list is built or sorted.
        let mut best: Option<&(DateTime<Utc>, Name)> = None;
        for set in ns.bases.matching(&m) {
            let hit = if pick == Pick::Earliest {
                ending_between(set, from, to).next()
            } else {
                latest_ending_between(set, from, to)
            };
            best = match (best, hit) {
                // Earliest: smallest (end, name); latest: latest end, then smallest name.
                (Some(b), Some(h)) if pick == Pick::Latest && h.0 != b.0 => Some(if h.0 > b.0 { h } else { b }),
                (Some(b), Some(h)) => Some(b.min(h)),
                (b, h) => b.or(h),
            };
        }
        best.map(base_ref).into_iter().collect()
    }

    fn continuous_like(&self, namespace: &str, m: &CandidateMatch<'_>) -> Vec<String> {
        let Some(ns) = self.namespaces.get(namespace) else {
            return Vec::new();
        };
        let mut names: Vec<String> = ns.continuous.matching(m).flatten().map(|n| n.to_string()).collect();
        names.sort();
        names
    }

    fn continuous_backups(&self) -> Vec<BackupFacts<'_>> {
        let mut out: Vec<BackupFacts<'_>> = self
            .namespaces
            .iter()
            .flat_map(|(namespace, ns)| {
                ns.continuous.values().flatten().filter_map(move |n| {
                    let (name, stored) = ns.backups.get_key_value(n)?;
                    Some(self.facts(namespace, name, stored))
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out
    }

    fn for_each_backup_in(&self, namespace: &str, f: &mut dyn FnMut(&BackupFacts<'_>)) {
        let Some((namespace, ns)) = self.namespaces.get_key_value(namespace) else { return };
        for (name, stored) in &ns.backups {
            f(&self.facts(namespace, name, stored));
        }
    }
}

/// The inventory with one namespace's Backups replaced by fresher ones, read
/// straight from the API server (read-your-writes). ActionSets and Clusters
/// come from the base.
pub struct Overlay<'a> {
    pub base: &'a dyn Inventory,
    pub namespace: &'a str,
    pub fresh: &'a Index,
}

impl Overlay<'_> {
    fn pick(&self, namespace: &str) -> &dyn Inventory {
        if namespace == self.namespace { self.fresh } else { self.base }
    }
}

impl Inventory for Overlay<'_> {
    fn backup(&self, namespace: &str, name: &str) -> Option<BackupFacts<'_>> {
        self.pick(namespace).backup(namespace, name)
    }

    fn action_set(&self, name: &str) -> Option<ActionSetFacts> {
        self.base.action_set(name)
    }

    fn base_backup_required(&self, action_set: &str) -> Option<bool> {
        self.base.base_backup_required(action_set)
    }

    fn cluster_exists(&self, namespace: &str, name: &str) -> bool {
        self.base.cluster_exists(namespace, name)
    }

    fn bases_in(&self, s: &BackupFacts<'_>, from: DateTime<Utc>, to: DateTime<Utc>, pick: Pick) -> Vec<BaseRef<'_>> {
        self.pick(&s.namespace).bases_in(s, from, to, pick)
    }

    fn continuous_like(&self, namespace: &str, m: &CandidateMatch<'_>) -> Vec<String> {
        self.pick(namespace).continuous_like(namespace, m)
    }

    fn continuous_backups(&self) -> Vec<BackupFacts<'_>> {
        self.base.continuous_backups()
    }

    fn for_each_backup_in(&self, namespace: &str, f: &mut dyn FnMut(&BackupFacts<'_>)) {
        self.pick(namespace).for_each_backup_in(namespace, f)
    }
}
