//! The admission router: `POST /validate` and `POST /mutate`.
//!
//! Bad input is answered with a 4xx and a JSON error body, never a 500 and
//! never a crash: 413 over the body limit, 415 for a body that is not JSON,
//! 400 for JSON that is not an AdmissionReview, 404/405 for other routes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use crate::admission::{self, Answer, Endpoint};
use crate::core::Policy;
use crate::core::inventory::Index;
use crate::inventory::{FreshView, SharedInventory, View};
use crate::metrics::{DecisionLabels, EndpointLabels, Metrics, StatusLabels};
use crate::policy_module::{PolicyModule, answer as module_answer};

/// Request bodies above this are refused with 413 (the API server sends at most 3 MiB objects).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How much of a body over the limit is still read, and thrown away, before the 413. A client
/// still sending when the answer comes gets a reset instead of the 413 (HTTP/2: RST_STREAM; HTTP/1.1:
/// a closed connection), so up to this bound the client may finish, and then reads the 413.
pub const MAX_DRAINED_BYTES: usize = 16 * 1024 * 1024;

/// Reads a namespace's Backups straight from the API server.
pub trait FreshBackups: Send + Sync {
    fn backups_in(&self, namespace: String) -> BoxFuture<'static, anyhow::Result<Index>>;
}

/// What every handler shares.
#[derive(Clone)]
pub struct App {
    pub inventory: Arc<SharedInventory>,
    pub policy: Arc<Policy>,
    pub metrics: Arc<Metrics>,
    /// Set in live mode: a denial that newer Backups could overturn is
    /// confirmed against the API server first (read-your-writes).
    pub fresh: Option<Arc<dyn FreshBackups>>,
    /// Set with `--policy-module`: the module judges instead of the built-in core.
    pub module: Option<Arc<PolicyModule>>,
}

/// Bound on a read-your-writes confirmation; well under the webhook timeoutSeconds (5, manifests/base/webhooks.yaml).
pub const FRESH_READ_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router(app: App) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

async fn validate(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    handle(Endpoint::Validate, &app, &headers, read_body(&headers, body).await).await
}

async fn mutate(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    handle(Endpoint::Mutate, &app, &headers, read_body(&headers, body).await).await
}

/// Reads a body of at most [`MAX_BODY_BYTES`]. A longer one is drained up to [`MAX_DRAINED_BYTES`]
/// so that the client can read the 413.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, (StatusCode, String)> {
    use futures::StreamExt;
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {MAX_BODY_BYTES} bytes; an AdmissionReview is at most 3 MiB"),
        )
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES + MAX_DRAINED_BYTES) {
        return Err(too_large());
    }
    let mut kept = Vec::with_capacity(declared.unwrap_or(0).min(MAX_BODY_BYTES));
    let mut seen = 0usize;
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| (StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}")))?;
        seen += chunk.len();
        if seen <= MAX_BODY_BYTES {
            kept.extend_from_slice(&chunk);
        } else if seen > MAX_BODY_BYTES + MAX_DRAINED_BYTES {
            break;
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(Bytes::from(kept))
}

async fn not_found(State(app): State<App>) -> Response {
    error(&app.metrics, StatusCode::NOT_FOUND, "no such endpoint; use POST /validate or POST /mutate")
}

async fn method_not_allowed(State(app): State<App>) -> Response {
    error(&app.metrics, StatusCode::METHOD_NOT_ALLOWED, "use POST with an AdmissionReview body")
}

/// A JSON error body: `{"error": "...", "code": 400}`.
pub fn error(metrics: &Metrics, status: StatusCode, message: impl std::fmt::Display) -> Response {
    metrics.http_errors.get_or_create(&StatusLabels { status: status.as_u16() }).inc();
    (status, Json(json!({"error": message.to_string(), "code": status.as_u16()}))).into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

async fn handle(
    endpoint: Endpoint,
    app: &App,
    headers: &HeaderMap,
    body: Result<Bytes, (StatusCode, String)>,
) -> Response {
    let started = Instant::now();
    let body = match body {
        Ok(b) => b,
        Err((status, message)) => return error(&app.metrics, status, message),
    };
    if !is_json(headers) {
        return error(&app.metrics, StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json");
    }
    let req = match admission::parse_review(&body) {
        Ok(r) => r,
        Err(e) => return error(&app.metrics, StatusCode::BAD_REQUEST, e),
    };
    let (response, answer) = if app.inventory.is_ready() {
        let cached = judge(app, &req, &body, app.inventory.clone()).await;
        let answer = confirm(app, &req, &body, cached).await;
        (admission::respond(endpoint, &req, &answer), Some(answer))
    } else {
        let why = "pitrguard is not ready yet: its inventory of Backups has not synced; retry in a few seconds";
        (admission::not_ready(&req, why), None)
    };
    let elapsed = started.elapsed();
    record(app, endpoint, &req, &response, answer.as_ref(), elapsed);
    (StatusCode::OK, Json(admission::review_body(response))).into_response()
}

/// The configured judge's answer, reading the inventory through `view`. The
/// module gets the request as it came (`body`), as Kubewarden passes it on.
async fn judge(app: &App, req: &admission::Request, body: &[u8], view: Arc<dyn View>) -> Answer {
    let Some(module) = &app.module else {
        let mut answer = None;
        view.with(&mut |inv| answer = Some(Answer::from(&admission::decide(req, inv, &app.policy))));
        return answer.expect("a view always reads");
    };
    // `body` parsed as an AdmissionReview already; this reads it once more, untyped.
    let request = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut review) => review["request"].take(),
        Err(e) => return Answer::failure(format!("pitrguard: cannot pass the request to the policy module: {e}")),
    };
    let object = request.get("object").filter(|o| !o.is_null()).cloned();
    match module.validate(request, view).await {
        Ok(a) => module_answer::to_answer(object.as_ref(), a),
        Err(e) => module_answer::failure(&e),
    }
}

/// Read-your-writes: a Backup created or updated a moment ago may not be in
/// the cache yet. A denial that fresher Backups could turn into an allow is
/// judged again against the Backups the API server has now.
async fn confirm(app: &App, req: &admission::Request, body: &[u8], cached: Answer) -> Answer {
    let Some(fresh) = &app.fresh else { return cached };
    // Only worth a read when fresher Backups could make the request pass.
    if !cached.may_be_stale() {
        return cached;
    }
    let Some(namespace) = admission::backup_namespace(req) else { return cached };
    let outcome = match tokio::time::timeout(FRESH_READ_TIMEOUT, fresh.backups_in(namespace.clone())).await {
        Ok(Ok(fresh)) => {
            let view = Arc::new(FreshView { base: app.inventory.clone(), namespace: namespace.clone(), fresh });
            Ok(judge(app, req, body, view).await).and_then(|a| if a.failed { Err(a.message) } else { Ok(a) })
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {FRESH_READ_TIMEOUT:?}")),
    };
    let (result, answer) = match outcome {
        Ok(a) if a.allowed => ("overturned", a),
        Ok(a) => ("confirmed", a),
        Err(error) => {
            tracing::warn!(%error, namespace, "could not confirm a denial against the API server; using the cache");
            ("error", cached)
        }
    };
    app.metrics.fresh_reads.get_or_create(&crate::metrics::ResultLabels { result }).inc();
    answer
}

fn record(
    app: &App,
    endpoint: Endpoint,
    req: &admission::Request,
    response: &kube::core::admission::AdmissionResponse,
    answer: Option<&Answer>,
    elapsed: std::time::Duration,
) {
    let rule = answer.map_or("not-ready", Answer::rule_label);
    let result = if response.allowed { "allowed" } else { "denied" };
    app.metrics.decisions.get_or_create(&DecisionLabels { endpoint: endpoint.as_str(), rule, result }).inc();
    app.metrics
        .request_duration
        .get_or_create(&EndpointLabels { endpoint: endpoint.as_str() })
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        uid = %req.uid,
        namespace = req.namespace.as_deref().unwrap_or(""),
        name = %req.name,
        operation = admission::operation_name(req),
        endpoint = endpoint.as_str(),
        dry_run = req.dry_run,
        allowed = response.allowed,
        rule,
        patched = response.patch.is_some(),
        latency_us = elapsed.as_micros() as u64,
        "admission decision"
    );
}
