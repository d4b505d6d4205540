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
    /// Whether `metadata` and `metadata.annotations` are there (M3 adds what is missing whole).
    pub annotations: Annotations,
    /// The `pitrguard.io/base-backup` annotation (M3's pick), when set.
    pub base_backup_annotation: Option<String>,
}

/// Where an object's annotations are: a JSON Patch `add` needs its parent to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Annotations {
    Present,
    /// `metadata` without `annotations`.
    Missing,
    /// No `metadata` at all (the API server always sends one; a file need not).
    MetadataMissing,
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
/// read without building the object. Fields of another type count as missing. It keeps the
/// parts the rules read as raw JSON, so that [`Head::decode`] reads them without a second
/// pass over the whole object.
#[derive(Debug, Clone)]
pub struct Head<'a> {
    pub group: Option<&'static str>,
    pub ops_type: Cow<'a, str>,
    metadata: Option<&'a RawValue>,
    spec: Result<RawSpec<'a>, String>,
}

/// The top level, every field kept raw so that a value of an unexpected type is not an error here.
#[derive(Deserialize)]
struct RawObject<'a> {
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<&'a RawValue>,
    #[serde(borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    spec: Option<&'a RawValue>,
}

/// The fields of `spec` the rules read, of either API group.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSpec<'a> {
    #[serde(rename = "type", borrow, default)]
    ty: Option<&'a RawValue>,
    #[serde(borrow, default)]
    cluster_name: Option<&'a RawValue>,
    /// 0.9 only.
    #[serde(borrow, default)]
    cluster_ref: Option<&'a RawValue>,
    #[serde(borrow, default)]
    restore: Option<&'a RawValue>,
    /// 0.9 only.
    #[serde(borrow, default)]
    restore_spec: Option<&'a RawValue>,
}

/// `spec.type` alone: read when the whole [`RawSpec`] cannot be (a repeated field, say), so that
/// such an object is still recognised as a Restore and denied rather than let through.
#[derive(Deserialize)]
struct RawSpecType<'a> {
    #[serde(rename = "type", borrow, default)]
    ty: Option<&'a RawValue>,
}

/// The string a raw JSON value holds, if it is one.
fn string<'a>(raw: Option<&'a RawValue>) -> Option<Cow<'a, str>> {
    serde_json::from_str::<Cow<'a, str>>(raw?.get()).ok()
}

/// What a JSON value is, for a message (the value itself may be large or secret).
fn kind_of(raw: &RawValue) -> &'static str {
    match raw.get().trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// A field the rules read as a string: absent or null is `None`; any other type is an error
/// that names the field.
/// The field is `parent.name`; its path is only written out for an error.
fn text<'a>(parent: &str, name: &str, raw: Option<&'a RawValue>) -> Result<Option<Cow<'a, str>>, String> {
    match raw {
        None => Ok(None),
        Some(raw) => serde_json::from_str::<Cow<'a, str>>(raw.get())
            .map(Some)
            .map_err(|_| format!("{parent}.{name}: expected a string, found {}", kind_of(raw))),
    }
}

/// An object the rules read some fields of: absent or null is `None`.
fn object<'a, T: Deserialize<'a>>(path: &str, raw: Option<&'a RawValue>) -> Result<Option<T>, String> {
    match raw {
        None => Ok(None),
        Some(raw) if !raw.get().trim_start().starts_with('{') => {
            Err(format!("{path}: expected an object, found {}", kind_of(raw)))
        }
        Some(raw) => serde_json::from_str::<Option<T>>(raw.get()).map_err(|e| format!("{path}: {e}")),
    }
}

/// Reads the head of an object given as JSON text; `None` when it is not a JSON object.
pub fn head(object: &str) -> Option<Head<'_>> {
    let raw: RawObject<'_> = serde_json::from_str(object).ok()?;
    let (api_version, kind) = (string(raw.api_version), string(raw.kind));
    let spec = match raw.spec {
        None => Ok(RawSpec::default()),
        Some(spec) => serde_json::from_str::<RawSpec<'_>>(spec.get()).map_err(|e| {
            let ty = serde_json::from_str::<RawSpecType<'_>>(spec.get()).ok().and_then(|s| s.ty);
            (e.to_string(), ty)
        }),
    };
    let ops_type = match &spec {
        Ok(spec) => string(spec.ty),
        Err((_, ty)) => string(*ty),
    }
    .unwrap_or_default();
    Some(Head {
        group: group_of(api_version.as_deref(), kind.as_deref()),
        ops_type,
        metadata: raw.metadata,
        spec: spec.map_err(|(e, _)| format!("spec: {e}")),
    })
}

/// The metadata the rules read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMeta<'a> {
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    generate_name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    namespace: Option<&'a RawValue>,
    #[serde(borrow, default)]
    annotations: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawAnnotations<'a> {
    #[serde(rename = "pitrguard.io/base-backup", borrow, default)]
    base_backup: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRestore<'a> {
    #[serde(borrow, default)]
    backup_name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    backup_namespace: Option<&'a RawValue>,
    #[serde(borrow, default)]
    restore_point_in_time: Option<&'a RawValue>,
    #[serde(borrow, default)]
    volume_restore_policy: Option<&'a RawValue>,
}

fn restore_fields(field: RestoreField, raw: Option<&RawValue>) -> Result<Option<RestoreFields>, String> {
    let path = field.path();
    let Some(r) = object::<RawRestore<'_>>(path, raw)? else { return Ok(None) };
    let own = |name: &str, v: Option<&RawValue>| -> Result<Option<String>, String> {
        Ok(text(path, name, v)?.map(Cow::into_owned))
    };
    Ok(Some(RestoreFields {
        backup_name: own("backupName", r.backup_name)?,
        backup_namespace: own("backupNamespace", r.backup_namespace)?,
        restore_point_in_time: own("restorePointInTime", r.restore_point_in_time)?,
        volume_restore_policy: own("volumeRestorePolicy", r.volume_restore_policy)?,
    }))
}

impl Head<'_> {
    /// What the rules read of an OpsRequest of `self.group`. `namespace` is used when the object
    /// has none (admission CREATE, files). Only the fields the rules read are checked; the API
    /// server validates the rest against the CRD's schema.
    pub fn decode(&self, namespace: &str) -> Result<RestoreRequest, String> {
        let group = self.group.ok_or("not a KubeBlocks OpsRequest")?;
        let spec = self.spec.as_ref().map_err(String::clone)?;
        let meta = object::<RawMeta<'_>>("metadata", self.metadata)?;
        let m = meta.as_ref();
        let name = text("metadata", "name", m.and_then(|m| m.name))?;
        let generate_name = text("metadata", "generateName", m.and_then(|m| m.generate_name))?;
        let own_namespace = text("metadata", "namespace", m.and_then(|m| m.namespace))?;
        let annotations = object::<RawAnnotations<'_>>("metadata.annotations", m.and_then(|m| m.annotations))?;
        let base_backup = match &annotations {
            Some(a) => text("metadata.annotations", "pitrguard.io/base-backup", a.base_backup)?,
            None => None,
        };
        let cluster_name = text("spec", "clusterName", spec.cluster_name)?;
        // `clusterRef` and `restoreSpec` exist only in 0.9 (apps.kubeblocks.io).
        let (cluster_name, legacy_restore) = if group == GROUP_APPS {
            let name = match cluster_name.filter(|n| !n.is_empty()) {
                Some(n) => Some(n),
                None => text("spec", "clusterRef", spec.cluster_ref)?,
            };
            (name, restore_fields(RestoreField::RestoreSpec, spec.restore_spec)?)
        } else {
            (cluster_name, None)
        };
        let (restore, restore_field) = match (restore_fields(RestoreField::Restore, spec.restore)?, legacy_restore) {
            (Some(r), _) => (Some(r), RestoreField::Restore),
            (None, Some(r)) => (Some(r), RestoreField::RestoreSpec),
            (None, None) => (None, RestoreField::Restore),
        };
        Ok(RestoreRequest {
            namespace: own_namespace.filter(|n| !n.is_empty()).map_or_else(|| namespace.to_string(), Cow::into_owned),
            name: name.or(generate_name).map(Cow::into_owned).unwrap_or_default(),
            cluster_name: cluster_name.map(Cow::into_owned),
            restore,
            restore_field,
            annotations: match (&meta, &annotations) {
                (_, Some(_)) => Annotations::Present,
                (Some(_), None) => Annotations::Missing,
                (None, None) => Annotations::MetadataMissing,
            },
            base_backup_annotation: base_backup.map(Cow::into_owned),
        })
    }
}

/// Decodes an OpsRequest of either group, given as JSON text, into what the rules read.
/// `namespace` is used when the object has none (admission CREATE, files).
pub fn decode_json(object: &str, namespace: &str) -> Result<RestoreRequest, String> {
    head(object).ok_or("not a JSON object")?.decode(namespace)
}

/// [`decode_json`] of an object held as a JSON value.
pub fn decode(object: &Value, namespace: &str) -> Result<RestoreRequest, String> {
    decode_json(&object.to_string(), namespace)
}
