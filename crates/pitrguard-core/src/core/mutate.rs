//! Mutations M1–M3 (SPEC.md §4), typed, and their RFC 6902 form.

use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use jsonptr::PointerBuf;
use serde_json::Value;

use super::facts::ANNOTATION_BASE_BACKUP;
use super::request::{Annotations, RestoreField};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// M1: `volumeRestorePolicy` absent (or empty) → the default.
    VolumeRestorePolicy { field: RestoreField, value: String, was_empty: bool },
    /// M2: `restorePointInTime` → its normal form.
    PointInTime { field: RestoreField, value: String },
    /// M3: annotation `pitrguard.io/base-backup` → the base backup's name.
    BaseBackup { value: String, annotations: Annotations, was_set: bool },
}

impl Mutation {
    pub fn id(&self) -> &'static str {
        match self {
            Mutation::VolumeRestorePolicy { .. } => "M1",
            Mutation::PointInTime { .. } => "M2",
            Mutation::BaseBackup { .. } => "M3",
        }
    }

    fn operation(&self) -> PatchOperation {
        match self {
            Mutation::VolumeRestorePolicy { field, value, was_empty } => {
                set(pointer(&["spec", field.json_key(), "volumeRestorePolicy"]), value.as_str().into(), *was_empty)
            }
            Mutation::PointInTime { field, value } => {
                set(pointer(&["spec", field.json_key(), "restorePointInTime"]), value.as_str().into(), true)
            }
            Mutation::BaseBackup { value, annotations: Annotations::Present, was_set } => {
                set(pointer(&["metadata", "annotations", ANNOTATION_BASE_BACKUP]), value.as_str().into(), *was_set)
            }
            Mutation::BaseBackup { value, annotations: Annotations::Missing, .. } => {
                set(pointer(&["metadata", "annotations"]), serde_json::json!({ ANNOTATION_BASE_BACKUP: value }), false)
            }
            Mutation::BaseBackup { value, annotations: Annotations::MetadataMissing, .. } => set(
                pointer(&["metadata"]),
                serde_json::json!({ "annotations": { ANNOTATION_BASE_BACKUP: value } }),
                false,
            ),
        }
    }
}

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn set(path: PointerBuf, value: Value, replace: bool) -> PatchOperation {
    if replace {
        PatchOperation::Replace(ReplaceOperation { path, value })
    } else {
        PatchOperation::Add(AddOperation { path, value })
    }
}

/// The JSON Patch that the mutating webhook returns.
pub fn to_patch(mutations: &[Mutation]) -> Patch {
    Patch(mutations.iter().map(Mutation::operation).collect())
}

/// The patch from `before` to `after` in the mutating webhook's own shape (M1,
/// M2, M3, in that order, with the same operations): how a policy module's
/// mutated object goes on the wire, so that the module's answer and the native
/// one are the same bytes. A change outside M1–M3 follows as a generic diff.
pub fn patch_between(before: &Value, after: &Value) -> Patch {
    let mut ops = Vec::new();
    let changed = |tokens: &[&str], ops: &mut Vec<PatchOperation>| {
        let path = pointer(tokens);
        let (old, new) = (before.pointer(path.as_str()), after.pointer(path.as_str()));
        if let Some(new) = new.filter(|n| Some(*n) != old) {
            ops.push(set(path, new.clone(), old.is_some()));
        }
    };
    for key in ["volumeRestorePolicy", "restorePointInTime"] {
        for field in ["restore", "restoreSpec"] {
            changed(&["spec", field, key], &mut ops);
        }
    }
    if before.pointer("/metadata/annotations").is_some_and(Value::is_object) {
        changed(&["metadata", "annotations", ANNOTATION_BASE_BACKUP], &mut ops);
    } else if let Some(base) = after.pointer("/metadata/annotations").and_then(|a| a.get(ANNOTATION_BASE_BACKUP)) {
        let whole = serde_json::json!({ ANNOTATION_BASE_BACKUP: base });
        if before.get("metadata").is_some_and(Value::is_object) {
            ops.push(set(pointer(&["metadata", "annotations"]), whole, false));
        } else {
            ops.push(set(pointer(&["metadata"]), serde_json::json!({ "annotations": whole }), false));
        }
    }
    let mut patch = Patch(ops);
    let mut patched = before.clone();
    if json_patch::patch(&mut patched, &patch).is_err() {
        return json_patch::diff(before, after);
    }
    patch.0.extend(json_patch::diff(&patched, after).0);
    patch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_between_two_objects_is_the_native_patch() {
        let object = |restore: Value, annotations: Option<Value>| {
            let mut o = serde_json::json!({"metadata": {"name": "r"}, "spec": {"type": "Restore", "restore": restore}});
            if let Some(a) = annotations {
                o["metadata"]["annotations"] = a;
            }
            o
        };
        let cases = [
            (
                object(
                    serde_json::json!({"backupName": "wal", "restorePointInTime": "2024-05-07T18:07:45+08:00"}),
                    None,
                ),
                vec![
                    Mutation::VolumeRestorePolicy {
                        field: RestoreField::Restore,
                        value: "Parallel".into(),
                        was_empty: false,
                    },
                    Mutation::PointInTime { field: RestoreField::Restore, value: "2024-05-07T10:07:45Z".into() },
                    Mutation::BaseBackup { value: "full-1".into(), annotations: Annotations::Missing, was_set: false },
                ],
            ),
            (
                object(
                    serde_json::json!({"volumeRestorePolicy": ""}),
                    Some(serde_json::json!({"a": "b", ANNOTATION_BASE_BACKUP: "old"})),
                ),
                vec![
                    Mutation::VolumeRestorePolicy {
                        field: RestoreField::Restore,
                        value: "Serial".into(),
                        was_empty: true,
                    },
                    Mutation::BaseBackup { value: "full-2".into(), annotations: Annotations::Present, was_set: true },
                ],
            ),
            (object(serde_json::json!({"volumeRestorePolicy": "Serial"}), Some(serde_json::json!({}))), vec![]),
            // A file's object may have no metadata at all (found by fuzz/fuzz_targets/patch.rs).
            (
                serde_json::json!({"spec": {"type": "Restore", "restore": {"volumeRestorePolicy": "Serial"}}}),
                vec![Mutation::BaseBackup {
                    value: "full-1".into(),
                    annotations: Annotations::MetadataMissing,
                    was_set: false,
                }],
            ),
        ];
        for (before, mutations) in cases {
            let native = to_patch(&mutations);
            let mut after = before.clone();
            json_patch::patch(&mut after, &native).unwrap();
            assert_eq!(patch_between(&before, &after), native, "{before}");
        }
        // Anything else is still carried over.
        let before = serde_json::json!({"spec": {"type": "Restore"}});
        let after = serde_json::json!({"spec": {"type": "Restore", "extra": 1}});
        let mut patched = before.clone();
        json_patch::patch(&mut patched, &patch_between(&before, &after)).unwrap();
        assert_eq!(patched, after);
    }

    #[test]
    fn annotation_keys_are_escaped() {
        let patch = to_patch(&[Mutation::BaseBackup {
            value: "full-1".into(),
            annotations: Annotations::Present,
            was_set: false,
        }]);
        let json = serde_json::to_value(&patch).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"op": "add", "path": "/metadata/annotations/pitrguard.io~1base-backup", "value": "full-1"}])
        );
    }

    #[test]
    fn missing_annotations_are_created_whole() {
        let patch = to_patch(&[Mutation::BaseBackup {
            value: "full-1".into(),
            annotations: Annotations::Missing,
            was_set: false,
        }]);
        let json = serde_json::to_value(&patch).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"op": "add", "path": "/metadata/annotations", "value": {"pitrguard.io/base-backup": "full-1"}}])
        );
    }

    #[test]
    fn restore_spec_paths_follow_the_field_in_use() {
        let patch = to_patch(&[
            Mutation::VolumeRestorePolicy {
                field: RestoreField::RestoreSpec,
                value: "Parallel".into(),
                was_empty: false,
            },
            Mutation::PointInTime { field: RestoreField::Restore, value: "2024-05-07T10:07:45Z".into() },
        ]);
        let json = serde_json::to_value(&patch).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"op": "add", "path": "/spec/restoreSpec/volumeRestorePolicy", "value": "Parallel"},
                {"op": "replace", "path": "/spec/restore/restorePointInTime", "value": "2024-05-07T10:07:45Z"}
            ])
        );
    }
}
