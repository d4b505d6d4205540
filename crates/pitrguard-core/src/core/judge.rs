//! The entry point of the core: one object (and, on UPDATE, its old version)
//! in, one [`Decision`] out. Admission, the CLI and the reconciler all call
//! [`judge`], so the three can never disagree.

use serde_json::Value;

use super::decision::{Decision, Rule, Skip, Violation};
use super::inventory::Inventory;
use super::request::{Head, head};
use super::rules::{Policy, evaluate};

/// The admission operation (`request.operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// The fields whose change makes an UPDATE worth judging again.
const RESTORE_POINTERS: [&str; 4] = ["/spec/restore", "/spec/restoreSpec", "/spec/clusterName", "/spec/clusterRef"];

/// Judges one object, given as JSON text (as it arrives in an AdmissionReview).
/// `namespace` stands in for a missing `metadata.namespace`.
///
/// Only the fields the rules read are decoded; no tree of the object is built
/// except, on UPDATE, to compare the restore fields with the old object's.
pub fn judge_json(
    operation: Operation,
    object: Option<&str>,
    old_object: Option<&str>,
    namespace: &str,
    inv: &dyn Inventory,
    policy: &Policy,
) -> Decision {
    // A DELETE or a CONNECT is skipped unread.
    let head = object.filter(|_| !matches!(operation, Operation::Delete | Operation::Connect)).and_then(head);
    let unchanged = || matches!((object, old_object), (Some(new), Some(old)) if restore_unchanged(new, old));
    judge_head(operation, head, unchanged, namespace, inv, policy)
}

/// [`judge_json`] of an object whose head was read already (the webhook reads it while it reads
/// the AdmissionReview). `restore_unchanged` says, for an UPDATE, whether the restore fields are
/// those of the old object; it is asked only of an UPDATE of a Restore.
pub fn judge_head(
    operation: Operation,
    head: Option<Head<'_>>,
    restore_unchanged: impl FnOnce() -> bool,
    namespace: &str,
    inv: &dyn Inventory,
    policy: &Policy,
) -> Decision {
    if matches!(operation, Operation::Delete | Operation::Connect) {
        return Decision::skip(Skip::Operation(operation.as_str().into()));
    }
    let Some(head) = head.filter(|h| h.group.is_some()) else {
        return Decision::skip(Skip::NotAnOpsRequest);
    };
    if head.ops_type != "Restore" {
        return Decision::skip(Skip::NotARestore(head.ops_type.into_owned()));
    }
    if operation == Operation::Update && restore_unchanged() {
        return Decision::skip(Skip::UpdateWithoutRestoreChange);
    }
    match head.decode(namespace) {
        Ok(req) => evaluate(&req, inv, policy),
        Err(e) => Decision {
            skipped: None,
            violations: vec![Violation {
                rule: Rule::Schema,
                message: format!("spec: cannot be read as a Restore OpsRequest: {e}"),
            }],
            warnings: vec![],
            mutations: vec![],
            plan: None,
        },
    }
}

fn restore_unchanged(object: &str, old: &str) -> bool {
    match (serde_json::from_str::<Value>(object), serde_json::from_str::<Value>(old)) {
        (Ok(new), Ok(old)) => RESTORE_POINTERS.iter().all(|p| old.pointer(p) == new.pointer(p)),
        _ => false,
    }
}

/// [`judge_json`] of objects held as JSON values (manifests read from files, the policy module).
pub fn judge(
    operation: Operation,
    object: Option<&Value>,
    old_object: Option<&Value>,
    namespace: &str,
    inv: &dyn Inventory,
    policy: &Policy,
) -> Decision {
    let text = |v: Option<&Value>| v.filter(|v| !v.is_null()).map(Value::to_string);
    let (object, old_object) = (text(object), text(old_object));
    judge_json(operation, object.as_deref(), old_object.as_deref(), namespace, inv, policy)
}
