//! What the rules know about each object: small, owned projections of the
//! KubeBlocks objects, taken from the generated CRD types in [`crate::crd`].
//! The live cache stores these instead of whole objects.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use serde_json::{Map, Value, json};

use super::time::{format_time, parse_status_time};
use crate::crd::{actionset::ActionSet, backup::Backup};

pub const LABEL_BACKUP_TYPE: &str = "dataprotection.kubeblocks.io/backup-type";
pub const LABEL_CLUSTER_UID: &str = "dataprotection.kubeblocks.io/cluster-uid";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "apps.kubeblocks.io/component-name";
pub const LABEL_SHARDING: &str = "apps.kubeblocks.io/sharding-name";
pub const LABEL_BACKUP_POLICY: &str = "dataprotection.kubeblocks.io/backup-policy";
pub const ANNOTATION_CLUSTER_SNAPSHOT: &str = "kubeblocks.io/cluster-snapshot";
pub const ANNOTATION_CONNECTION_PASSWORD: &str = "dataprotection.kubeblocks.io/connection-password";
/// M3: the base backup a restore will start from.
pub const ANNOTATION_BASE_BACKUP: &str = "pitrguard.io/base-backup";

/// A string of the facts: borrowed from where they were read (the index, a decoded object), or
/// owned when they must outlive it. The index hands out facts on every decision, and borrowing
/// costs neither an allocation nor the atomic updates of a shared string's reference count.
pub type Str<'a> = Cow<'a, str>;

/// `type(B)`: the backup-type label; absent means Full.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BackupType {
    Full,
    Incremental,
    Differential,
    Continuous,
    Selective,
    Other(String),
}

impl BackupType {
    pub fn from_label(label: Option<&str>) -> Self {
        match label {
            None | Some("Full") => Self::Full,
            Some("Incremental") => Self::Incremental,
            Some("Differential") => Self::Differential,
            Some("Continuous") => Self::Continuous,
            Some("Selective") => Self::Selective,
            Some(other) => Self::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Full => "Full",
            Self::Incremental => "Incremental",
            Self::Differential => "Differential",
            Self::Continuous => "Continuous",
            Self::Selective => "Selective",
            Self::Other(s) => s,
        }
    }

    /// Full and Incremental backups can be the base of a point-in-time restore.
    pub fn can_be_base(&self) -> bool {
        matches!(self, Self::Full | Self::Incremental)
    }
}

/// The labels that tie a backup to its cluster (CONTRACT.md §5.3 step 4).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lineage<'a> {
    pub cluster_uid: Option<Str<'a>>,
    pub instance: Option<Str<'a>>,
    pub component: Option<Str<'a>>,
    /// The `backup-policy` label.
    pub policy_label: Option<Str<'a>>,
}

impl Lineage<'_> {
    /// The four labels, borrowed: (cluster uid, instance, component, backup policy).
    pub fn labels(&self) -> [Option<&str>; 4] {
        [&self.cluster_uid, &self.instance, &self.component, &self.policy_label].map(|l| l.as_deref())
    }

    /// A copy with strings of its own.
    pub fn to_owned_lineage(&self) -> Lineage<'static> {
        let [cluster_uid, instance, component, policy_label] =
            self.labels().map(|l| l.map(|l| Cow::Owned(l.to_owned())));
        Lineage { cluster_uid, instance, component, policy_label }
    }
}

/// How base candidates of a continuous backup are matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateMatch<'a> {
    /// Each label that the continuous backup has must be equal on the candidate.
    Labels { cluster_uid: Option<&'a str>, instance: Option<&'a str>, component: Option<&'a str> },
    /// The continuous backup has none of the three labels: the candidate's
    /// `backup-policy` label must equal its `spec.backupPolicyName`.
    Policy(Option<&'a str>),
}

impl CandidateMatch<'_> {
    /// The label selector that lists the candidates (and the continuous backups of the same
    /// lineage) from the API server: the labels S has, or its backup policy when it has none of
    /// them. `None`: nothing can match. Used where Backups are fetched, not cached (the policy
    /// module's host calls, the reconciler's check before it acts).
    pub fn label_selector(&self) -> Option<String> {
        let pairs: BTreeMap<&str, &str> = match self {
            Self::Labels { cluster_uid, instance, component } => {
                [(LABEL_CLUSTER_UID, cluster_uid), (LABEL_INSTANCE, instance), (LABEL_COMPONENT, component)]
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, (*v)?)))
                    .collect()
            }
            Self::Policy(policy) => [(LABEL_BACKUP_POLICY, (*policy)?)].into_iter().collect(),
        };
        // A value that cannot be written in a selector would select the wrong backups; the API
        // server only stores valid label values, so this is a guard, not a case.
        let valid =
            |v: &str| v.len() <= 63 && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if pairs.is_empty() || pairs.values().any(|v| !valid(v)) {
            return None;
        }
        Some(pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
    }

    pub fn matches(&self, b: &Lineage<'_>) -> bool {
        fn eq(want: Option<&str>, have: &Option<Str<'_>>) -> bool {
            want.is_none() || want == have.as_deref()
        }
        match self {
            Self::Labels { cluster_uid, instance, component } => {
                eq(*cluster_uid, &b.cluster_uid) && eq(*instance, &b.instance) && eq(*component, &b.component)
            }
            Self::Policy(policy) => policy.is_some() && *policy == b.policy_label.as_deref(),
        }
    }
}

/// What the rules read of a Backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFacts<'a> {
    pub namespace: Str<'a>,
    pub name: Str<'a>,
    pub backup_type: BackupType,
    pub phase: Option<Str<'a>>,
    /// `start(B)`: `status.timeRange.start`, else `status.startTimestamp`.
    pub start: Option<DateTime<Utc>>,
    /// `end(B)`: `status.timeRange.end`, else `status.completionTimestamp`.
    pub end: Option<DateTime<Utc>>,
    pub lineage: Lineage<'a>,
    pub policy_name: Option<Str<'a>>,
    pub action_set: Option<Str<'a>>,
    pub has_cluster_snapshot: bool,
}

impl<'a> BackupFacts<'a> {
    /// The facts of `b`, borrowing its strings ([`Self::into_owned`] to keep them longer).
    pub fn from_backup(b: &'a Backup, default_namespace: &'a str) -> Self {
        let labels = b.metadata.labels.as_ref();
        let label =
            |k: &str| labels.and_then(|l| l.get(k)).filter(|v| !v.is_empty()).map(|v| Cow::Borrowed(v.as_str()));
        let text = |s: &'a Option<String>| s.as_deref().map(Cow::Borrowed);
        let status = b.status.as_ref();
        let range = status.and_then(|s| s.time_range.as_ref());
        let time = |primary: Option<&String>, fallback: Option<&String>| {
            primary.or(fallback).and_then(|raw| parse_status_time(raw))
        };
        Self {
            namespace: Cow::Borrowed(b.metadata.namespace.as_deref().unwrap_or(default_namespace)),
            name: Cow::Borrowed(b.metadata.name.as_deref().unwrap_or_default()),
            backup_type: BackupType::from_label(labels.and_then(|l| l.get(LABEL_BACKUP_TYPE)).map(String::as_str)),
            phase: status.and_then(|s| text(&s.phase)),
            start: time(range.and_then(|r| r.start.as_ref()), status.and_then(|s| s.start_timestamp.as_ref())),
            end: time(range.and_then(|r| r.end.as_ref()), status.and_then(|s| s.completion_timestamp.as_ref())),
            lineage: Lineage {
                cluster_uid: label(LABEL_CLUSTER_UID),
                instance: label(LABEL_INSTANCE),
                component: label(LABEL_COMPONENT),
                policy_label: label(LABEL_BACKUP_POLICY),
            },
            policy_name: text(&b.spec.backup_policy_name).filter(|p| !p.is_empty()),
            action_set: status
                .and_then(|s| s.backup_method.as_ref())
                .and_then(|m| text(&m.action_set_name))
                .filter(|a| !a.is_empty()),
            has_cluster_snapshot: b
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(ANNOTATION_CLUSTER_SNAPSHOT)),
        }
    }

    /// The same facts with strings of their own.
    pub fn into_owned(self) -> BackupFacts<'static> {
        let own = |s: Option<Str<'_>>| s.map(|s| Cow::Owned(s.into_owned()));
        BackupFacts {
            namespace: Cow::Owned(self.namespace.into_owned()),
            name: Cow::Owned(self.name.into_owned()),
            backup_type: self.backup_type,
            phase: own(self.phase),
            start: self.start,
            end: self.end,
            lineage: self.lineage.to_owned_lineage(),
            policy_name: own(self.policy_name),
            action_set: own(self.action_set),
            has_cluster_snapshot: self.has_cluster_snapshot,
        }
    }

    pub fn is_continuous(&self) -> bool {
        self.backup_type == BackupType::Continuous
    }

    /// A Completed Full or Incremental backup with an end time.
    pub fn is_base(&self) -> bool {
        self.backup_type.can_be_base() && self.phase.as_deref() == Some("Completed") && self.end.is_some()
    }

    /// A Backup object carrying exactly these facts: what a policy module's host
    /// serves from an inventory that keeps facts, not objects.
    /// `BackupFacts::from_backup` of it gives `self` back.
    pub fn to_object(&self) -> Value {
        let l = &self.lineage;
        let labels: Map<String, Value> = [
            (LABEL_BACKUP_TYPE, Some(self.backup_type.as_str())),
            (LABEL_CLUSTER_UID, l.cluster_uid.as_deref()),
            (LABEL_INSTANCE, l.instance.as_deref()),
            (LABEL_COMPONENT, l.component.as_deref()),
            (LABEL_BACKUP_POLICY, l.policy_label.as_deref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), Value::from(v?))))
        .collect();
        let mut metadata = json!({"name": &*self.name, "namespace": &*self.namespace, "labels": labels});
        if self.has_cluster_snapshot {
            metadata["annotations"] = json!({ ANNOTATION_CLUSTER_SNAPSHOT: "{}" });
        }
        let mut spec = json!({});
        if let Some(p) = &self.policy_name {
            spec["backupPolicyName"] = p[..].into();
        }
        let mut status = json!({});
        if let Some(phase) = &self.phase {
            status["phase"] = phase[..].into();
        }
        let mut range = json!({});
        for (key, t) in [("start", self.start), ("end", self.end)] {
            if let Some(t) = t {
                range[key] = format_time(t).into();
            }
        }
        status["timeRange"] = range;
        if let Some(a) = &self.action_set {
            status["backupMethod"] = json!({ "actionSetName": &**a });
        }
        json!({
            "apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup",
            "metadata": metadata, "spec": spec, "status": status,
        })
    }

    /// How this (continuous) backup's base candidates are found.
    pub fn candidate_match(&self) -> CandidateMatch<'_> {
        let [cluster_uid, instance, component, _] = self.lineage.labels();
        if cluster_uid.is_none() && instance.is_none() && component.is_none() {
            CandidateMatch::Policy(self.policy_name.as_deref())
        } else {
            CandidateMatch::Labels { cluster_uid, instance, component }
        }
    }
}

/// What the rules read of an ActionSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSetFacts {
    pub name: String,
    /// `spec.restore.baseBackupRequired`; the CRD default is true.
    pub base_backup_required: bool,
}

impl ActionSetFacts {
    pub fn from_action_set(a: &ActionSet) -> Self {
        Self {
            name: a.metadata.name.clone().unwrap_or_default(),
            base_backup_required: a.spec.restore.as_ref().and_then(|r| r.base_backup_required).unwrap_or(true),
        }
    }

    /// An ActionSet object carrying exactly these facts (see [`BackupFacts::to_object`]).
    pub fn to_object(&self) -> Value {
        json!({
            "apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "ActionSet",
            "metadata": {"name": self.name},
            "spec": {"restore": {"baseBackupRequired": self.base_backup_required}},
        })
    }
}

/// Labels of an object, for builders and tests.
pub type Labels = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(json: serde_json::Value) -> BackupFacts<'static> {
        BackupFacts::from_backup(&serde_json::from_value(json).unwrap(), "default").into_owned()
    }

    #[test]
    fn time_range_wins_and_timestamps_are_the_fallback() {
        let with_range = backup(serde_json::json!({
            "apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup",
            "metadata": {"name": "b", "namespace": "demo"},
            "spec": {"backupPolicyName": "p", "backupMethod": "m"},
            "status": {"phase": "Running", "startTimestamp": "2024-05-07T09:00:00Z", "completionTimestamp": "2024-05-07T11:00:00Z",
                       "timeRange": {"start": "2024-05-07T10:07:45Z", "end": "2024-05-07T10:47:14Z", "timeZone": "+08:00"}}
        }));
        assert_eq!(with_range.start, Some("2024-05-07T10:07:45Z".parse().unwrap()));
        assert_eq!(with_range.end, Some("2024-05-07T10:47:14Z".parse().unwrap()));

        let without = backup(serde_json::json!({
            "apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup",
            "metadata": {"name": "b"},
            "spec": {"backupPolicyName": "p", "backupMethod": "m"},
            "status": {"phase": "Completed", "startTimestamp": "2024-05-07T09:00:00Z", "completionTimestamp": "2024-05-07T09:05:00Z"}
        }));
        assert_eq!(without.start, Some("2024-05-07T09:00:00Z".parse().unwrap()));
        assert_eq!(without.end, Some("2024-05-07T09:05:00Z".parse().unwrap()));
        assert_eq!(&*without.namespace, "default");
        assert_eq!(without.backup_type, BackupType::Full, "no backup-type label means Full");
        assert!(without.is_base());
        assert!(!without.has_cluster_snapshot);
    }

    #[test]
    fn labels_annotations_and_the_action_set_are_read() {
        let b = backup(serde_json::json!({
            "apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup",
            "metadata": {"name": "wal", "namespace": "demo",
                "labels": {LABEL_BACKUP_TYPE: "Continuous", LABEL_INSTANCE: "pg", LABEL_COMPONENT: "postgresql",
                           LABEL_CLUSTER_UID: "u1", LABEL_BACKUP_POLICY: "pol", "other": "x"},
                "annotations": {ANNOTATION_CLUSTER_SNAPSHOT: "{}"}},
            "spec": {"backupPolicyName": "pol", "backupMethod": "archive-wal"},
            "status": {"phase": "Running", "backupMethod": {"name": "archive-wal", "actionSetName": "pg-pitr"}}
        }));
        assert!(b.is_continuous() && b.has_cluster_snapshot);
        assert_eq!(b.action_set.as_deref(), Some("pg-pitr"));
        assert_eq!(
            b.candidate_match(),
            CandidateMatch::Labels { cluster_uid: Some("u1"), instance: Some("pg"), component: Some("postgresql") }
        );
        assert_eq!((b.start, b.end), (None, None), "no time range yet");
    }

    #[test]
    fn an_unparsable_status_time_counts_as_missing() {
        let b = backup(serde_json::json!({
            "apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup", "metadata": {"name": "b"},
            "spec": {}, "status": {"timeRange": {"start": "yesterday", "end": "2024-05-07T10:47:14Z"}}
        }));
        assert_eq!(b.start, None);
        assert!(b.end.is_some());
    }

    #[test]
    fn facts_survive_the_trip_through_an_object() {
        let full = serde_json::json!({
            "apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup",
            "metadata": {"name": "full", "namespace": "demo", "labels": {LABEL_INSTANCE: "pg", "other": "x"}},
            "spec": {"backupPolicyName": "pol"},
            "status": {"phase": "Completed", "startTimestamp": "2024-05-07T09:00:00Z", "completionTimestamp": "2024-05-07T09:05:00Z",
                       "backupMethod": {"actionSetName": "pg-basebackup"}}
        });
        let wal = serde_json::json!({
            "apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup",
            "metadata": {"name": "wal", "labels": {LABEL_BACKUP_TYPE: "Continuous", LABEL_CLUSTER_UID: "u1",
                         LABEL_COMPONENT: "postgresql", LABEL_BACKUP_POLICY: "pol"},
                         "annotations": {ANNOTATION_CLUSTER_SNAPSHOT: "{}"}},
            "spec": {},
            "status": {"timeRange": {"start": "2024-05-07T10:07:45+08:00"}}
        });
        let odd = serde_json::json!({
            "apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup",
            "metadata": {"name": "odd", "labels": {LABEL_BACKUP_TYPE: "Snapshot"}}, "spec": {}
        });
        for object in [full, wal, odd] {
            let facts = backup(object);
            assert_eq!(backup(facts.to_object()), facts, "{facts:?}");
        }
        for required in [true, false] {
            let a = ActionSetFacts { name: "a".into(), base_backup_required: required };
            assert_eq!(ActionSetFacts::from_action_set(&serde_json::from_value(a.to_object()).unwrap()), a);
        }
    }

    #[test]
    fn action_sets_require_a_base_unless_they_say_otherwise() {
        let a = |restore: serde_json::Value| {
            ActionSetFacts::from_action_set(
                &serde_json::from_value(serde_json::json!({
                    "apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "ActionSet",
                    "metadata": {"name": "a"}, "spec": {"backupType": "Continuous", "restore": restore}
                }))
                .unwrap(),
            )
            .base_backup_required
        };
        assert!(a(serde_json::json!({})));
        assert!(a(serde_json::json!({"baseBackupRequired": true})));
        assert!(!a(serde_json::json!({"baseBackupRequired": false})));
    }
}
