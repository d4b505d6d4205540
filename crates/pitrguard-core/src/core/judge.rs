//! The entry point of the core: one object (and, on UPDATE, its old version)
//! in, one [`Decision`] out. Admission, the CLI and the reconciler all call
//! [`judge`], so the three can never disagree.

use serde_json::Value;

use super::decision::{Decision, Rule, Skip, Violation};
use super::inventory::Inventory;
use super::request::{decode, ops_request_group, ops_type};
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

/// Judges one object. `namespace` stands in for a missing `metadata.namespace`.
pub fn judge(
    operation: Operation,
    object: Option<&Value>,
    old_object: Option<&Value>,
    namespace: &str,
    inv: &dyn Inventory,
    policy: &Policy,
) -> Decision {
    if matches!(operation, Operation::Delete | Operation::Connect) {
        return Decision::skip(Skip::Operation(operation.as_str().into()));
    }
    let Some(object) = object.filter(|o| ops_request_group(o).is_some()) else {
        return Decision::skip(Skip::NotAnOpsRequest);
    };
    let ty = ops_type(object);
    if ty != "Restore" {
        return Decision::skip(Skip::NotARestore(ty.into()));
    }
    if operation == Operation::Update
        && let Some(old) = old_object
        && RESTORE_POINTERS.iter().all(|p| old.pointer(p) == object.pointer(p))
    {
        return Decision::skip(Skip::UpdateWithoutRestoreChange);
    }
    match decode(object, namespace) {
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
