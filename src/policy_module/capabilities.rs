//! Kubewarden's context-aware host capabilities, answered from pitrguard's
//! own inventory instead of the API server: `kubewarden/kubernetes/get_resource`
//! and `list_resources_by_namespace`, for the kinds the module declares
//! (`contextAwareResources` in `crates/pitrguard-policy/metadata.yml`).
//!
//! The inventory keeps facts, not objects, so each answer is an object made
//! from the facts (`BackupFacts::to_object`), which the module reads back into
//! the same facts. A missing object is reported as the API server's 404 is.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::core::Inventory;

const DATAPROTECTION_GROUP: &str = "dataprotection.kubeblocks.io";
const CLUSTER_GROUP: &str = "apps.kubeblocks.io";

/// `get_resource`'s request (kubewarden-policy-sdk `GetResourceRequest`).
#[derive(Debug, Deserialize)]
struct GetResource {
    api_version: String,
    kind: String,
    name: String,
    namespace: Option<String>,
}

/// `list_resources_by_namespace`'s request (`ListResourcesByNamespaceRequest`).
#[derive(Debug, Deserialize)]
struct ListByNamespace {
    api_version: String,
    kind: String,
    namespace: String,
    label_selector: Option<String>,
    field_selector: Option<String>,
}

/// Answers one host call. `Err` is the error text the module receives.
pub fn answer(
    inv: &dyn Inventory,
    binding: &str,
    namespace: &str,
    operation: &str,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    if (binding, namespace) != ("kubewarden", "kubernetes") {
        return Err(format!("pitrguard does not offer the host capability {binding}/{namespace}/{operation}"));
    }
    let answer = match operation {
        "get_resource" => get(inv, parse(payload)?)?,
        "list_resources_by_namespace" => list(inv, parse(payload)?)?,
        other => return Err(format!("pitrguard does not offer the host capability kubewarden/kubernetes/{other}")),
    };
    serde_json::to_vec(&answer).map_err(|e| e.to_string())
}

fn parse<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, String> {
    serde_json::from_slice(payload).map_err(|e| format!("bad host call request: {e}"))
}

fn group(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

/// What Kubewarden's policy server says for an object that does not exist, word for word.
fn not_found(req: &GetResource) -> String {
    format!(
        "Cannot find {}/{} named '{}' inside of namespace '{:?}'",
        req.api_version,
        req.kind,
        req.name,
        req.namespace.as_deref()
    )
}

fn get(inv: &dyn Inventory, req: GetResource) -> Result<Value, String> {
    let namespace = req.namespace.as_deref().unwrap_or("");
    let found = match (group(&req.api_version), req.kind.as_str()) {
        (DATAPROTECTION_GROUP, "Backup") => inv.backup(namespace, &req.name).map(|b| b.to_object()),
        (DATAPROTECTION_GROUP, "ActionSet") => inv.action_set(&req.name).map(|a| a.to_object()),
        (CLUSTER_GROUP, "Cluster") => inv.cluster_exists(namespace, &req.name).then(|| {
            json!({"apiVersion": req.api_version, "kind": "Cluster",
                   "metadata": {"name": req.name, "namespace": namespace}})
        }),
        _ => return Err(unsupported(&req.api_version, &req.kind)),
    };
    found.ok_or_else(|| not_found(&req))
}

fn unsupported(api_version: &str, kind: &str) -> String {
    format!(
        "pitrguard's inventory holds no {kind} ({api_version}); the module may read Backups, ActionSets and Clusters"
    )
}

fn list(inv: &dyn Inventory, req: ListByNamespace) -> Result<Value, String> {
    if (group(&req.api_version), req.kind.as_str()) != (DATAPROTECTION_GROUP, "Backup") {
        return Err(unsupported(&req.api_version, &req.kind));
    }
    if req.field_selector.as_deref().is_some_and(|f| !f.is_empty()) {
        return Err("pitrguard's host does not apply field selectors".into());
    }
    let selector = Selector::parse(req.label_selector.as_deref().unwrap_or(""))?;
    let mut items = Vec::new();
    inv.for_each_backup_in(&req.namespace, &mut |b| {
        let object = b.to_object();
        if selector.matches(object.pointer("/metadata/labels")) {
            items.push(object);
        }
    });
    items.sort_by(|a, b| a["metadata"]["name"].as_str().cmp(&b["metadata"]["name"].as_str()));
    Ok(json!({"apiVersion": req.api_version, "kind": "BackupList", "metadata": {}, "items": items}))
}

/// An equality-based label selector: `k=v`, `k==v`, `k!=v`, comma-separated.
#[derive(Debug, PartialEq, Eq)]
struct Selector(BTreeMap<String, (bool, String)>);

impl Selector {
    fn parse(text: &str) -> Result<Self, String> {
        let mut terms = BTreeMap::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (key, equal, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, true, v)
            } else {
                return Err(format!("label selector term {term:?}: pitrguard's host applies k=v and k!=v terms only"));
            };
            terms.insert(key.trim().to_string(), (equal, value.trim().to_string()));
        }
        Ok(Self(terms))
    }

    fn matches(&self, labels: Option<&Value>) -> bool {
        self.0.iter().all(|(key, (equal, value))| {
            let have = labels.and_then(|l| l.get(key)).and_then(Value::as_str);
            (have == Some(value.as_str())) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::facts::{BackupFacts, BackupType, Lineage};
    use crate::core::{ActionSetFacts, Index};

    fn index() -> Index {
        let mut index = Index::new();
        for (name, instance) in [("full-1", "pg"), ("full-2", "other")] {
            index.apply_backup(BackupFacts {
                namespace: "demo".into(),
                name: name.into(),
                backup_type: BackupType::Full,
                phase: Some("Completed".into()),
                start: None,
                end: Some("2024-05-07T10:00:00Z".parse().unwrap()),
                lineage: Lineage { instance: Some(instance.into()), ..Lineage::default() },
                policy_name: None,
                action_set: None,
                has_cluster_snapshot: false,
            });
        }
        index.apply_action_set(ActionSetFacts { name: "pg-pitr".into(), base_backup_required: false });
        index.apply_cluster("demo", "pg");
        index
    }

    fn call(operation: &str, payload: Value) -> Result<Value, String> {
        let bytes = answer(&index(), "kubewarden", "kubernetes", operation, payload.to_string().as_bytes())?;
        Ok(serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn objects_are_served_from_the_facts() {
        let b = call(
            "get_resource",
            json!({"api_version": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup", "name": "full-1", "namespace": "demo"}),
        )
        .unwrap();
        assert_eq!(b["status"]["timeRange"]["end"], "2024-05-07T10:00:00Z");
        let a = call(
            "get_resource",
            json!({"api_version": "dataprotection.kubeblocks.io/v1alpha1", "kind": "ActionSet", "name": "pg-pitr"}),
        )
        .unwrap();
        assert_eq!(a["spec"]["restore"]["baseBackupRequired"], false);
        let c = call(
            "get_resource",
            json!({"api_version": "apps.kubeblocks.io/v1alpha1", "kind": "Cluster", "name": "pg", "namespace": "demo"}),
        )
        .unwrap();
        assert_eq!(c["metadata"]["name"], "pg");
    }

    #[test]
    fn a_missing_object_is_a_not_found_error() {
        let err = call(
            "get_resource",
            json!({"api_version": "apps.kubeblocks.io/v1alpha1", "kind": "Cluster", "name": "gone", "namespace": "demo"}),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "Cannot find apps.kubeblocks.io/v1alpha1/Cluster named 'gone' inside of namespace 'Some(\"demo\")'"
        );
    }

    #[test]
    fn lists_apply_the_label_selector() {
        let list = |selector: &str| {
            let l = call(
                "list_resources_by_namespace",
                json!({"api_version": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup",
                       "namespace": "demo", "label_selector": selector}),
            )
            .unwrap();
            l["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(list("app.kubernetes.io/instance=pg"), ["full-1"]);
        assert_eq!(list("app.kubernetes.io/instance!=pg"), ["full-2"]);
        assert_eq!(list(""), ["full-1", "full-2"]);
        assert_eq!(list("app.kubernetes.io/instance=none"), Vec::<String>::new());
    }

    #[test]
    fn what_the_host_cannot_answer_is_an_error_not_a_guess() {
        assert!(Selector::parse("app in (a,b)").is_err());
        let err = call("list_resources_all", json!({})).unwrap_err();
        assert!(err.contains("does not offer"), "{err}");
        let err =
            call("get_resource", json!({"api_version": "v1", "kind": "Secret", "name": "s", "namespace": "demo"}))
                .unwrap_err();
        assert!(err.contains("holds no Secret"), "{err}");
    }
}
