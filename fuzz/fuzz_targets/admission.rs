//! The bytes as an AdmissionReview body, through what the webhook does with it
//! (`admission::pipeline::Admission::review` with the native judge): `parse_review`, `decide`
//! against the example inventory, `respond` for both webhooks, `review_body`.
//!
//! Every input is either refused by `parse_review` (the server's 400) or answered with a
//! well-formed AdmissionReview that
//! - is valid JSON, `admission.k8s.io/v1` `AdmissionReview`, whose `response.uid` is the request's;
//! - allows exactly when the decision does (/validate), and always allows on /mutate;
//! - carries a denial as `Failure` with a message and code 422, and `{}` as the status of an allow;
//! - carries a patch only on /mutate of an allowed restore, as base64 of an RFC 6902 patch
//!   that applies to the request's object;
//! - sends W3 only from /validate and W1/W2 only from /mutate;
//!
//! and the decision itself is consistent (a skipped object has no rule, no patch, no warning; a
//! patch or a plan only when allowed), the same when asked twice, and the same whether the
//! object's head was read with the review (`parse_review`) or from its text (`parse_review_text`).

#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use pitrguard::admission::{Answer, Endpoint, Object, decide, parse_review, parse_review_text, respond, review_body};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let inventory = pitrguard_fuzz::example_index();
    let req = match parse_review(data) {
        Ok(req) => req,
        Err(e) => {
            // The server's 400 carries this message: never empty.
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let as_text = parse_review_text(data).expect("what parse_review reads, the text reading reads");
    assert_eq!(pitrguard::admission::backup_namespace(&req), pitrguard::admission::backup_namespace(&as_text));
    for policy in pitrguard_fuzz::policies() {
        let decision = decide(&req, inventory, policy);
        assert_eq!(decision, decide(&req, inventory, policy), "the same request judged twice");
        assert_eq!(decision, decide(&as_text, inventory, policy), "the head read with the review or from the text");
        let answer = Answer::from(&decision);
        assert_eq!(answer.allowed, answer.rules.is_empty(), "{answer:?}");
        assert!(!answer.failed);
        assert!(!answer.message.is_empty(), "every answer says something: {answer:?}");
        if answer.skipped {
            assert!(answer.allowed && answer.patch.0.is_empty() && answer.warnings.is_empty(), "{answer:?}");
        }
        if !answer.allowed {
            assert!(answer.patch.0.is_empty() && decision.mutations.is_empty(), "a denial with a patch: {answer:?}");
        }
        for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
            let response = respond(endpoint, &req, &answer);
            let body = review_body(&response);
            let review: Value = serde_json::from_slice(&body).expect("the response body is JSON");
            assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
            assert_eq!(review["kind"], "AdmissionReview");
            let out = &review["response"];
            assert_eq!(out["uid"].as_str(), Some(&*req.uid), "the response's uid is the request's");
            let allowed = out["allowed"].as_bool().expect("allowed is a boolean");
            match endpoint {
                Endpoint::Validate => assert_eq!(allowed, answer.allowed),
                Endpoint::Mutate => assert!(allowed, "the mutating webhook never denies a rule"),
            }
            let status = out["status"].as_object().expect("status is an object");
            if allowed {
                assert!(status.is_empty(), "an allow carries an empty status: {out}");
            } else {
                assert_eq!(out["status"]["status"], "Failure");
                assert_eq!(out["status"]["reason"], "Invalid");
                assert_eq!(out["status"]["code"], 422);
                assert_eq!(out["status"]["message"].as_str(), Some(answer.message.as_str()));
            }
            let warnings: Vec<&str> = out
                .get("warnings")
                .map(|w| w.as_array().expect("warnings is an array").iter().map(|w| w.as_str().unwrap()).collect())
                .unwrap_or_default();
            let expected: Vec<&str> = answer
                .warnings
                .iter()
                .filter(|w| w.explains_mutation() == (endpoint == Endpoint::Mutate))
                .map(|w| w.message.as_str())
                .collect();
            assert_eq!(warnings, expected);
            match out.get("patch") {
                None => {
                    assert!(out.get("patchType").is_none());
                    assert!(endpoint == Endpoint::Validate || answer.patch.0.is_empty());
                }
                Some(patch) => {
                    assert_eq!(endpoint, Endpoint::Mutate);
                    assert!(answer.allowed && !answer.skipped, "a patch for an object that is not allowed");
                    assert_eq!(out["patchType"], "JSONPatch");
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(patch.as_str().expect("patch is a string"))
                        .expect("patch is base64");
                    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("an RFC 6902 patch");
                    assert_eq!(patch, answer.patch);
                    // (An object serde_json cannot hold as a tree, say with a number beyond f64, is
                    // one the API server never sends; the core reads only its restore fields.)
                    let Object::Text { object: Some(object), .. } = as_text.object else {
                        panic!("a patch needs an object");
                    };
                    if let Ok(mut object) = serde_json::from_str::<Value>(object) {
                        json_patch::patch(&mut object, &patch)
                            .unwrap_or_else(|e| panic!("the patch does not apply to the object: {e}"));
                    }
                }
            }
        }
    }
});
