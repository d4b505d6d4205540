//! The module's Kubewarden answer, read as the native [`Answer`]: the mutated
//! object becomes the mutating webhook's patch (in its native shape), and the
//! audit annotations of `module_abi` name the broken rules and the warnings.

use serde_json::Value;

use super::{ModuleAnswer, ModuleError};
use crate::admission::Answer;
use crate::core::mutate::patch_between;
use crate::core::{Rule, Warning, WarningId};
use crate::module_abi::{ANNOTATION_RULES, ANNOTATION_SKIPPED, ANNOTATION_WARNINGS};

/// `object` is the request's object, which `mutated_object` replaces.
pub fn to_answer(object: Option<&Value>, module: ModuleAnswer) -> Answer {
    let annotation = |key: &str| module.audit_annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str);
    let ids = |key: &str| annotation(key).into_iter().flat_map(|v| v.split(',')).collect::<Vec<_>>();
    let rules: Vec<Rule> = ids(ANNOTATION_RULES).into_iter().filter_map(Rule::from_id).collect();
    let warning_ids = ids(ANNOTATION_WARNINGS);
    let warnings = module
        .warnings
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, message)| Warning {
            // A warning the module does not name is about the restore (W3): sent once, by /validate.
            id: warning_ids.get(i).and_then(|id| WarningId::from_id(id)).unwrap_or(WarningId::W3),
            message,
        })
        .collect();
    let patch = match (object, &module.mutated_object) {
        (Some(before), Some(after)) => patch_between(before, after),
        _ => json_patch::Patch(vec![]),
    };
    Answer {
        allowed: module.accepted,
        message: module.message.unwrap_or_default(),
        warnings,
        patch,
        // A refusal without a rule is the module's own (bad settings, a host call that failed).
        failed: !module.accepted && rules.is_empty(),
        rules,
        skipped: annotation(ANNOTATION_SKIPPED) == Some("true"),
    }
}

/// A module that could not answer: a denial that says what happened.
pub fn failure(error: &ModuleError) -> Answer {
    Answer::failure(format!("pitrguard: {error}"))
}
