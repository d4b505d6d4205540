//! The Restore OpsRequest as the rules read it, from either API group, and
//! the first decisions about an admission: is this object judged at all?

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
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

/// The fields of `spec.restore` the rules read, borrowed from the object's text where they can be
/// (a decision then copies no string it only compares).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreFields<'a> {
    pub backup_name: Option<Cow<'a, str>>,
    pub backup_namespace: Option<Cow<'a, str>>,
    pub restore_point_in_time: Option<Cow<'a, str>>,
    pub volume_restore_policy: Option<Cow<'a, str>>,
}

/// A Restore OpsRequest of either API group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest<'a> {
    pub namespace: Cow<'a, str>,
    pub name: Cow<'a, str>,
    /// `spec.clusterName`, else (0.9) `spec.clusterRef`.
    pub cluster_name: Option<Cow<'a, str>>,
    pub restore: Option<RestoreFields<'a>>,
    pub restore_field: RestoreField,
    /// Whether `metadata` and `metadata.annotations` are there (M3 adds what is missing whole).
    pub annotations: Annotations,
    /// The `pitrguard.io/base-backup` annotation (M3's pick), when set.
    pub base_backup_annotation: Option<Cow<'a, str>>,
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

impl RestoreFields<'_> {
    pub fn into_owned(self) -> RestoreFields<'static> {
        let own = |s: Option<Cow<'_, str>>| s.map(|s| Cow::Owned(s.into_owned()));
        RestoreFields {
            backup_name: own(self.backup_name),
            backup_namespace: own(self.backup_namespace),
            restore_point_in_time: own(self.restore_point_in_time),
            volume_restore_policy: own(self.volume_restore_policy),
        }
    }
}

impl RestoreRequest<'_> {
    /// The same request with strings of its own, free of the text it was read from.
    pub fn into_owned(self) -> RestoreRequest<'static> {
        let own = |s: Cow<'_, str>| Cow::Owned(s.into_owned());
        RestoreRequest {
            namespace: own(self.namespace),
            name: own(self.name),
            cluster_name: self.cluster_name.map(own),
            restore: self.restore.map(RestoreFields::into_owned),
            restore_field: self.restore_field,
            annotations: self.annotations,
            base_backup_annotation: self.base_backup_annotation.map(own),
        }
    }

    /// `backupNamespace`, else the OpsRequest's own namespace.
    pub fn backup_namespace(&self) -> &str {
        self.restore
            .as_ref()
            .and_then(|r| r.backup_namespace.as_deref())
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.namespace)
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
/// with the fields the rules read, each read but its error kept until [`Head::decode`] needs it.
#[derive(Debug, Clone)]
pub struct Head<'a> {
    pub group: Option<&'static str>,
    pub ops_type: Cow<'a, str>,
    /// Err: `spec` cannot be read.
    parts: Result<Parts<'a>, String>,
}

/// A field the rules read as text: absent or null is `None`; an error names the field.
type Text<'a> = Result<Option<Cow<'a, str>>, String>;

/// The fields [`Head::decode`] puts together, from either reading. Each keeps its own error, so
/// that both readings fail on the first field `decode` needs, not on one it would not read.
#[derive(Debug, Clone)]
struct Parts<'a> {
    metadata: Result<Option<MetaParts<'a>>, String>,
    cluster_name: Text<'a>,
    /// 0.9 only.
    cluster_ref: Text<'a>,
    restore: Result<Option<RestoreFields<'a>>, String>,
    /// 0.9 only.
    restore_spec: Result<Option<RestoreFields<'a>>, String>,
}

#[derive(Debug, Clone)]
struct MetaParts<'a> {
    name: Text<'a>,
    generate_name: Text<'a>,
    namespace: Text<'a>,
    /// `None` without annotations, else the `pitrguard.io/base-backup` annotation.
    annotations: Result<Option<Text<'a>>, String>,
}

// --- the fields the rules read, as both readings name them -------------------------------------
// `F` is a field the rules read as text, the other parameters the objects inside; a field absent
// or null is `None`, any other field is skipped unread.

#[derive(Deserialize)]
#[serde(bound(deserialize = "F: Deserialize<'de>, M: Deserialize<'de>, S: Deserialize<'de>"))]
struct ObjectOf<F, M, S> {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<F>,
    #[serde(default)]
    kind: Option<F>,
    #[serde(default)]
    metadata: Option<M>,
    #[serde(default)]
    spec: Option<S>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "F: Deserialize<'de>, A: Deserialize<'de>"))]
struct MetaOf<F, A> {
    #[serde(default)]
    name: Option<F>,
    #[serde(default)]
    generate_name: Option<F>,
    #[serde(default)]
    namespace: Option<F>,
    #[serde(default)]
    annotations: Option<A>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "F: Deserialize<'de>"))]
struct AnnotationsOf<F> {
    #[serde(rename = "pitrguard.io/base-backup", default)]
    base_backup: Option<F>,
}

/// `spec` of either API group.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "F: Deserialize<'de>, R: Deserialize<'de>"))]
struct SpecOf<F, R> {
    #[serde(rename = "type", default)]
    ty: Option<F>,
    #[serde(default)]
    cluster_name: Option<F>,
    /// 0.9 only.
    #[serde(default)]
    cluster_ref: Option<F>,
    #[serde(default)]
    restore: Option<R>,
    /// 0.9 only.
    #[serde(default)]
    restore_spec: Option<R>,
}

impl<F, R> Default for SpecOf<F, R> {
    fn default() -> Self {
        Self { ty: None, cluster_name: None, cluster_ref: None, restore: None, restore_spec: None }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "F: Deserialize<'de>"))]
struct RestoreOf<F> {
    #[serde(default)]
    backup_name: Option<F>,
    #[serde(default)]
    backup_namespace: Option<F>,
    #[serde(default)]
    restore_point_in_time: Option<F>,
    #[serde(default)]
    volume_restore_policy: Option<F>,
}

// --- the one-pass reading ----------------------------------------------------------------------
// Every object the API server sends has the fields the rules read as strings and objects, without
// a repeated key; such an object is read in one pass. Anything else fails this reading, and the
// raw reading below, which keeps each field as raw JSON and checks it on its own, says what is
// wrong. (The raw reading alone costs about three passes over the text: 12 700 instructions
// against serde_json's 3 600 for one, in BENCHMARKS.md.)

/// A string field, borrowed from the text unless it holds an escape.
#[derive(Debug)]
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// An object field. Only a JSON object: serde_json would also read a struct from an array.
#[derive(Debug)]
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// The type of the one-pass reading: every field the rules read, typed.
type OnePass<'a> = ObjectOf<Str<'a>, Object<OnePassMeta<'a>>, Object<OnePassSpec<'a>>>;
type OnePassMeta<'a> = MetaOf<Str<'a>, Object<AnnotationsOf<Str<'a>>>>;
type OnePassSpec<'a> = SpecOf<Str<'a>, Object<OnePassRestore<'a>>>;
type OnePassRestore<'a> = RestoreOf<Str<'a>>;

fn found<'a>(s: Option<Str<'a>>) -> Text<'a> {
    Ok(s.map(|s| s.0))
}

impl<'a> OnePassRestore<'a> {
    fn fields(self) -> RestoreFields<'a> {
        let text = |s: Option<Str<'a>>| s.map(|s| s.0);
        RestoreFields {
            backup_name: text(self.backup_name),
            backup_namespace: text(self.backup_namespace),
            restore_point_in_time: text(self.restore_point_in_time),
            volume_restore_policy: text(self.volume_restore_policy),
        }
    }
}

impl<'a> OnePass<'a> {
    fn head(self) -> Head<'a> {
        let group = group_of(self.api_version.as_ref().map(|s| &*s.0), self.kind.as_ref().map(|s| &*s.0));
        let spec = self.spec.map(|Object(s)| s);
        let ops_type = spec.as_ref().and_then(|s| s.ty.as_ref()).map_or(Cow::Borrowed(""), |s| s.0.clone());
        let metadata = self.metadata.map(|Object(m)| MetaParts {
            name: found(m.name),
            generate_name: found(m.generate_name),
            namespace: found(m.namespace),
            annotations: Ok(m.annotations.map(|Object(a)| found(a.base_backup))),
        });
        let (cluster_name, cluster_ref, restore, restore_spec) = match spec {
            None => (None, None, None, None),
            Some(s) => (s.cluster_name, s.cluster_ref, s.restore, s.restore_spec),
        };
        let fields = |r: Option<Object<OnePassRestore<'a>>>| Ok(r.map(|Object(r)| r.fields()));
        Head {
            group,
            ops_type,
            parts: Ok(Parts {
                metadata: Ok(metadata),
                cluster_name: found(cluster_name),
                cluster_ref: found(cluster_ref),
                restore: fields(restore),
                restore_spec: fields(restore_spec),
            }),
        }
    }
}

// --- the raw reading ---------------------------------------------------------------------------

/// The types of the raw reading: every field the rules read kept as raw JSON, so that a value of
/// an unexpected type is not an error until that field is checked.
type Raw<'a> = &'a RawValue;
type RawObject<'a> = ObjectOf<Raw<'a>, Raw<'a>, Raw<'a>>;
type RawMeta<'a> = MetaOf<Raw<'a>, Raw<'a>>;
type RawAnnotations<'a> = AnnotationsOf<Raw<'a>>;
type RawSpec<'a> = SpecOf<Raw<'a>, Raw<'a>>;
type RawRestore<'a> = RestoreOf<Raw<'a>>;

/// `spec.type` alone: read when the whole [`RawSpec`] cannot be (a repeated field, say), so that
/// such an object is still recognised as a Restore and denied rather than let through.
#[derive(Deserialize)]
struct RawSpecType<'a> {
    #[serde(rename = "type", borrow, default)]
    ty: Option<&'a RawValue>,
}

/// Whether JSON text is an object: serde_json would also read a struct from an array, field by
/// position.
fn is_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
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
fn text<'a>(parent: &str, name: &str, raw: Option<&'a RawValue>) -> Text<'a> {
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
        Some(raw) if !is_object(raw.get()) => Err(format!("{path}: expected an object, found {}", kind_of(raw))),
        Some(raw) => serde_json::from_str::<Option<T>>(raw.get()).map_err(|e| format!("{path}: {e}")),
    }
}

fn restore_fields<'a>(field: RestoreField, raw: Option<&'a RawValue>) -> Result<Option<RestoreFields<'a>>, String> {
    let path = field.path();
    let Some(r) = object::<RawRestore<'a>>(path, raw)? else { return Ok(None) };
    Ok(Some(RestoreFields {
        backup_name: text(path, "backupName", r.backup_name)?,
        backup_namespace: text(path, "backupNamespace", r.backup_namespace)?,
        restore_point_in_time: text(path, "restorePointInTime", r.restore_point_in_time)?,
        volume_restore_policy: text(path, "volumeRestorePolicy", r.volume_restore_policy)?,
    }))
}

fn raw_parts<'a>(metadata: Option<&'a RawValue>, spec: &RawSpec<'a>) -> Parts<'a> {
    let metadata = object::<RawMeta<'a>>("metadata", metadata).map(|m| {
        m.map(|m| MetaParts {
            name: text("metadata", "name", m.name),
            generate_name: text("metadata", "generateName", m.generate_name),
            namespace: text("metadata", "namespace", m.namespace),
            annotations: object::<RawAnnotations<'a>>("metadata.annotations", m.annotations)
                .map(|a| a.map(|a| text("metadata.annotations", "pitrguard.io/base-backup", a.base_backup))),
        })
    });
    Parts {
        metadata,
        cluster_name: text("spec", "clusterName", spec.cluster_name),
        cluster_ref: text("spec", "clusterRef", spec.cluster_ref),
        restore: restore_fields(RestoreField::Restore, spec.restore),
        restore_spec: restore_fields(RestoreField::RestoreSpec, spec.restore_spec),
    }
}

/// [`head`] by the raw reading alone: every field kept as raw JSON, then checked on its own.
#[doc(hidden)]
pub fn raw_head(object: &str) -> Option<Head<'_>> {
    if !is_object(object) {
        return None;
    }
    let raw: RawObject<'_> = serde_json::from_str(object).ok()?;
    let (api_version, kind) = (string(raw.api_version), string(raw.kind));
    let spec = match raw.spec {
        None => Ok(RawSpec::default()),
        Some(spec) if !is_object(spec.get()) => Err((format!("expected an object, found {}", kind_of(spec)), None)),
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
        parts: spec.map(|spec| raw_parts(raw.metadata, &spec)).map_err(|(e, _)| format!("spec: {e}")),
    })
}

// --- what both readings give -------------------------------------------------------------------

/// [`head`] by the one-pass reading alone; `None` for what only the raw reading reads.
#[doc(hidden)]
pub fn one_pass_head(object: &str) -> Option<Head<'_>> {
    serde_json::from_str::<Object<OnePass<'_>>>(object).ok().map(|Object(o)| o.head())
}

/// The head of an object read by the one-pass reading in place, while the text around it is read
/// (the webhook reads an AdmissionReview's `request.object` so). An object that reading refuses
/// fails to deserialize: read its text with [`head`] instead, which says what is wrong with it.
#[derive(Debug, Clone)]
pub struct OnePassHead<'a>(pub Head<'a>);

impl<'de> Deserialize<'de> for OnePassHead<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Object::<OnePass<'de>>::deserialize(d).map(|Object(o)| OnePassHead(o.head()))
    }
}

/// Reads the head of an object given as JSON text; `None` when it is not a JSON object.
pub fn head(object: &str) -> Option<Head<'_>> {
    one_pass_head(object).or_else(|| raw_head(object))
}

impl<'a> Head<'a> {
    /// What the rules read of an OpsRequest of `self.group`. `namespace` is used when the object
    /// has none (admission CREATE, files). Only the fields the rules read are checked; the API
    /// server validates the rest against the CRD's schema.
    pub fn decode(self, namespace: &'a str) -> Result<RestoreRequest<'a>, String> {
        let group = self.group.ok_or("not a KubeBlocks OpsRequest")?;
        let parts = self.parts?;
        let meta = parts.metadata?;
        let has_metadata = meta.is_some();
        let (name, generate_name, own_namespace, annotations) = match meta {
            Some(m) => (m.name?, m.generate_name?, m.namespace?, m.annotations?),
            None => (None, None, None, None),
        };
        let has_annotations = annotations.is_some();
        let base_backup = annotations.transpose()?.flatten();
        let cluster_name = parts.cluster_name?;
        // `clusterRef` and `restoreSpec` exist only in 0.9 (apps.kubeblocks.io).
        let (cluster_name, legacy_restore) = if group == GROUP_APPS {
            let name = match cluster_name.filter(|n| !n.is_empty()) {
                Some(n) => Some(n),
                None => parts.cluster_ref?,
            };
            (name, parts.restore_spec?)
        } else {
            (cluster_name, None)
        };
        let (restore, restore_field) = match (parts.restore?, legacy_restore) {
            (Some(r), _) => (Some(r), RestoreField::Restore),
            (None, Some(r)) => (Some(r), RestoreField::RestoreSpec),
            (None, None) => (None, RestoreField::Restore),
        };
        Ok(RestoreRequest {
            namespace: own_namespace.filter(|n| !n.is_empty()).unwrap_or(Cow::Borrowed(namespace)),
            name: name.or(generate_name).unwrap_or_default(),
            cluster_name,
            restore,
            restore_field,
            annotations: match (has_metadata, has_annotations) {
                (_, true) => Annotations::Present,
                (true, false) => Annotations::Missing,
                (false, false) => Annotations::MetadataMissing,
            },
            base_backup_annotation: base_backup,
        })
    }
}

/// Decodes an OpsRequest of either group, given as JSON text, into what the rules read.
/// `namespace` is used when the object has none (admission CREATE, files).
pub fn decode_json<'a>(object: &'a str, namespace: &'a str) -> Result<RestoreRequest<'a>, String> {
    head(object).ok_or("not a JSON object")?.decode(namespace)
}

/// [`decode_json`] of an object held as a JSON value.
pub fn decode(object: &Value, namespace: &str) -> Result<RestoreRequest<'static>, String> {
    decode_json(&object.to_string(), namespace).map(RestoreRequest::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading<'a>(
        head: Option<Head<'a>>,
    ) -> Option<(Option<&'static str>, String, Result<RestoreRequest<'a>, String>)> {
        head.map(|h| (h.group, h.ops_type.to_string(), h.clone().decode("default")))
    }

    const RESTORE: &str = r#"{"apiVersion":"operations.kubeblocks.io/v1alpha1","kind":"OpsRequest",
        "metadata":{"name":"r","namespace":"demo","labels":{"a":"b"},"annotations":{"pitrguard.io/base-backup":"full-1"}},
        "spec":{"type":"Restore","clusterName":"new","restore":{"backupName":"wal","restorePointInTime":"2024-05-07T10:00:00Z",
        "volumeRestorePolicy":"Parallel","env":[{"name":"x"}]}},"status":{"phase":"Pending"}}"#;

    #[test]
    fn an_object_as_the_api_server_sends_it_is_read_in_one_pass_as_the_raw_reading_reads_it() {
        let objects = [
            RESTORE,
            r#"{"apiVersion":"apps.kubeblocks.io/v1alpha1","kind":"OpsRequest","metadata":{"generateName":"r-"},
               "spec":{"type":"Restore","clusterRef":"old","restoreSpec":{"backupName":"wal","backupNamespace":"other"}}}"#,
            r#"{"apiVersion":"apps.kubeblocks.io/v1alpha1","kind":"OpsRequest","metadata":{"name":"r","annotations":{}},
               "spec":{"type":"Restore","clusterName":"","clusterRef":"old","restore":null,"restoreSpec":{"backupName":"wal"}}}"#,
            r#"{"kind":"OpsRequest","apiVersion":"operations.kubeblocks.io/v1alpha1","spec":{"type":"Restore","restore":{}}}"#,
            r#"{"apiVersion":"operations.kubeblocks.io/v1alpha1","kind":"OpsRequest","metadata":null,"spec":{"type":"Switchover"}}"#,
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[]}}"#,
            // Escapes: the one-pass reading owns what it cannot borrow.
            r#"{"apiVersion":"operations.kubeblocks.io\/v1alpha1","kind":"OpsRequest","metadata":{"name":"r\u0031"},
               "spec":{"type":"Restore","clusterName":"n\"ew","restore":{"backupName":"wal","restorePointInTime":null}}}"#,
            r#"{}"#,
        ];
        for text in objects {
            let read = one_pass_head(text);
            assert!(read.is_some(), "not read in one pass: {text}");
            assert_eq!(reading(read), reading(raw_head(text)), "{text}");
        }
        let (_, _, request) = reading(head(RESTORE)).unwrap();
        let request = request.unwrap();
        assert_eq!((&*request.name, &*request.namespace), ("r", "demo"));
        assert_eq!(request.base_backup_annotation.as_deref(), Some("full-1"));
        assert_eq!(request.point_in_time(), Some("2024-05-07T10:00:00Z"));
    }

    #[test]
    fn what_the_one_pass_reading_refuses_is_read_raw_and_says_which_field_is_wrong() {
        let o = |spec: &str, metadata: &str| {
            format!(
                r#"{{"apiVersion":"operations.kubeblocks.io/v1alpha1","kind":"OpsRequest","metadata":{metadata},"spec":{spec}}}"#
            )
        };
        let cases = [
            (
                o(r#"{"type":"Restore","restore":{"backupName":5}}"#, "{}"),
                "spec.restore.backupName: expected a string, found a number",
            ),
            (o(r#"{"type":"Restore","restore":["wal"]}"#, "{}"), "spec.restore: expected an object, found an array"),
            (
                o(r#"{"type":"Restore","restore":{}}"#, r#"{"annotations":[]}"#),
                "metadata.annotations: expected an object, found an array",
            ),
            (
                o(r#"{"type":"Restore","restore":{"backupName":"a","backupName":"b"}}"#, "{}"),
                "spec.restore: duplicate field `backupName`",
            ),
            (
                o(r#"{"type":"Restore","clusterName":"a","clusterName":"b"}"#, "{}"),
                "spec: duplicate field `clusterName`",
            ),
            (o(r#"{"type":"Restore"}"#, r#"{"name":true}"#), "metadata.name: expected a string, found a boolean"),
        ];
        for (text, message) in cases {
            assert!(one_pass_head(&text).is_none(), "read in one pass: {text}");
            let head = head(&text).unwrap_or_else(|| panic!("no head: {text}"));
            assert_eq!(head.ops_type, "Restore", "{text}");
            let e = head.decode("default").unwrap_err();
            assert!(e.starts_with(message), "{text}: {e}");
        }
        // A field the rules do not read for this group is not checked, by either reading.
        let operations =
            o(r#"{"type":"Restore","clusterRef":5,"restoreSpec":"x","restore":{"backupName":"wal"}}"#, "{}");
        assert!(one_pass_head(&operations).is_none());
        assert_eq!(
            head(&operations).unwrap().decode("default").unwrap().restore.unwrap().backup_name.as_deref(),
            Some("wal")
        );
        // An array is not an object, even where serde_json would read a struct from one, field by position.
        assert!(head(r#"["operations.kubeblocks.io/v1alpha1","OpsRequest"]"#).is_none());
        let spec_array = o(r#"["Restore","new"]"#, "{}");
        let spec_array = head(&spec_array).unwrap();
        assert_eq!(spec_array.ops_type, "");
        assert_eq!(spec_array.decode("default").unwrap_err(), "spec: expected an object, found an array");
    }
}
