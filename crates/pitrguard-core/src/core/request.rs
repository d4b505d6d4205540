//! The Restore OpsRequest as the rules read it, from either API group, and
//! the first decisions about an admission: is this object judged at all?

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

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
    /// Whether `metadata.annotations` is there at all (M3 adds it whole when not).
    pub has_annotations: bool,
    /// The `pitrguard.io/base-backup` annotation (M3's pick), when set.
    pub base_backup_annotation: Option<String>,
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

/// Which OpsRequest API an object with this `apiVersion` and `kind` belongs to.
fn group_of(api_version: Option<&str>, kind: Option<&str>) -> Option<&'static str> {
    if kind != Some("OpsRequest") {
        return None;
    }
    match api_version? {
        "apps.kubeblocks.io/v1alpha1" => Some(GROUP_APPS),
        "operations.kubeblocks.io/v1alpha1" => Some(GROUP_OPERATIONS),
        _ => None,
    }
}

/// The first look at an object of any kind and shape: which OpsRequest group and `spec.type`,
/// read without building the object. Fields of another type count as missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    pub group: Option<&'static str>,
    pub ops_type: Cow<'a, str>,
}

/// Fields kept raw so that a value of an unexpected type is not an error here.
#[derive(Deserialize)]
struct RawHead<'a> {
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<&'a RawValue>,
    #[serde(borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    spec: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawSpecType<'a> {
    #[serde(rename = "type", borrow, default)]
    ty: Option<&'a RawValue>,
}

/// The string a raw JSON value holds, if it is one.
fn string<'a>(raw: Option<&'a RawValue>) -> Option<Cow<'a, str>> {
    serde_json::from_str::<Cow<'a, str>>(raw?.get()).ok()
}

/// Reads the head of an object given as JSON text; `None` when it is not a JSON object.
pub fn head(object: &str) -> Option<Head<'_>> {
    let raw: RawHead<'_> = serde_json::from_str(object).ok()?;
    let (api_version, kind) = (string(raw.api_version), string(raw.kind));
    let ops_type = raw
        .spec
        .and_then(|spec| serde_json::from_str::<RawSpecType<'_>>(spec.get()).ok())
        .and_then(|spec| string(spec.ty))
        .unwrap_or_default();
    Some(Head { group: group_of(api_version.as_deref(), kind.as_deref()), ops_type })
}

/// What the rules read of an OpsRequest of either group, borrowed from the JSON text: nothing
/// else of the object is built (managedFields, the last-applied annotation, other specs).
#[derive(Deserialize)]
struct OpsView<'a> {
    #[serde(borrow, default)]
    metadata: MetaView<'a>,
    #[serde(borrow)]
    spec: SpecView<'a>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct MetaView<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    generate_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    annotations: Option<AnnotationsView<'a>>,
}

#[derive(Deserialize)]
struct AnnotationsView<'a> {
    #[serde(rename = "pitrguard.io/base-backup", borrow, default)]
    base_backup: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecView<'a> {
    #[serde(borrow, default)]
    cluster_name: Option<Cow<'a, str>>,
    /// 0.9 only.
    #[serde(borrow, default)]
    cluster_ref: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    restore: Option<RestoreView<'a>>,
    /// 0.9 only.
    #[serde(borrow, default)]
    restore_spec: Option<RestoreView<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestoreView<'a> {
    #[serde(borrow, default)]
    backup_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    backup_namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    restore_point_in_time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    volume_restore_policy: Option<Cow<'a, str>>,
}

impl From<RestoreView<'_>> for RestoreFields {
    fn from(r: RestoreView<'_>) -> Self {
        let own = |s: Option<Cow<'_, str>>| s.map(Cow::into_owned);
        Self {
            backup_name: own(r.backup_name),
            backup_namespace: own(r.backup_namespace),
            restore_point_in_time: own(r.restore_point_in_time),
            volume_restore_policy: own(r.volume_restore_policy),
        }
    }
}

/// Decodes an OpsRequest of either group, given as JSON text, into what the rules read.
/// `namespace` is used when the object has none (admission CREATE, files). Only the fields
/// the rules read are checked; the API server validates the rest against the CRD's schema.
pub fn decode_json(object: &str, namespace: &str) -> Result<RestoreRequest, String> {
    let head = head(object).ok_or("not a JSON object")?;
    decode_ops_request(object, head.group.ok_or("not a KubeBlocks OpsRequest")?, namespace)
}

/// [`decode_json`] of an object whose [`Head`] was read already.
pub fn decode_ops_request(object: &str, group: &str, namespace: &str) -> Result<RestoreRequest, String> {
    let ops: OpsView<'_> = serde_json::from_str(object).map_err(|e| e.to_string())?;
    let (meta, spec) = (ops.metadata, ops.spec);
    let own = |s: Option<Cow<'_, str>>| s.map(Cow::into_owned);
    // `clusterRef` and `restoreSpec` exist only in 0.9 (apps.kubeblocks.io).
    let (cluster_name, legacy_restore) = if group == GROUP_APPS {
        let name = spec.cluster_name.filter(|n| !n.is_empty()).or(spec.cluster_ref);
        (own(name), spec.restore_spec)
    } else {
        (own(spec.cluster_name), None)
    };
    let (restore, restore_field) = match (spec.restore, legacy_restore) {
        (Some(r), _) => (Some(r.into()), RestoreField::Restore),
        (None, Some(r)) => (Some(r.into()), RestoreField::RestoreSpec),
        (None, None) => (None, RestoreField::Restore),
    };
    Ok(RestoreRequest {
        namespace: meta.namespace.filter(|n| !n.is_empty()).map_or_else(|| namespace.to_string(), Cow::into_owned),
        name: own(meta.name.or(meta.generate_name)).unwrap_or_default(),
        cluster_name,
        restore,
        restore_field,
        has_annotations: meta.annotations.is_some(),
        base_backup_annotation: meta.annotations.and_then(|a| own(a.base_backup)),
    })
}

/// [`decode_json`] of an object held as a JSON value.
pub fn decode(object: &Value, namespace: &str) -> Result<RestoreRequest, String> {
    decode_json(&object.to_string(), namespace)
}
