//! Mutations M1–M3 (SPEC.md §4), typed, and their RFC 6902 form.

use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use jsonptr::PointerBuf;
use serde_json::Value;

use super::facts::ANNOTATION_BASE_BACKUP;
use super::request::RestoreField;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// M1: `volumeRestorePolicy` absent (or empty) → the default.
    VolumeRestorePolicy { field: RestoreField, value: String, was_empty: bool },
    /// M2: `restorePointInTime` → its normal form.
    PointInTime { field: RestoreField, value: String },
    /// M3: annotation `pitrguard.io/base-backup` → the base backup's name.
    BaseBackup { value: String, annotations_exist: bool, was_set: bool },
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
            Mutation::BaseBackup { value, annotations_exist: true, was_set } => {
                set(pointer(&["metadata", "annotations", ANNOTATION_BASE_BACKUP]), value.as_str().into(), *was_set)
            }
            Mutation::BaseBackup { value, annotations_exist: false, .. } => {
                set(pointer(&["metadata", "annotations"]), serde_json::json!({ ANNOTATION_BASE_BACKUP: value }), false)
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_keys_are_escaped() {
        let patch =
            to_patch(&[Mutation::BaseBackup { value: "full-1".into(), annotations_exist: true, was_set: false }]);
        let json = serde_json::to_value(&patch).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"op": "add", "path": "/metadata/annotations/pitrguard.io~1base-backup", "value": "full-1"}])
        );
    }

    #[test]
    fn missing_annotations_are_created_whole() {
        let patch =
            to_patch(&[Mutation::BaseBackup { value: "full-1".into(), annotations_exist: false, was_set: false }]);
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
