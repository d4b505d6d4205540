//! The one admission entry point: AdmissionReview bytes in, AdmissionReview out.
//!
//! ```text
//! parse ─► judge (native core, or the policy module) ─► confirm (live: a denial newer
//!          Backups could overturn is judged again on fresh Backups) ─► respond ─► record
//! ```
//!
//! The HTTP server (`server::webhook`) only reads the body and maps errors to status codes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Answer, Endpoint, Request, ReviewError};
use crate::core::Policy;
use crate::inventory::{FreshBackups, FreshView, SharedInventory, View};
use crate::metrics::{Metrics, ResultLabels};
use crate::policy_module::{PolicyModule, answer as module_answer};

/// Bound on a read-your-writes confirmation; well under the webhook timeoutSeconds (5, manifests/base/webhooks.yaml).
pub const FRESH_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything a decision needs; cheap to clone (every field is shared).
#[derive(Clone)]
pub struct Admission {
    pub inventory: Arc<SharedInventory>,
    pub policy: Arc<Policy>,
    pub metrics: Arc<Metrics>,
    /// Set in live mode: a denial that newer Backups could overturn is
    /// confirmed against the API server first (read-your-writes).
    pub fresh: Option<Arc<dyn FreshBackups>>,
    /// Set with `--policy-module`: the module judges instead of the built-in core.
    pub module: Option<Arc<PolicyModule>>,
}

impl Admission {
    /// Answers one AdmissionReview (`body`) for `endpoint`; `started` is when the request arrived.
    pub async fn review(&self, endpoint: Endpoint, body: &[u8], started: Instant) -> Result<Vec<u8>, ReviewError> {
        let req = super::parse_review(body)?;
        if !self.inventory.is_ready() {
            let why = "pitrguard is not ready yet: its inventory of Backups has not synced; retry in a few seconds";
            let response = super::not_ready(&req, why);
            self.record(endpoint, &req, &response, None, started.elapsed());
            return Ok(super::review_body(&response));
        }
        let cached = self.judge(endpoint, &req, body, self.inventory.clone()).await;
        let answer = self.confirm(endpoint, &req, body, cached).await;
        let response = super::respond(endpoint, &req, &answer);
        self.record(endpoint, &req, &response, Some(&answer), started.elapsed());
        Ok(super::review_body(&response))
    }

    /// The configured judge's answer, reading the inventory through `view`. The
    /// module gets the request as it came (`body`), as Kubewarden passes it on.
    async fn judge(&self, endpoint: Endpoint, req: &Request<'_>, body: &[u8], view: Arc<dyn View>) -> Answer {
        let Some(module) = &self.module else {
            let mut answer = None;
            view.with(&mut |inv| answer = Some(Answer::for_endpoint(&super::decide(req, inv, &self.policy), endpoint)));
            return answer.expect("a view always reads");
        };
        // `body` parsed as an AdmissionReview already; this reads it once more, untyped.
        let request = match serde_json::from_slice::<Value>(body) {
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
    async fn confirm(&self, endpoint: Endpoint, req: &Request<'_>, body: &[u8], cached: Answer) -> Answer {
        let Some(fresh) = &self.fresh else { return cached };
        // Only worth a read when fresher Backups could make the request pass.
        if !cached.may_be_stale() {
            return cached;
        }
        let Some(namespace) = super::backup_namespace(req) else { return cached };
        let outcome = match tokio::time::timeout(FRESH_READ_TIMEOUT, fresh.backups_in(namespace.clone())).await {
            Ok(Ok(fresh)) => {
                let view = Arc::new(FreshView { base: self.inventory.clone(), namespace: namespace.clone(), fresh });
                Ok(self.judge(endpoint, req, body, view).await)
                    .and_then(|a| if a.failed { Err(a.message) } else { Ok(a) })
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
        self.metrics.fresh_reads.get_or_create(&ResultLabels { result }).inc();
        answer
    }

    fn record(
        &self,
        endpoint: Endpoint,
        req: &Request<'_>,
        response: &super::Response<'_>,
        answer: Option<&Answer>,
        elapsed: Duration,
    ) {
        let rule = answer.map_or("not-ready", Answer::rule_label);
        let result = if response.allowed { "allowed" } else { "denied" };
        let m = &self.metrics;
        m.count_decision(endpoint.as_str(), rule, result);
        m.observe_request(endpoint.as_str(), elapsed.as_secs_f64());
        tracing::info!(
            uid = &*req.uid,
            namespace = req.namespace(),
            name = &*req.name,
            operation = super::operation_name(req),
            endpoint = endpoint.as_str(),
            dry_run = req.dry_run,
            allowed = response.allowed,
            rule,
            patched = response.patch.is_some(),
            latency_us = elapsed.as_micros() as u64,
            "admission decision"
        );
    }
}
