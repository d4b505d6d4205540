//! Patch generation (M1–M3, `core::mutate::to_patch`) and application: the bytes as the object
//! of a CREATE in namespace `demo`, judged against the example inventory under both policies.
//!
//! What the code promises (SPEC.md §4, `rules::finish`, `mutate`):
//! - mutations only for an allowed restore;
//! - the RFC 6902 patch applies cleanly (json-patch) to the object it was made for, with or
//!   without `metadata` (M3 adds what is missing; found by this target);
//! - the patched object, judged again, is allowed with the same plan and needs no further
//!   mutation (idempotence: M1 set, M2 in normal form, M3 names the same base), and draws no W1/W2;
//! - `patch_between(object, patched)` — how the policy module's mutated object goes on the
//!   wire — is the native patch, operation for operation;
//! - judging the object as text (`judge_json`, the webhook) and as a JSON tree (`judge`, the CLI
//!   and the module) gives the same decision, for an object without repeated keys.
//! - the one-pass reading of the object (`request::one_pass_head`), where it reads it, gives what
//!   the raw reading (`request::raw_head`) gives: the same group, type and decoded request, or
//!   the same error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pitrguard::core::mutate::{patch_between, to_patch};
use pitrguard::core::request;
use pitrguard::core::{Operation, WarningId, judge, judge_json};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let inventory = pitrguard_fuzz::example_index();
    let tree = serde_json::from_str::<Value>(text).ok();
    if let Some(one_pass) = request::one_pass_head(text) {
        let raw = request::raw_head(text).expect("the raw reading reads what the one-pass reading reads");
        assert_eq!((one_pass.group, &one_pass.ops_type), (raw.group, &raw.ops_type), "the two readings' heads");
        assert_eq!(one_pass.decode("demo"), raw.decode("demo"), "the two readings' requests");
    }
    for policy in pitrguard_fuzz::policies() {
        let d = judge_json(Operation::Create, Some(text), None, "demo", inventory, policy);
        if !d.mutations.is_empty() {
            assert!(d.allowed() && d.skipped.is_none() && d.plan.is_some(), "mutations without an allow: {d:?}");
        }
        let Some(before) = &tree else { continue };
        if !pitrguard_fuzz::repeats_a_key(text, before) {
            let as_tree = judge(Operation::Create, Some(before), None, "demo", inventory, policy);
            assert_eq!(as_tree, d, "the object judged as text and as a tree");
        }
        if d.mutations.is_empty() {
            continue;
        }
        let patch = to_patch(&d.mutations);
        let mut after = before.clone();
        json_patch::patch(&mut after, &patch).unwrap_or_else(|e| panic!("the patch {patch:?} does not apply: {e}"));
        assert_eq!(patch_between(before, &after), patch, "patch_between differs from the native patch");
        let again = judge(Operation::Create, Some(&after), None, "demo", inventory, policy);
        assert!(again.allowed(), "the patched object is denied: {again:?}");
        assert!(again.mutations.is_empty(), "the patched object is patched again: {:?}", again.mutations);
        assert_eq!(again.plan, d.plan, "the patched object has another plan");
        assert!(again.warnings.iter().all(|w| w.id == WarningId::W3), "{:?}", again.warnings);
    }
});
