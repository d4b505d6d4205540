//! Backups as the live inventory decodes them from the API server: the generated spec and
//! status, and of the metadata only what [`BackupFacts`] reads. managedFields, and the value of
//! the ~2 KB `kubeblocks.io/cluster-snapshot` annotation, are skipped while parsing, never
//! allocated: with them, a list of 10 000 Backups cost ~2.7 KB per Backup resident.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use kube::Resource;
use kube::core::{NamespaceResourceScope, ObjectMeta};
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::core::facts::{ANNOTATION_CLUSTER_SNAPSHOT, BackupFacts};
use crate::crd::backup::{Backup, BackupSpec, BackupStatus};

#[derive(Debug, Clone, Deserialize)]
pub struct SlimBackup {
    #[serde(deserialize_with = "slim_metadata")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: BackupSpec,
    #[serde(default)]
    pub status: Option<BackupStatus>,
}

impl SlimBackup {
    /// `default_namespace` stands in for a missing `metadata.namespace`.
    pub fn facts(self, default_namespace: &str) -> BackupFacts<'static> {
        let backup = Backup { metadata: self.metadata, spec: self.spec, status: self.status };
        BackupFacts::from_backup(&backup, default_namespace).into_owned()
    }
}

impl Resource for SlimBackup {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Backup::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        Backup::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        Backup::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        Backup::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What the watch machinery (`resourceVersion`, `uid`) and the facts read of `metadata`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    resource_version: Option<String>,
    uid: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<SnapshotAnnotation>,
}

fn slim_metadata<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = Meta::deserialize(d)?;
    let annotations = m.annotations.map(|SnapshotAnnotation(present)| {
        present.then(|| (ANNOTATION_CLUSTER_SNAPSHOT.to_string(), String::new())).into_iter().collect()
    });
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        resource_version: m.resource_version,
        uid: m.uid,
        labels: m.labels,
        annotations,
        ..ObjectMeta::default()
    })
}

/// Of the annotations, whether the cluster snapshot is among them; no value is kept.
struct SnapshotAnnotation(bool);

impl<'de> Deserialize<'de> for SnapshotAnnotation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = SnapshotAnnotation;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut present = false;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    present |= key == ANNOTATION_CLUSTER_SNAPSHOT;
                    map.next_value::<IgnoredAny>()?;
                }
                Ok(SnapshotAnnotation(present))
            }
        }
        d.deserialize_map(Keys)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The facts of a minimal Backup `name` in namespace "ns", decoded as the watches decode it.
    pub(crate) fn backup(name: &str) -> BackupFacts<'static> {
        let b = serde_json::json!({"apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup",
            "metadata": {"name": name, "namespace": "ns"}, "spec": {"backupPolicyName": "p", "backupMethod": "m"}});
        serde_json::from_value::<SlimBackup>(b).unwrap().facts("ns")
    }

    #[test]
    fn the_slim_decoding_gives_the_same_facts_as_the_full_one() {
        let object = serde_json::json!({
            "apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup",
            "metadata": {"name": "wal", "namespace": "demo", "resourceVersion": "42", "uid": "u",
                "labels": {"dataprotection.kubeblocks.io/backup-type": "Continuous", "app.kubernetes.io/instance": "pg"},
                "annotations": {ANNOTATION_CLUSTER_SNAPSHOT: "{\"spec\":{}}", "other": "x"},
                "managedFields": [{"manager": "dataprotection", "fieldsV1": {"f:metadata": {}}}]},
            "spec": {"backupPolicyName": "pol", "backupMethod": "archive-wal"},
            "status": {"phase": "Running", "timeRange": {"start": "2024-05-07T10:00:00Z", "end": "2024-05-07T11:00:00Z"},
                       "backupMethod": {"name": "archive-wal", "actionSetName": "pg-pitr"}}
        });
        let full: Backup = serde_json::from_value(object.clone()).unwrap();
        let slim: SlimBackup = serde_json::from_value(object.clone()).unwrap();
        assert_eq!(slim.metadata.resource_version.as_deref(), Some("42"), "the watch resumes from it");
        assert!(slim.metadata.managed_fields.is_none());
        assert_eq!(slim.facts("x"), BackupFacts::from_backup(&full, "x"));

        let mut without = object;
        without["metadata"]["annotations"] = serde_json::json!({"other": "x"});
        let full: Backup = serde_json::from_value(without.clone()).unwrap();
        let slim: SlimBackup = serde_json::from_value(without).unwrap();
        assert!(!slim.clone().facts("x").has_cluster_snapshot);
        assert_eq!(slim.facts("x"), BackupFacts::from_backup(&full, "x"));
    }
}
