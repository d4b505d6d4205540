//! The Cluster a Restore OpsRequest creates, built exactly as KubeBlocks 1.0 builds it
//! (`pkg/operations/restore.go`, `pkg/dataprotection/restore/utils.go`): pure functions of
//! (OpsRequest, Backup), unit-tested against the bytes Go writes.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::core::time::PointInTime;

pub const ANNOTATION_RESTORE_FROM_BACKUP: &str = "kubeblocks.io/restore-from-backup";
pub const ANNOTATION_OPS_REQUEST: &str = "kubeblocks.io/ops-request";
pub const ANNOTATION_CLUSTER_SNAPSHOT: &str = "kubeblocks.io/cluster-snapshot";
pub const ANNOTATION_CONNECTION_PASSWORD: &str = "dataprotection.kubeblocks.io/connection-password";
/// pitrguard's proof that it created a Cluster for this OpsRequest.
pub const ANNOTATION_OPS_UID: &str = "pitrguard.io/ops-uid";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
const LABEL_SHARDING_NAME: &str = "apps.kubeblocks.io/sharding-name";
const LABEL_COMPONENT_NAME: &str = "apps.kubeblocks.io/component-name";
const LABEL_BACKUP_TYPE: &str = "dataprotection.kubeblocks.io/backup-type";

/// Why a Cluster cannot be built: fatal in KubeBlocks 1.0 (the OpsRequest turns Failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("backup \"{0}\" has no annotation {ANNOTATION_CLUSTER_SNAPSHOT}, so the Cluster cannot be rebuilt from it")]
    NoSnapshot(String),
    #[error("the {ANNOTATION_CLUSTER_SNAPSHOT} annotation of backup \"{0}\" is not a Cluster: {1}")]
    BadSnapshot(String, String),
    #[error(
        "backup \"{0}\" has neither label {LABEL_SHARDING_NAME} nor {LABEL_COMPONENT_NAME}: the component to restore is unknown"
    )]
    NoComponent(String),
    #[error("spec.clusterName is empty")]
    NoClusterName,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// The component the Backup belongs to: its sharding name, else its component name.
pub fn component_of(backup: &Value) -> Option<String> {
    let labels = backup.pointer("/metadata/labels")?;
    [LABEL_SHARDING_NAME, LABEL_COMPONENT_NAME]
        .iter()
        .find_map(|k| labels.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
        .map(String::from)
}

/// The value of `kubeblocks.io/restore-from-backup`, as Go's `json.Marshal` of
/// `map[string]map[string]string` writes it.
pub fn restore_from_backup(ops: &Value, backup: &Value) -> Result<String, BuildError> {
    let backup_name = str_at(backup, "/metadata/name").unwrap_or_default().to_string();
    let component = component_of(backup).ok_or_else(|| BuildError::NoComponent(backup_name.clone()))?;
    let restore = ops.pointer("/spec/restore").cloned().unwrap_or(Value::Null);
    let mut inner: BTreeMap<String, String> = BTreeMap::new();
    if let Some(p) =
        backup.pointer(&format!("/metadata/annotations/{}", ANNOTATION_CONNECTION_PASSWORD.replace('/', "~1")))
    {
        inner.insert("connectionPassword".into(), p.as_str().unwrap_or_default().into());
    }
    let defer = restore.get("deferPostReadyUntilClusterRunning").and_then(Value::as_bool).unwrap_or(false);
    inner.insert("doReadyRestoreAfterClusterRunning".into(), defer.to_string());
    inner.insert("name".into(), backup_name);
    let ops_ns = str_at(ops, "/metadata/namespace").unwrap_or_default();
    let backup_ns = restore.get("backupNamespace").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or(ops_ns);
    inner.insert("namespace".into(), backup_ns.into());
    if let Some(env) = restore.get("env").filter(|e| !e.is_null()) {
        inner.insert("restoreEnv".into(), go_marshal_structs(env));
    }
    if let Some(params) = restore.get("parameters").and_then(Value::as_array).filter(|p| !p.is_empty()) {
        inner.insert("restoreParameters".into(), go_marshal_structs(&Value::Array(params.clone())));
    }
    if let Some(t) = restore.get("restorePointInTime").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        let continuous =
            str_at(backup, &format!("/metadata/labels/{}", LABEL_BACKUP_TYPE.replace('/', "~1"))) == Some("Continuous");
        let value = match PointInTime::parse(t) {
            Some(p) if continuous => p.normal_form(),
            _ => t.to_string(),
        };
        inner.insert("restoreTime".into(), value);
    }
    let policy = restore.get("volumeRestorePolicy").and_then(Value::as_str).unwrap_or_default();
    inner.insert("volumeRestorePolicy".into(), policy.into());
    let inner: Map<String, Value> = inner.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    Ok(go_marshal(&json!({ component: inner })))
}

/// The `kubeblocks.io/ops-request` annotation of the new Cluster.
pub fn ops_request_annotation(ops_name: &str) -> String {
    go_marshal(&json!([{"name": ops_name, "type": "Restore"}]))
}

/// The Cluster to create for `ops` from `backup`'s snapshot. `ops_uid` goes into
/// [`ANNOTATION_OPS_UID`].
pub fn build_cluster(ops: &Value, backup: &Value) -> Result<Value, BuildError> {
    let backup_name = str_at(backup, "/metadata/name").unwrap_or_default().to_string();
    let name = str_at(ops, "/spec/clusterName").filter(|n| !n.is_empty()).ok_or(BuildError::NoClusterName)?;
    let namespace = str_at(ops, "/metadata/namespace").unwrap_or_default();
    let snapshot = backup
        .pointer(&format!("/metadata/annotations/{}", ANNOTATION_CLUSTER_SNAPSHOT.replace('/', "~1")))
        .and_then(Value::as_str)
        .ok_or_else(|| BuildError::NoSnapshot(backup_name.clone()))?;
    let mut cluster: Value =
        serde_json::from_str(snapshot).map_err(|e| BuildError::BadSnapshot(backup_name.clone(), e.to_string()))?;
    if !cluster.is_object() {
        return Err(BuildError::BadSnapshot(backup_name, "not a JSON object".into()));
    }
    let restore_annotation = restore_from_backup(ops, backup)?;
    if cluster.get("apiVersion").and_then(Value::as_str).is_none_or(str::is_empty) {
        cluster["apiVersion"] = json!("apps.kubeblocks.io/v1");
    }
    cluster["kind"] = json!("Cluster");
    // The metadata of the new object: the snapshot's annotations and nothing that names the old one.
    let old_meta = cluster.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut annotations = old_meta.get("annotations").and_then(Value::as_object).cloned().unwrap_or_default();
    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    annotations.insert(ANNOTATION_RESTORE_FROM_BACKUP.into(), json!(restore_annotation));
    annotations.insert(
        ANNOTATION_OPS_REQUEST.into(),
        json!(ops_request_annotation(str_at(ops, "/metadata/name").unwrap_or_default())),
    );
    annotations.insert(ANNOTATION_OPS_UID.into(), json!(str_at(ops, "/metadata/uid").unwrap_or_default()));
    cluster["metadata"] = json!({"name": name, "namespace": namespace, "annotations": annotations});
    if let Some(o) = cluster.as_object_mut() {
        o.remove("status");
    }
    if let Some(spec) = cluster.get_mut("spec") {
        transform_spec(spec, name);
    }
    Ok(cluster)
}

/// The spec changes of KubeBlocks 1.0.2: services, offlineInstances, sharding account secrets,
/// and the instance label in scheduling selectors.
fn transform_spec(spec: &mut Value, new_name: &str) {
    if let Some(services) = spec.get_mut("services").and_then(Value::as_array_mut) {
        services.retain(|s| str_at(s, "/spec/type") != Some("LoadBalancer"));
        for s in services.iter_mut() {
            if let Some(ports) = s.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    if p.contains_key("nodePort") {
                        p.insert("nodePort".into(), json!(0));
                    }
                }
            }
            if let Some(sel) = s.pointer_mut("/spec/selector").and_then(Value::as_object_mut) {
                sel.remove(LABEL_INSTANCE);
            }
        }
    }
    if let Some(comps) = spec.get_mut("componentSpecs").and_then(Value::as_array_mut) {
        for c in comps.iter_mut().filter_map(Value::as_object_mut) {
            c.remove("offlineInstances");
        }
    }
    if let Some(shardings) = spec.get_mut("shardings").and_then(Value::as_array_mut) {
        for s in shardings.iter_mut() {
            if let Some(accounts) = s.pointer_mut("/template/systemAccounts").and_then(Value::as_array_mut) {
                for a in accounts.iter_mut().filter_map(Value::as_object_mut) {
                    a.remove("secretRef");
                }
            }
            if let Some(c) = s.pointer_mut("/template").and_then(Value::as_object_mut) {
                c.remove("offlineInstances");
            }
        }
    }
    rename_instance_in_scheduling(spec, new_name, false);
}

/// Under any `schedulingPolicy`, `matchLabels[app.kubernetes.io/instance]` becomes the new name.
fn rename_instance_in_scheduling(v: &mut Value, new_name: &str, inside: bool) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                let inside = inside || k == "schedulingPolicy";
                if inside
                    && k == "matchLabels"
                    && let Some(m) = child.as_object_mut()
                    && m.contains_key(LABEL_INSTANCE)
                {
                    m.insert(LABEL_INSTANCE.into(), json!(new_name));
                }
                rename_instance_in_scheduling(child, new_name, inside);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| rename_instance_in_scheduling(c, new_name, inside)),
        _ => {}
    }
}

/// The components a Cluster's `restore-from-backup` annotation still lists (KubeBlocks removes
/// each once its data is restored).
pub fn components_pending(cluster: &Value) -> Option<usize> {
    let text = cluster
        .pointer(&format!("/metadata/annotations/{}", ANNOTATION_RESTORE_FROM_BACKUP.replace('/', "~1")))?
        .as_str()?;
    serde_json::from_str::<Map<String, Value>>(text).ok().map(|m| m.len())
}

// === Go's encoding/json ===

/// Where Go's structs put a field: `corev1.EnvVar` (name, value, valueFrom), its sources and key
/// selectors (name, key, optional). Maps (sorted) and unknown fields come after, sorted.
const GO_FIELD_ORDER: [&str; 14] = [
    "name",
    "key",
    "optional",
    "value",
    "valueFrom",
    "fieldRef",
    "resourceFieldRef",
    "configMapKeyRef",
    "secretKeyRef",
    "apiVersion",
    "fieldPath",
    "containerName",
    "resource",
    "divisor",
];

/// `json.Marshal` of maps as Go writes it: no spaces, HTML-safe escaping (`<`, `>`, `&` as
/// `\u003c` …), U+2028/U+2029 escaped, keys sorted.
pub fn go_marshal(v: &Value) -> String {
    let mut out = String::new();
    encode(v, &mut out, false);
    out
}

/// `json.Marshal` of structs (`[]corev1.EnvVar`, parameters): fields in Go's declaration order
/// (see [`GO_FIELD_ORDER`]).
pub fn go_marshal_structs(v: &Value) -> String {
    let mut out = String::new();
    encode(v, &mut out, true);
    out
}

fn encode(v: &Value, out: &mut String, structs: bool) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => encode_str(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode(x, out, structs);
            }
            out.push(']');
        }
        Value::Object(o) => {
            let rank = |k: &str| {
                let n = GO_FIELD_ORDER.len();
                if structs { GO_FIELD_ORDER.iter().position(|f| *f == k).unwrap_or(n) } else { n }
            };
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode_str(k, out);
                out.push(':');
                encode(&o[k], out, structs);
            }
            out.push('}');
        }
    }
}

fn encode_str(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(extra_labels: Value, extra_annotations: Value) -> Value {
        let snapshot = json!({
            "apiVersion": "apps.kubeblocks.io/v1",
            "kind": "Cluster",
            "metadata": {"name": "pg", "namespace": "demo", "annotations": {"team": "db",
                "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {
                "terminationPolicy": "Delete",
                "clusterDef": "postgresql",
                "componentSpecs": [{"name": "postgresql", "replicas": 2, "offlineInstances": ["pg-postgresql-1"],
                    "schedulingPolicy": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "pg", "x": "y"}}, "topologyKey": "k"}]}}}}],
                "services": [
                    {"name": "lb", "spec": {"type": "LoadBalancer", "ports": [{"port": 5432}]}},
                    {"name": "np", "spec": {"type": "NodePort", "ports": [{"port": 5432, "nodePort": 30001}],
                        "selector": {"app.kubernetes.io/instance": "pg", "role": "primary"}}}
                ]
            },
            "status": {"phase": "Running"}
        });
        let mut labels = json!({"apps.kubeblocks.io/component-name": "postgresql",
            "dataprotection.kubeblocks.io/backup-type": "Continuous"});
        for (k, v) in extra_labels.as_object().unwrap() {
            labels[k] = v.clone();
        }
        let mut annotations = json!({"kubeblocks.io/cluster-snapshot": snapshot.to_string()});
        for (k, v) in extra_annotations.as_object().unwrap() {
            annotations[k] = v.clone();
        }
        json!({"apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup",
            "metadata": {"name": "pg-wal", "namespace": "demo", "labels": labels, "annotations": annotations}})
    }

    fn ops(restore: Value) -> Value {
        json!({"apiVersion": "operations.kubeblocks.io/v1alpha1", "kind": "OpsRequest",
            "metadata": {"name": "r1", "namespace": "demo", "uid": "u-1"},
            "spec": {"type": "Restore", "clusterName": "pg-restored", "restore": restore}})
    }

    #[test]
    fn the_annotation_is_byte_identical_to_go() {
        let o = ops(json!({"backupName": "pg-wal", "restorePointInTime": "May 07,2024 18:30:00 UTC+0800",
            "volumeRestorePolicy": "Parallel"}));
        assert_eq!(
            restore_from_backup(&o, &backup(json!({}), json!({}))).unwrap(),
            r#"{"postgresql":{"doReadyRestoreAfterClusterRunning":"false","name":"pg-wal","namespace":"demo","restoreTime":"2024-05-07T10:30:00Z","volumeRestorePolicy":"Parallel"}}"#
        );
    }

    #[test]
    fn every_optional_key_in_go_order_with_html_escaping() {
        let o = ops(json!({"backupName": "pg-wal", "backupNamespace": "other",
            "restorePointInTime": "2024-05-07T10:30:00.5+00:00", "deferPostReadyUntilClusterRunning": true,
            "env": [{"name": "A", "value": "x<y>&z"}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            "parameters": [{"name": "p", "value": "v"}]}));
        let b = backup(
            json!({"apps.kubeblocks.io/sharding-name": "shard"}),
            json!({"dataprotection.kubeblocks.io/connection-password": "c&p"}),
        );
        assert_eq!(
            restore_from_backup(&o, &b).unwrap(),
            concat!(
                r#"{"shard":{"connectionPassword":"c\u0026p","doReadyRestoreAfterClusterRunning":"true","name":"pg-wal","namespace":"other","#,
                r#""restoreEnv":"[{\"name\":\"A\",\"value\":\"x\\u003cy\\u003e\\u0026z\"},{\"name\":\"B\",\"valueFrom\":{\"secretKeyRef\":{\"name\":\"s\",\"key\":\"k\"}}}]","#,
                r#""restoreParameters":"[{\"name\":\"p\",\"value\":\"v\"}]","restoreTime":"2024-05-07T10:30:00Z","volumeRestorePolicy":""}}"#
            )
        );
    }

    #[test]
    fn an_explicit_empty_env_is_kept_and_a_non_continuous_time_is_raw() {
        let o = ops(json!({"backupName": "pg-wal", "env": [], "restorePointInTime": "May 07,2024 18:30:00 UTC+0800"}));
        let b = backup(json!({"dataprotection.kubeblocks.io/backup-type": "Full"}), json!({}));
        assert_eq!(
            restore_from_backup(&o, &b).unwrap(),
            r#"{"postgresql":{"doReadyRestoreAfterClusterRunning":"false","name":"pg-wal","namespace":"demo","restoreEnv":"[]","restoreTime":"May 07,2024 18:30:00 UTC+0800","volumeRestorePolicy":""}}"#
        );
    }

    #[test]
    fn go_escapes_control_characters_and_line_separators() {
        assert_eq!(go_marshal(&json!("a\u{1}\u{8}\u{c}\n\"\\\u{2028}é")), r#""a\u0001\b\f\n\"\\\u2028é""#);
    }

    #[test]
    fn a_backup_without_component_labels_is_an_error() {
        let mut b = backup(json!({}), json!({}));
        b["metadata"]["labels"].as_object_mut().unwrap().remove("apps.kubeblocks.io/component-name");
        let e = restore_from_backup(&ops(json!({"backupName": "pg-wal"})), &b).unwrap_err();
        assert_eq!(e, BuildError::NoComponent("pg-wal".into()));
    }

    #[test]
    fn the_cluster_is_the_snapshot_transformed() {
        let o = ops(json!({"backupName": "pg-wal", "restorePointInTime": "2024-05-07T10:30:00Z",
            "volumeRestorePolicy": "Parallel"}));
        let c = build_cluster(&o, &backup(json!({}), json!({}))).unwrap();
        assert_eq!(c["metadata"]["name"], "pg-restored");
        assert_eq!(c["metadata"]["namespace"], "demo");
        assert!(c.get("status").is_none());
        assert!(c["metadata"].get("labels").is_none());
        let a = &c["metadata"]["annotations"];
        assert_eq!(a["team"], "db");
        assert!(a.get("kubectl.kubernetes.io/last-applied-configuration").is_none());
        assert_eq!(a["kubeblocks.io/ops-request"], r#"[{"name":"r1","type":"Restore"}]"#);
        assert_eq!(a["pitrguard.io/ops-uid"], "u-1");
        assert_eq!(
            a["kubeblocks.io/restore-from-backup"],
            r#"{"postgresql":{"doReadyRestoreAfterClusterRunning":"false","name":"pg-wal","namespace":"demo","restoreTime":"2024-05-07T10:30:00Z","volumeRestorePolicy":"Parallel"}}"#
        );
        let services = c["spec"]["services"].as_array().unwrap();
        assert_eq!(services.len(), 1, "the LoadBalancer service is dropped");
        assert_eq!(services[0]["spec"]["ports"][0]["nodePort"], 0);
        assert_eq!(services[0]["spec"]["selector"], json!({"role": "primary"}));
        assert!(c["spec"]["componentSpecs"][0].get("offlineInstances").is_none());
        assert_eq!(
            c.pointer("/spec/componentSpecs/0/schedulingPolicy/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution/0/labelSelector/matchLabels").unwrap(),
            &json!({"app.kubernetes.io/instance": "pg-restored", "x": "y"})
        );
        assert_eq!(components_pending(&c), Some(1));
    }

    #[test]
    fn no_snapshot_no_cluster() {
        let mut b = backup(json!({}), json!({}));
        b["metadata"]["annotations"] = json!({});
        let e = build_cluster(&ops(json!({"backupName": "pg-wal"})), &b).unwrap_err();
        assert_eq!(e, BuildError::NoSnapshot("pg-wal".into()));
    }
}
