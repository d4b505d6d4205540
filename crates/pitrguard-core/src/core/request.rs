//! The Restore OpsRequest as the rules read it, from either API group, and
//! the first decisions about an admission: is this object judged at all?

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::crd::{opsrequest_apps, opsrequest_operations};

pub const GROUP_APPS: &str = "apps.kubeblocks.io";
pub const GROUP_OPERATIONS: &str = "operations.kubeblocks.io";

/// Which of the two spellings of the restore object an OpsRequest uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreField {
    /// `spec.restore`
    Restore,
    /// `spec.restoreSpec`, deprecated in 0.9 and gone in 1.0.
    RestoreSpec,
}

impl RestoreField {
    pub fn json_key(self) -> &'static str {
        match self {
            Self::Restore => "restore",
            Self::RestoreSpec => "restoreSpec",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Self::Restore => "spec.restore",
            Self::RestoreSpec => "spec.restoreSpec",
        }
    }
}

/// The fields of `spec.restore` the rules read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreFields {
    pub backup_name: Option<String>,
    pub backup_namespace: Option<String>,
    pub restore_point_in_time: Option<String>,
    pub volume_restore_policy: Option<String>,
}

/// A Restore OpsRequest of either API group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest {
    pub namespace: String,
    pub name: String,
    /// `spec.clusterName`, else (0.9) `spec.clusterRef`.
    pub cluster_name: Option<String>,
    pub restore: Option<RestoreFields>,
    pub restore_field: RestoreField,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl RestoreRequest {
    pub fn backup_namespace(&self) -> String {
        self.restore
            .as_ref()
            .and_then(|r| r.backup_namespace.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.namespace.clone())
    }

    /// `restorePointInTime`, when set and not empty.
    pub fn point_in_time(&self) -> Option<&str> {
        self.restore.as_ref()?.restore_point_in_time.as_deref().filter(|t| !t.is_empty())
    }

    /// `volumeRestorePolicy`, when set and not empty.
    pub fn volume_restore_policy(&self) -> Option<&str> {
        self.restore.as_ref()?.volume_restore_policy.as_deref().filter(|p| !p.is_empty())
    }
}

/// Which OpsRequest API an object belongs to, from its `apiVersion` and `kind`.
pub fn ops_request_group(object: &Value) -> Option<&'static str> {
    if object.get("kind").and_then(Value::as_str) != Some("OpsRequest") {
        return None;
    }
    match object.get("apiVersion").and_then(Value::as_str)? {
        "apps.kubeblocks.io/v1alpha1" => Some(GROUP_APPS),
        "operations.kubeblocks.io/v1alpha1" => Some(GROUP_OPERATIONS),
        _ => None,
    }
}

/// `spec.type`, read before decoding so that any other OpsRequest passes untouched.
pub fn ops_type(object: &Value) -> &str {
    object.pointer("/spec/type").and_then(Value::as_str).unwrap_or("")
}

macro_rules! restore_fields {
    ($r:expr) => {
        RestoreFields {
            backup_name: $r.backup_name.clone(),
            backup_namespace: $r.backup_namespace.clone(),
            restore_point_in_time: $r.restore_point_in_time.clone(),
            volume_restore_policy: $r.volume_restore_policy.clone(),
        }
    };
}

/// Decodes an OpsRequest of either group into what the rules read.
/// `namespace` is used when the object has none (admission CREATE, files).
pub fn decode(object: &Value, namespace: &str) -> Result<RestoreRequest, String> {
    let group = ops_request_group(object).ok_or("not a KubeBlocks OpsRequest")?;
    let (meta, cluster_name, restore, restore_field) = if group == GROUP_APPS {
        let ops = opsrequest_apps::OpsRequest::deserialize(object).map_err(|e| e.to_string())?;
        let spec = ops.spec;
        let cluster = spec.cluster_name.filter(|n| !n.is_empty()).or(spec.cluster_ref);
        let (restore, field) = match (spec.restore, spec.restore_spec) {
            (Some(r), _) => (Some(restore_fields!(r)), RestoreField::Restore),
            (None, Some(r)) => (Some(restore_fields!(r)), RestoreField::RestoreSpec),
            (None, None) => (None, RestoreField::Restore),
        };
        (ops.metadata, cluster, restore, field)
    } else {
        let ops: opsrequest_operations::OpsRequest =
            opsrequest_operations::OpsRequest::deserialize(object).map_err(|e| e.to_string())?;
        let restore = ops.spec.restore.map(|r| restore_fields!(r));
        (ops.metadata, ops.spec.cluster_name, restore, RestoreField::Restore)
    };
    Ok(RestoreRequest {
        namespace: meta.namespace.filter(|n| !n.is_empty()).unwrap_or_else(|| namespace.to_string()),
        name: meta.name.or(meta.generate_name).unwrap_or_default(),
        cluster_name,
        restore,
        restore_field,
        annotations: meta.annotations,
    })
}
