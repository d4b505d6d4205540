//! Prometheus metrics (`GET /metrics` on the admin port).

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::core::Rule;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub endpoint: &'static str,
    /// The first broken rule, `none` when allowed, `skipped` when not judged.
    pub rule: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModuleLabels {
    pub sha256: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub mode: &'static str,
    /// success, conflict (someone wrote first) or error.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub group: String,
    pub phase: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50µs .. ~1.6s
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

/// Every metric pitrguard exports.
pub struct Metrics {
    pub decisions: Family<DecisionLabels, Counter>,
    pub request_duration: HistogramFamily<EndpointLabels>,
    pub http_errors: Family<StatusLabels, Counter>,
    pub inventory_objects: Family<KindLabels, Gauge>,
    pub inventory_ready: Gauge,
    pub cert_reloads: Family<ResultLabels, Counter>,
    pub cert_expiry: Gauge,
    /// Seconds since a watch of the live inventory failed, until it delivers again (0 while all work).
    pub inventory_staleness: Gauge<f64, AtomicU64>,
    pub watch_restarts: Counter,
    /// Denials confirmed against the API server before being sent (read-your-writes).
    pub fresh_reads: Family<ResultLabels, Counter>,
    /// The reconciler: reconciles by mode and result.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Restore OpsRequests in the reconciler's cache, by API group and phase.
    pub reconcile_ops_by_phase: Family<PhaseLabels, Gauge>,
    /// 1 while this replica holds the reconciler's lease.
    pub reconcile_leader: Gauge,
    /// Seconds from an OpsRequest's creation (admission) to its Cluster created (phase Running).
    pub reconcile_seconds_to_cluster: Histogram,
    /// Seconds from an OpsRequest's creation (admission) to Succeed.
    pub reconcile_seconds_to_succeed: Histogram,
    /// observe: what was reported, by what.
    pub reconcile_observed: Family<ResultLabels, Counter>,
    /// `--policy-module`: evaluations by outcome (ok, deadline, trap, answer, busy).
    pub module_evaluations: Family<ResultLabels, Counter>,
    /// `--policy-module`: reloads of the file, loaded or refused.
    pub module_reloads: Family<ResultLabels, Counter>,
    /// `--policy-module`: 1 for the sha256 of the module in use.
    pub module_in_use: Family<ModuleLabels, Gauge>,
    per_request: PerRequest,
}

const ENDPOINTS: [&str; 2] = ["validate", "mutate"];
const RESULTS: [&str; 2] = ["allowed", "denied"];
/// `none`, `skipped`, `not-ready`, `judge-failed`, then every rule id.
const RULE_LABELS: usize = 4 + Rule::ALL.len();

fn rule_slot(rule: &str) -> Option<usize> {
    match rule {
        "none" => Some(0),
        "skipped" => Some(1),
        "not-ready" => Some(2),
        "judge-failed" => Some(3),
        id => Rule::from_id(id).map(|r| 4 + r as usize),
    }
}

/// The series every admission request updates, resolved on first use: a request then pays an atomic
/// add, not a hash of its labels under the family's lock. (A clone of a prometheus-client metric is
/// a handle to the same series.)
struct PerRequest {
    decisions: [OnceLock<Counter>; ENDPOINTS.len() * RULE_LABELS * RESULTS.len()],
    durations: [OnceLock<Histogram>; ENDPOINTS.len()],
}

impl Default for PerRequest {
    fn default() -> Self {
        Self { decisions: [const { OnceLock::new() }; _], durations: [const { OnceLock::new() }; _] }
    }
}

fn restore_histogram() -> Histogram {
    // 50ms .. ~27min
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            decisions: Family::default(),
            request_duration: HistogramFamily::new_with_constructor(latency_histogram),
            http_errors: Family::default(),
            inventory_objects: Family::default(),
            inventory_ready: Gauge::default(),
            cert_reloads: Family::default(),
            cert_expiry: Gauge::default(),
            inventory_staleness: Gauge::default(),
            watch_restarts: Counter::default(),
            fresh_reads: Family::default(),
            reconciles: Family::default(),
            reconcile_ops_by_phase: Family::default(),
            reconcile_leader: Gauge::default(),
            reconcile_seconds_to_cluster: restore_histogram(),
            reconcile_seconds_to_succeed: restore_histogram(),
            reconcile_observed: Family::default(),
            module_evaluations: Family::default(),
            module_reloads: Family::default(),
            module_in_use: Family::default(),
            per_request: PerRequest::default(),
        }
    }

    /// Counts one admission decision (`admission_decisions`).
    pub fn count_decision(&self, endpoint: &'static str, rule: &'static str, result: &'static str) {
        let labels = DecisionLabels { endpoint, rule, result };
        let endpoint = ENDPOINTS.iter().position(|e| *e == endpoint);
        let result = RESULTS.iter().position(|r| *r == result);
        match (endpoint, rule_slot(rule), result) {
            (Some(e), Some(r), Some(a)) => self.per_request.decisions[(e * RULE_LABELS + r) * RESULTS.len() + a]
                .get_or_init(|| self.decisions.get_or_create(&labels).clone())
                .inc(),
            _ => self.decisions.get_or_create(&labels).inc(),
        };
    }

    /// Records how long one AdmissionReview took to answer (`admission_request_duration_seconds`).
    pub fn observe_request(&self, endpoint: &'static str, seconds: f64) {
        let labels = EndpointLabels { endpoint };
        match ENDPOINTS.iter().position(|e| *e == endpoint) {
            Some(e) => self.per_request.durations[e]
                .get_or_init(|| self.request_duration.get_or_create(&labels).clone())
                .observe(seconds),
            None => self.request_duration.get_or_create(&labels).observe(seconds),
        }
    }

    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("pitrguard");
        r.register(
            "admission_decisions",
            "Admission decisions by endpoint, first broken rule (none, skipped, not-ready) and result",
            self.decisions.clone(),
        );
        r.register(
            "admission_request_duration_seconds",
            "Time to answer an AdmissionReview",
            self.request_duration.clone(),
        );
        r.register("http_errors", "Requests answered with an HTTP error, by status", self.http_errors.clone());
        r.register("inventory_objects", "Objects in the inventory, by kind", self.inventory_objects.clone());
        r.register("inventory_ready", "1 once the inventory has synced", self.inventory_ready.clone());
        r.register("tls_certificate_reloads", "Serving certificate reloads, by result", self.cert_reloads.clone());
        r.register(
            "tls_certificate_expiry_timestamp_seconds",
            "Expiry (notAfter) of the serving certificate, as a Unix time",
            self.cert_expiry.clone(),
        );
        r.register(
            "inventory_staleness_seconds",
            "Seconds since a watch of the live inventory failed, until it delivers again (a complete re-list or an event): how long changes may be missing from it; 0 while every watch works",
            self.inventory_staleness.clone(),
        );
        r.register(
            "inventory_watch_restarts",
            "Times a watch of the live inventory restarted",
            self.watch_restarts.clone(),
        );
        r.register(
            "fresh_reads",
            "Denials re-checked against the API server before being sent, by outcome",
            self.fresh_reads.clone(),
        );
        r.register("reconciles", "Reconciles of Restore OpsRequests, by mode and result", self.reconciles.clone());
        r.register(
            "reconcile_opsrequests",
            "Restore OpsRequests seen by the reconciler, by API group and phase",
            self.reconcile_ops_by_phase.clone(),
        );
        r.register(
            "reconcile_leader",
            "1 while this replica holds the reconciler's lease",
            self.reconcile_leader.clone(),
        );
        r.register(
            "reconcile_seconds_to_cluster_created",
            "Seconds from an OpsRequest's creation to the creation of its Cluster (perform)",
            self.reconcile_seconds_to_cluster.clone(),
        );
        r.register(
            "reconcile_seconds_to_succeed",
            "Seconds from an OpsRequest's creation to phase Succeed (perform)",
            self.reconcile_seconds_to_succeed.clone(),
        );
        r.register(
            "reconcile_observed",
            "observe: restores reported as started, failed, timed_out or succeeded",
            self.reconcile_observed.clone(),
        );
        r.register(
            "policy_module_evaluations",
            "--policy-module: evaluations by outcome (ok, deadline, trap, answer, busy)",
            self.module_evaluations.clone(),
        );
        r.register(
            "policy_module_reloads",
            "--policy-module: reloads of the module file, loaded or refused (the module in use is kept)",
            self.module_reloads.clone(),
        );
        r.register(
            "policy_module_info",
            "--policy-module: 1 for the sha256 of the module in use",
            self.module_in_use.clone(),
        );
        r
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(m: &Metrics) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry()).unwrap();
        text
    }

    #[test]
    fn a_request_counted_through_a_resolved_handle_is_the_familys_series() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.count_decision("validate", "R10", "denied");
        }
        m.count_decision("mutate", "none", "allowed");
        m.count_decision("validate", "an-unknown-label", "denied");
        m.observe_request("validate", 0.002);
        m.observe_request("validate", 0.004);
        m.observe_request("other", 0.001);
        let text = exposition(&m);
        for line in [
            r#"pitrguard_admission_decisions_total{endpoint="validate",rule="R10",result="denied"} 3"#,
            r#"pitrguard_admission_decisions_total{endpoint="mutate",rule="none",result="allowed"} 1"#,
            r#"pitrguard_admission_decisions_total{endpoint="validate",rule="an-unknown-label",result="denied"} 1"#,
            r#"pitrguard_admission_request_duration_seconds_count{endpoint="validate"} 2"#,
            r#"pitrguard_admission_request_duration_seconds_count{endpoint="other"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        // Only what was counted is exported: no series of a label set never used.
        assert!(!text.contains(r#"rule="R1","#), "{text}");
        let slots = ENDPOINTS.len() * RULE_LABELS * RESULTS.len();
        assert_eq!(m.per_request.decisions.len(), slots);
        assert_eq!(rule_slot("R13"), Some(RULE_LABELS - 1));
    }
}
