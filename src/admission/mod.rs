//! AdmissionReview in, AdmissionReview out: the translation between the
//! `admission.k8s.io/v1` wire format and the core, and ([`pipeline`]) the one
//! entry point a request goes through. No rule lives here.

#[cfg(feature = "runtime")]
pub mod pipeline;

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::core::mutate::to_patch;
use crate::core::request::{Head, OnePassHead};
use crate::core::{Decision, Inventory, Operation, Policy, Rule, Warning, judge_head, judge_json};

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
    #[error("body is not UTF-8, as JSON must be: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("unsupported AdmissionReview apiVersion {0:?}; pitrguard speaks admission.k8s.io/v1")]
    Version(String),
}

/// The `request` of an AdmissionReview, borrowed from the body: what pitrguard reads of it.
#[derive(Debug)]
pub struct Request<'a> {
    pub uid: Cow<'a, str>,
    pub kind: GroupVersionKind<'a>,
    pub sub_resource: Option<Cow<'a, str>>,
    pub name: Cow<'a, str>,
    pub namespace: Option<Cow<'a, str>>,
    pub operation: WireOperation,
    pub object: Object<'a>,
    pub dry_run: bool,
}

/// `request.object` (and `oldObject`) as the core reads them.
// The large variant is the common one: boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Object<'a> {
    /// The object's head, read in the same pass as the review: the common case, and no UPDATE
    /// with an old object (whose restore fields are compared as text).
    Head(Option<Head<'a>>),
    /// The objects' text, read again by the core: an UPDATE with an old object, or an object that
    /// the one-pass reading refuses (the core's raw reading then says which field is wrong).
    Text { object: Option<&'a str>, old_object: Option<&'a str> },
}

/// The `request` on the wire; `O` is how `object` is read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a, O> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(borrow)]
    kind: GroupVersionKind<'a>,
    /// Required, as in `admission.k8s.io/v1`; not read.
    #[serde(rename = "resource")]
    _resource: IgnoredAny,
    #[serde(borrow, default)]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    operation: WireOperation,
    /// Required, as in `admission.k8s.io/v1`; not read.
    #[serde(rename = "userInfo")]
    _user_info: IgnoredAny,
    #[serde(default = "none")]
    object: Option<O>,
    #[serde(borrow, default)]
    old_object: Option<&'a RawValue>,
    #[serde(default)]
    dry_run: bool,
}

fn none<O>() -> Option<O> {
    None
}

impl<'a, O> WireRequest<'a, O> {
    fn with_object(self, object: Object<'a>) -> Request<'a> {
        Request {
            uid: self.uid,
            kind: self.kind,
            sub_resource: self.sub_resource,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            object,
            dry_run: self.dry_run,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct GroupVersionKind<'a> {
    #[serde(borrow)]
    pub group: Cow<'a, str>,
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WireOperation {
    Create,
    Update,
    Delete,
    Connect,
}

impl From<WireOperation> for Operation {
    fn from(op: WireOperation) -> Self {
        match op {
            WireOperation::Create => Operation::Create,
            WireOperation::Update => Operation::Update,
            WireOperation::Delete => Operation::Delete,
            WireOperation::Connect => Operation::Connect,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "O: Deserialize<'de>"))]
struct Review<'a, O> {
    #[serde(borrow)]
    api_version: Cow<'a, str>,
    /// Required; not read.
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    #[serde(borrow, default = "none")]
    request: Option<WireRequest<'a, O>>,
}

pub const API_VERSION: &str = "admission.k8s.io/v1";

/// Reads an AdmissionReview, borrowing from `body`. The object's head is read in the same pass;
/// a review the one-pass reading refuses (or an UPDATE with an old object) is read again with the
/// objects kept as text, and that reading's error is the one returned.
pub fn parse_review(body: &[u8]) -> Result<Request<'_>, ReviewError> {
    // Checked whole, once: each reading then skips what it does not read without looking at it.
    let body = std::str::from_utf8(body)?;
    if let Ok(review) = serde_json::from_str::<Review<'_, OnePassHead<'_>>>(body)
        && review.api_version == API_VERSION
        && let Some(mut req) = review.request
        && req.old_object.is_none()
    {
        let head = req.object.take().map(|OnePassHead(head)| head);
        return Ok(req.with_object(Object::Head(head)));
    }
    read_as_text(body)
}

/// [`parse_review`] with the objects kept as text, always: the reading the one-pass one is held to.
#[doc(hidden)]
pub fn parse_review_text(body: &[u8]) -> Result<Request<'_>, ReviewError> {
    read_as_text(std::str::from_utf8(body)?)
}

fn read_as_text(body: &str) -> Result<Request<'_>, ReviewError> {
    let review: Review<'_, &RawValue> = serde_json::from_str(body)?;
    if review.api_version != API_VERSION {
        return Err(ReviewError::Version(review.api_version.into_owned()));
    }
    let req = review.request.ok_or(ReviewError::NoRequest)?;
    let object = Object::Text { object: req.object.map(RawValue::get), old_object: req.old_object.map(RawValue::get) };
    Ok(req.with_object(object))
}

impl Request<'_> {
    pub fn operation(&self) -> Operation {
        self.operation.into()
    }

    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }
}

pub fn operation_name(req: &Request<'_>) -> &'static str {
    req.operation().as_str()
}

/// Judges the request. Subresource requests (`/status`) do not change the
/// restore and are allowed untouched, like every object that is not a Restore.
pub fn decide(req: &Request<'_>, inv: &dyn Inventory, policy: &Policy) -> Decision {
    if let Some(sub) = req.sub_resource.as_deref().filter(|s| !s.is_empty()) {
        return Decision::skip(crate::core::decision::Skip::Operation(format!("the {sub} subresource")));
    }
    match &req.object {
        Object::Head(head) => judge_head(req.operation(), head.clone(), || false, req.namespace(), inv, policy),
        Object::Text { object, old_object } => {
            judge_json(req.operation(), *object, *old_object, req.namespace(), inv, policy)
        }
    }
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
    /// The answer as `endpoint` sends it: the validating webhook sends no patch, so none is made.
    pub fn for_endpoint(d: &Decision, endpoint: Endpoint) -> Self {
        let patch = match endpoint {
            Endpoint::Mutate => to_patch(&d.mutations),
            Endpoint::Validate => json_patch::Patch(vec![]),
        };
        Self {
            allowed: d.allowed(),
            message: d.message(),
            warnings: d.warnings.clone(),
            patch,
            rules: d.rules(),
            skipped: d.skipped.is_some(),
            failed: false,
        }
    }

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
pub fn backup_namespace(req: &Request<'_>) -> Option<String> {
    let r = match &req.object {
        Object::Head(head) => head.clone()?.decode(req.namespace()),
        Object::Text { object, .. } => crate::core::request::decode_json((*object)?, req.namespace()),
    };
    Some(r.ok()?.backup_namespace().to_string())
}

/// The HTTP status code a denial carries in `status.code`.
pub const DENIED_CODE: u16 = 422;

/// An AdmissionReview's `response`, borrowing from the request and the answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response<'a> {
    pub uid: &'a str,
    pub allowed: bool,
    pub status: Status<'a>,
    /// The JSON patch, base64 as Go's `[]byte` (and every example in the Kubernetes docs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<&'a str>,
}

/// `metav1.Status` as a denial carries it; empty (`{}`) when allowed.
#[derive(Debug, Default, Serialize)]
pub struct Status<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'static str,
    #[serde(skip_serializing_if = "is_zero")]
    pub code: u16,
}

fn is_zero(code: &u16) -> bool {
    *code == 0
}

impl<'a> Response<'a> {
    fn allow(req: &'a Request<'_>) -> Self {
        Self {
            uid: &req.uid,
            allowed: true,
            status: Status::default(),
            patch: None,
            patch_type: None,
            warnings: vec![],
        }
    }

    fn deny(mut self, message: &'a str, reason: &'static str, code: u16) -> Self {
        self.allowed = false;
        self.status = Status { status: Some("Failure"), message, reason, code };
        self
    }
}

/// Builds the response. The validating webhook denies; the mutating webhook
/// never denies a rule violation (the validating one does, once) and patches
/// only an object that passes every rule. Each warning comes from one webhook
/// only, as kubectl prints both webhooks' warnings: W1/W2 from the mutating one,
/// whose patch they explain, W3 from the validating one.
///
/// A judge that failed is denied by both webhooks, with HTTP status code 500 in `status.code`.
pub fn respond<'a>(endpoint: Endpoint, req: &'a Request<'_>, answer: &'a Answer) -> Response<'a> {
    let mut resp = Response::allow(req);
    match endpoint {
        _ if answer.failed => resp = resp.deny(&answer.message, "InternalError", 500),
        Endpoint::Validate if !answer.allowed => resp = resp.deny(&answer.message, "Invalid", DENIED_CODE),
        Endpoint::Validate => {}
        Endpoint::Mutate if answer.patch.0.is_empty() => {}
        Endpoint::Mutate => {
            use base64::Engine;
            let json = serde_json::to_vec(&answer.patch).expect("a JSON patch always serialises");
            resp.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
            resp.patch_type = Some("JSONPatch");
        }
    }
    resp.warnings = answer
        .warnings
        .iter()
        .filter(|w| w.explains_mutation() == (endpoint == Endpoint::Mutate))
        .map(|w| w.message.as_str())
        .collect();
    resp
}

/// A denial for when the inventory cannot answer yet (live mode before the first list).
pub fn not_ready<'a>(req: &'a Request<'_>, why: &'a str) -> Response<'a> {
    Response::allow(req).deny(why, "ServiceUnavailable", 503)
}

/// The response body, as the API server expects it: what serde_json makes of [`Response`], written
/// by hand because escaping the denial's message a byte at a time was most of the work.
pub fn review_body(response: &Response<'_>) -> Vec<u8> {
    use crate::json_text::push_str;
    let r = response;
    let mut out = Vec::with_capacity(160 + r.status.message.len() + r.patch.as_ref().map_or(0, String::len));
    out.extend_from_slice(b"{\"apiVersion\":\"");
    out.extend_from_slice(API_VERSION.as_bytes());
    out.extend_from_slice(b"\",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
    push_str(&mut out, r.uid);
    out.extend_from_slice(if r.allowed {
        b",\"allowed\":true,\"status\":{"
    } else {
        b",\"allowed\":false,\"status\":{"
    });
    let mut fields = 0;
    let mut field = |out: &mut Vec<u8>, name: &[u8]| {
        if fields > 0 {
            out.push(b',');
        }
        fields += 1;
        out.push(b'"');
        out.extend_from_slice(name);
        out.extend_from_slice(b"\":");
    };
    let status = &r.status;
    if let Some(s) = status.status {
        field(&mut out, b"status");
        push_str(&mut out, s);
    }
    if !status.message.is_empty() {
        field(&mut out, b"message");
        push_str(&mut out, status.message);
    }
    if !status.reason.is_empty() {
        field(&mut out, b"reason");
        push_str(&mut out, status.reason);
    }
    if status.code != 0 {
        field(&mut out, b"code");
        out.extend_from_slice(status.code.to_string().as_bytes());
    }
    out.push(b'}');
    if let Some(patch) = &r.patch {
        out.extend_from_slice(b",\"patch\":");
        push_str(&mut out, patch);
    }
    if let Some(patch_type) = r.patch_type {
        out.extend_from_slice(b",\"patchType\":");
        push_str(&mut out, patch_type);
    }
    if !r.warnings.is_empty() {
        out.extend_from_slice(b",\"warnings\":[");
        for (i, w) in r.warnings.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_str(&mut out, w);
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}}");
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Serialize;

    use super::*;

    /// What serde_json writes for the same response: the reference [`review_body`] is held to.
    fn by_serde(response: &Response<'_>) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'r, 'a> {
            api_version: &'static str,
            kind: &'static str,
            response: &'r Response<'a>,
        }
        serde_json::to_vec(&Out { api_version: API_VERSION, kind: "AdmissionReview", response }).unwrap()
    }

    const REASONS: [&str; 4] = ["", "Invalid", "InternalError", "ServiceUnavailable"];

    #[test]
    fn a_body_that_is_not_utf8_is_refused_wherever_the_bad_bytes_are() {
        let review =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/admission/review-denied.json")).unwrap();
        assert!(parse_review(&review).is_ok());
        // A key of the object that the rules do not read, and a field of the review pitrguard skips.
        for (from, to) in
            [(&b"\"namespace\": \"demo\"\n      }"[..], &b"\"n\xff\": \"demo\"\n      }"[..]), (b"alice", b"al\xffce")]
        {
            let at = review.windows(from.len()).position(|w| w == from).expect("the example has the text");
            let bad = [&review[..at], to, &review[at + from.len()..]].concat();
            let e = parse_review(&bad).unwrap_err();
            assert!(matches!(e, ReviewError::Utf8(_)), "{e}");
            assert!(matches!(parse_review_text(&bad), Err(ReviewError::Utf8(_))));
        }
    }

    #[test]
    fn an_update_with_an_old_object_and_an_object_the_one_pass_reading_refuses_are_read_as_text() {
        let review = String::from_utf8(
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/admission/review-denied.json")).unwrap(),
        )
        .unwrap();
        assert!(matches!(parse_review(review.as_bytes()).unwrap().object, Object::Head(Some(_))));
        let update = review.replace("\"CREATE\"", "\"UPDATE\"").replace("\"oldObject\": null", "\"oldObject\": {}");
        assert!(matches!(parse_review(update.as_bytes()).unwrap().object, Object::Text { old_object: Some("{}"), .. }));
        let refused = review.replace("\"clusterName\": \"pg-cluster-1100\"", "\"clusterName\": 7");
        let req = parse_review(refused.as_bytes()).unwrap();
        assert!(matches!(req.object, Object::Text { object: Some(_), old_object: None }));
        let d = decide(&req, &crate::core::Index::new(), &Policy::default());
        assert!(d.violations[0].message.contains("spec.clusterName: expected a string, found a number"), "{d:?}");
    }

    proptest! {
        #[test]
        fn the_body_is_what_serde_json_writes(
            uid in any::<String>(),
            allowed in any::<bool>(),
            status in proptest::option::of(Just("Failure")),
            message in any::<String>(),
            reason in 0..REASONS.len(),
            code in prop_oneof![Just(0u16), Just(422), Just(500), any::<u16>()],
            patch in proptest::option::of("[A-Za-z0-9+/=]{0,40}"),
            patch_type in proptest::option::of(Just("JSONPatch")),
            warnings in proptest::collection::vec(any::<String>(), 0..3),
        ) {
            let response = Response {
                uid: &uid,
                allowed,
                status: Status { status, message: &message, reason: REASONS[reason], code },
                patch,
                patch_type,
                warnings: warnings.iter().map(String::as_str).collect(),
            };
            prop_assert_eq!(String::from_utf8(review_body(&response)).unwrap(), String::from_utf8(by_serde(&response)).unwrap());
        }
    }
}
