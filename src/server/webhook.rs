//! The admission router: `POST /validate` and `POST /mutate`, HTTP only; the
//! decision is [`Admission::review`]'s.
//!
//! Bad input is answered with a 4xx and a JSON error body, never a 500 and
//! never a crash: 413 over the body limit, 415 for a body that is not JSON,
//! 400 for JSON that is not an AdmissionReview, 404/405 for other routes.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use crate::admission::Endpoint;
pub use crate::admission::pipeline::{Admission, FRESH_READ_TIMEOUT};
use crate::metrics::{Metrics, StatusLabels};

/// Request bodies above this are refused with 413 (the API server sends at most 3 MiB objects).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How much of a body over the limit is still read, and thrown away, before the 413. A client
/// still sending when the answer comes gets a reset instead of the 413 (HTTP/2: RST_STREAM; HTTP/1.1:
/// a closed connection), so up to this bound the client may finish, and then reads the 413.
pub const MAX_DRAINED_BYTES: usize = 16 * 1024 * 1024;

/// What every handler shares: the admission pipeline.
pub type App = Admission;

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
    match app.review(endpoint, &body, started).await {
        Ok(review) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], review).into_response(),
        Err(e) => error(&app.metrics, StatusCode::BAD_REQUEST, e),
    }
}
