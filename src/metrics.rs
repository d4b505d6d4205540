//! Prometheus metrics (`GET /metrics` on the admin port).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
