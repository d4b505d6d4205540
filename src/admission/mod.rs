//! AdmissionReview in, AdmissionReview out: the translation between the
//! `admission.k8s.io/v1` wire format and the core, and ([`pipeline`]) the one
//! entry point a request goes through. No rule lives here.

pub mod pipeline;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation as KubeOperation};
use kube::core::response::Status;
use serde_json::Value;

use crate::core::mutate::to_patch;
use crate::core::{Decision, Inventory, Operation, Policy, Rule, Warning, judge};

/// Which webhook is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Validate,
    Mutate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// A body that is not an AdmissionReview with a request.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("body is not an admission.k8s.io/v1 AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("unsupported AdmissionReview apiVersion {0:?}; pitrguard speaks admission.k8s.io/v1")]
    Version(String),
}

pub type Request = AdmissionRequest<DynamicObject>;

pub fn parse_review(body: &[u8]) -> Result<Request, ReviewError> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)?;
    if review.types.api_version != "admission.k8s.io/v1" {
        return Err(ReviewError::Version(review.types.api_version));
    }
    review.try_into().map_err(|_| ReviewError::NoRequest)
}

fn operation(op: &KubeOperation) -> Operation {
    match op {
        KubeOperation::Create => Operation::Create,
        KubeOperation::Update => Operation::Update,
        KubeOperation::Delete => Operation::Delete,
        KubeOperation::Connect => Operation::Connect,
    }
}

pub fn operation_name(req: &Request) -> &'static str {
    operation(&req.operation).as_str()
}

/// Judges the request. Subresource requests (`/status`) do not change the
/// restore and are allowed untouched, like every object that is not a Restore.
pub fn decide(req: &Request, inv: &dyn Inventory, policy: &Policy) -> Decision {
    if req.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
        return Decision::skip(crate::core::decision::Skip::Operation(format!(
            "the {} subresource",
            req.sub_resource.as_deref().unwrap_or_default()
        )));
    }
    let object = req.object.as_ref().and_then(|o| serde_json::to_value(o).ok());
    let old = req.old_object.as_ref().and_then(|o| serde_json::to_value(o).ok());
    let namespace = req.namespace.as_deref().unwrap_or("");
    judge(operation(&req.operation), object.as_ref(), old.as_ref(), namespace, inv, policy)
}

/// What a judge, the native core or the policy module, says about one request:
/// everything the two webhooks, `pitrguard validate` and the metrics need.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub allowed: bool,
    /// The denial, or the one-line summary of what is allowed.
    pub message: String,
    pub warnings: Vec<Warning>,
    /// The mutating webhook's patch (M1–M3), empty when denied.
    pub patch: json_patch::Patch,
    /// The broken rules.
    pub rules: Vec<Rule>,
    /// Let through without being judged (not a Restore, a subresource, ...).
    pub skipped: bool,
    /// The judge itself failed (a module that trapped or overran): both webhooks deny.
    pub failed: bool,
}

impl From<&Decision> for Answer {
    fn from(d: &Decision) -> Self {
        Self {
            allowed: d.allowed(),
            message: d.message(),
            warnings: d.warnings.clone(),
            patch: to_patch(&d.mutations),
            rules: d.rules(),
            skipped: d.skipped.is_some(),
            failed: false,
        }
    }
}

impl Answer {
    /// A denial for a judge that could not answer.
    pub fn failure(message: String) -> Self {
        Self {
            allowed: false,
            message,
            warnings: vec![],
            patch: json_patch::Patch(vec![]),
            rules: vec![],
            skipped: false,
            failed: true,
        }
    }

    /// Whether Backups fresher than the ones judged could turn this denial into an allow.
    pub fn may_be_stale(&self) -> bool {
        !self.allowed && !self.failed && self.rules.iter().all(|r| r.may_be_stale())
    }

    /// The metrics label: the first broken rule, `none` when allowed, `skipped` when not judged.
    pub fn rule_label(&self) -> &'static str {
        match self {
            a if a.failed => "judge-failed",
            a if a.skipped => "skipped",
            a => a.rules.first().map_or("none", |r| r.id()),
        }
    }
}

/// The namespace of the source backup, for a request that names one.
pub fn backup_namespace(req: &Request) -> Option<String> {
    let object = serde_json::to_value(req.object.as_ref()?).ok()?;
    let r = crate::core::request::decode(&object, req.namespace.as_deref().unwrap_or("")).ok()?;
    Some(r.backup_namespace())
}

/// The HTTP status code a denial carries in `status.code`.
pub const DENIED_CODE: u16 = 422;

/// Builds the response. The validating webhook denies; the mutating webhook
/// never denies a rule violation (the validating one does, once) and patches
/// only an object that passes every rule. Each warning comes from one webhook
/// only, as kubectl prints both webhooks' warnings: W1/W2 from the mutating one,
/// whose patch they explain, W3 from the validating one.
///
/// A judge that failed is denied by both webhooks, with HTTP status code 500 in `status.code`.
pub fn respond(endpoint: Endpoint, req: &Request, answer: &Answer) -> AdmissionResponse {
    let mut resp = AdmissionResponse::from(req);
    let warnings: Vec<String> = answer
        .warnings
        .iter()
        .filter(|w| w.explains_mutation() == (endpoint == Endpoint::Mutate))
        .map(|w| w.message.clone())
        .collect();
    match endpoint {
        _ if answer.failed => {
            resp = resp.deny(&answer.message);
            resp.result = Status::failure(&answer.message, "InternalError").with_code(500);
        }
        Endpoint::Validate if !answer.allowed => {
            resp = resp.deny(&answer.message);
            resp.result = Status::failure(&answer.message, "Invalid").with_code(DENIED_CODE);
        }
        Endpoint::Validate => {}
        Endpoint::Mutate => {
            if !answer.patch.0.is_empty() {
                resp = resp.with_patch(answer.patch.clone()).expect("a JSON patch always serialises");
            }
        }
    }
    if !warnings.is_empty() {
        resp.warnings = Some(warnings);
    }
    resp
}

/// A denial for when the inventory cannot answer yet (live mode before the first list).
pub fn not_ready(req: &Request, why: &str) -> AdmissionResponse {
    let mut resp = AdmissionResponse::from(req).deny(why);
    resp.result = Status::failure(why, "ServiceUnavailable").with_code(503);
    resp
}

/// The response body, as the API server expects it.
///
/// kube serialises the patch bytes as a JSON array of numbers; Go's `[]byte`
/// convention (and every example in the Kubernetes docs) is a base64 string,
/// which is also a third of the size, so that is what goes on the wire.
pub fn review_body(resp: AdmissionResponse) -> Value {
    use base64::Engine;
    let patch = resp.patch.clone();
    let mut body = serde_json::to_value(resp.into_review()).expect("an AdmissionReview always serialises");
    if let Some(bytes) = patch {
        body["response"]["patch"] = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    body
}
