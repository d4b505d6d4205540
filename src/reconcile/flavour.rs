//! Which KubeBlocks is installed, from API discovery: 0.9 (`apps` OpsRequests), 1.0/1.1
//! (`operations` OpsRequests, the Cluster annotation path) or 1.2 (`Cluster.spec.restore`).

use kube::Client;
use kube::api::{ApiResource, GroupVersionKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// KubeBlocks 0.9: `apps.kubeblocks.io/v1alpha1` OpsRequests only.
    V09,
    /// KubeBlocks 1.0/1.1: `operations.kubeblocks.io` OpsRequests; the Cluster is restored from
    /// the `kubeblocks.io/restore-from-backup` annotation. `apps` OpsRequests may be served too.
    V10,
    /// KubeBlocks 1.2: the Cluster CRD has `spec.restore`.
    V12,
}

pub fn operations_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("operations.kubeblocks.io", "v1alpha1", "OpsRequest"))
}

pub fn apps_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("apps.kubeblocks.io", "v1alpha1", "OpsRequest"))
}

impl Flavour {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::V09 => "0.9",
            Flavour::V10 => "1.0/1.1",
            Flavour::V12 => "1.2",
        }
    }

    /// The flavour from what the API server serves.
    pub fn from_discovery(operations_ops: bool, apps_ops: bool, cluster_has_spec_restore: bool) -> Option<Flavour> {
        match (operations_ops, apps_ops) {
            (true, _) if cluster_has_spec_restore => Some(Flavour::V12),
            (true, _) => Some(Flavour::V10),
            (false, true) => Some(Flavour::V09),
            (false, false) => None,
        }
    }

    /// `perform` works only where the OpsRequest controller can be switched off alone and the
    /// Cluster is restored through the annotation.
    pub fn can_perform(self) -> anyhow::Result<()> {
        match self {
            Flavour::V10 => Ok(()),
            Flavour::V09 => anyhow::bail!(
                "--reconcile=perform needs KubeBlocks 1.0/1.1, but this cluster serves only apps.kubeblocks.io \
OpsRequests (KubeBlocks 0.9), where the OpsRequest controller runs inside --apps and cannot be switched off \
alone: two controllers would restore the same OpsRequest. Use --reconcile=observe"
            ),
            Flavour::V12 => anyhow::bail!(
                "--reconcile=perform needs KubeBlocks 1.0/1.1, but the Cluster CRD has spec.restore (KubeBlocks 1.2), \
which restores through Cluster.spec.restore instead of the annotation pitrguard writes. Use --reconcile=observe"
            ),
        }
    }

    /// The OpsRequest APIs to follow in `observe`.
    pub fn ops_resources(self) -> Vec<ApiResource> {
        match self {
            Flavour::V09 => vec![apps_resource()],
            _ => vec![operations_resource(), apps_resource()],
        }
    }

    /// Clusters as this flavour stores them.
    pub fn cluster_resource(self) -> ApiResource {
        let version = if self == Flavour::V09 { "v1alpha1" } else { "v1" };
        ApiResource::from_gvk(&GroupVersionKind::gvk("apps.kubeblocks.io", version, "Cluster"))
    }
}

/// Asks the API server which OpsRequest APIs it serves and whether Clusters have `spec.restore`
/// (from the OpenAPI v3 document, readable by every authenticated user).
pub async fn discover(client: &Client) -> anyhow::Result<Flavour> {
    let serves = |group: &'static str| async move {
        match client.list_api_group_resources(&format!("{group}/v1alpha1")).await {
            Ok(list) => list.resources.iter().any(|r| r.name == "opsrequests"),
            Err(kube::Error::Api(s)) if s.code == 404 => false,
            Err(e) => {
                tracing::warn!(group, error = %e, "discovery failed");
                false
            }
        }
    };
    let operations = serves("operations.kubeblocks.io").await;
    let apps = serves("apps.kubeblocks.io").await;
    let spec_restore = if operations { cluster_has_spec_restore(client).await } else { false };
    Flavour::from_discovery(operations, apps, spec_restore).ok_or_else(|| {
        anyhow::anyhow!("no KubeBlocks OpsRequest API is served (operations.kubeblocks.io or apps.kubeblocks.io)")
    })
}

async fn cluster_has_spec_restore(client: &Client) -> bool {
    let req = match axum::http::Request::get("/openapi/v3/apis/apps.kubeblocks.io/v1").body(Vec::new()) {
        Ok(r) => r,
        Err(_) => return false,
    };
    let Ok(doc) = client.request::<serde_json::Value>(req).await else {
        return false;
    };
    doc.pointer("/components/schemas")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flat_map(|s| s.iter())
        .filter(|(k, _)| k.ends_with(".v1.Cluster"))
        .any(|(_, v)| v.pointer("/properties/spec/properties/restore").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_decides_the_flavour() {
        assert_eq!(Flavour::from_discovery(true, true, false), Some(Flavour::V10));
        assert_eq!(Flavour::from_discovery(true, false, true), Some(Flavour::V12));
        assert_eq!(Flavour::from_discovery(false, true, false), Some(Flavour::V09));
        assert_eq!(Flavour::from_discovery(false, false, false), None);
    }

    #[test]
    fn perform_refuses_09_and_12_with_a_reason() {
        assert!(Flavour::V10.can_perform().is_ok());
        let e = Flavour::V09.can_perform().unwrap_err().to_string();
        assert!(e.contains("KubeBlocks 0.9") && e.contains("--reconcile=observe"), "{e}");
        let e = Flavour::V12.can_perform().unwrap_err().to_string();
        assert!(e.contains("spec.restore"), "{e}");
    }
}
