//! An OpsRequest as the reconciler reads and writes it: phase, conditions as upstream writes
//! them, status patches with a resourceVersion precondition, and an Event per transition.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use serde_json::{Value, json};

use super::{Ctx, Error};
use crate::core::time::{format_time, parse_status_time};

pub const ANNOTATION_CLAIMED_BY: &str = "pitrguard.io/claimed-by";
pub const FINALIZER_KUBEBLOCKS: &str = "opsrequest.kubeblocks.io/finalizer";
pub const TERMINAL: [&str; 4] = ["Succeed", "Failed", "Aborted", "Cancelled"];
const PHASES: [&str; 9] =
    ["", "Pending", "Creating", "Running", "Succeed", "Failed", "Aborted", "Cancelled", "Cancelling"];

/// The fresh JSON of one OpsRequest.
#[derive(Debug, Clone)]
pub struct Ops {
    pub v: Value,
}

impl Ops {
    pub fn new(o: &DynamicObject) -> Self {
        Self { v: serde_json::to_value(o).unwrap_or(Value::Null) }
    }

    fn s(&self, pointer: &str) -> &str {
        self.v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.s("/metadata/name")
    }

    pub fn namespace(&self) -> &str {
        self.s("/metadata/namespace")
    }

    pub fn uid(&self) -> &str {
        self.s("/metadata/uid")
    }

    pub fn resource_version(&self) -> &str {
        self.s("/metadata/resourceVersion")
    }

    pub fn phase(&self) -> &str {
        self.s("/status/phase")
    }

    pub fn ops_type(&self) -> &str {
        self.s("/spec/type")
    }

    pub fn cluster_name(&self) -> &str {
        let n = self.s("/spec/clusterName");
        if n.is_empty() { self.s("/spec/clusterRef") } else { n }
    }

    pub fn backup_name(&self) -> &str {
        let n = self.s("/spec/restore/backupName");
        if n.is_empty() { self.s("/spec/restoreSpec/backupName") } else { n }
    }

    pub fn backup_namespace(&self) -> &str {
        let n = self.s("/spec/restore/backupNamespace");
        if n.is_empty() { self.namespace() } else { n }
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.v.pointer("/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str)
    }

    pub fn has_finalizer(&self, f: &str) -> bool {
        self.v
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|fs| fs.iter().any(|x| x.as_str() == Some(f)))
    }

    pub fn is_terminal(&self) -> bool {
        TERMINAL.contains(&self.phase())
    }

    pub fn created(&self) -> Option<DateTime<Utc>> {
        parse_status_time(self.s("/metadata/creationTimestamp"))
    }

    /// When `spec.timeoutSeconds` runs out, counted from `status.startTimestamp`.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        let secs = self.v.pointer("/spec/timeoutSeconds").and_then(Value::as_i64).filter(|s| *s > 0)?;
        let start = parse_status_time(self.s("/status/startTimestamp"))?;
        Some(start + chrono::TimeDelta::seconds(secs))
    }

    pub fn timeout_seconds(&self) -> i64 {
        self.v.pointer("/spec/timeoutSeconds").and_then(Value::as_i64).unwrap_or(0)
    }

    pub fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.s("/apiVersion").into()),
            kind: Some("OpsRequest".into()),
            name: Some(self.name().into()),
            namespace: Some(self.namespace().into()),
            uid: Some(self.uid().into()),
            resource_version: Some(self.resource_version().into()),
            ..Default::default()
        }
    }
}

/// One condition, as upstream's `metav1.Condition`.
#[derive(Debug, Clone)]
pub struct Condition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Condition {
    pub fn new(type_: &'static str, status: bool, reason: &'static str, message: impl Into<String>) -> Self {
        Self { type_, status, reason, message: message.into() }
    }
}

/// A status change: a phase, conditions keyed by type, and other status fields.
#[derive(Debug, Clone, Default)]
pub struct Transition {
    pub phase: Option<&'static str>,
    pub conditions: Vec<Condition>,
    pub fields: BTreeMap<&'static str, Value>,
}

pub fn now() -> String {
    use chrono::SubsecRound;
    format_time(Utc::now().trunc_subsecs(0))
}

/// Writes `t` to the status subresource, only if the OpsRequest is still at the resourceVersion
/// read; then one Event per condition (reason = the condition's reason; Warning when Failed).
pub async fn write(ctx: &Ctx, ops: &Ops, t: Transition) -> Result<Ops, Error> {
    let now = now();
    let mut conditions: Vec<Value> =
        ops.v.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    for c in &t.conditions {
        let status = if c.status { "True" } else { "False" };
        let new = json!({"type": c.type_, "status": status, "reason": c.reason, "message": c.message,
            "lastTransitionTime": now});
        match conditions.iter_mut().find(|x| x["type"] == c.type_) {
            Some(old) => {
                let changed = old["status"] != status;
                let ltt = if changed { json!(now) } else { old["lastTransitionTime"].clone() };
                *old = new;
                old["lastTransitionTime"] = ltt;
            }
            None => conditions.push(new),
        }
    }
    let mut status = serde_json::Map::new();
    if let Some(p) = t.phase {
        status.insert("phase".into(), json!(p));
    }
    if !t.conditions.is_empty() {
        status.insert("conditions".into(), Value::Array(conditions));
    }
    if ops.v.pointer("/status/progress").is_none() {
        status.insert("progress".into(), json!("-/-"));
    }
    for (k, v) in &t.fields {
        status.insert((*k).into(), v.clone());
    }
    if t.phase.is_some_and(|p| TERMINAL.contains(&p)) {
        status.insert("completionTimestamp".into(), json!(now));
    }
    let patch = json!({"metadata": {"resourceVersion": ops.resource_version()}, "status": status});
    let written =
        ctx.ops_api(ops.namespace()).patch_status(ops.name(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    let written = Ops::new(&written);
    let failed = t.phase == Some("Failed");
    for c in &t.conditions {
        let warning = failed || c.type_ == "Aborted" || !c.status;
        event(ctx, &written, warning, c.reason, &c.message).await;
    }
    if let Some(p) = t.phase {
        tracing::info!(namespace = ops.namespace(), name = ops.name(), from = ops.phase(), to = p, "OpsRequest phase");
        observe_latency(ctx, &written, p);
    }
    Ok(written)
}

/// Publishes an Event on the OpsRequest; a failure to publish is logged, never fatal.
pub async fn event(ctx: &Ctx, ops: &Ops, warning: bool, reason: &str, note: &str) {
    let e = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.into(),
        note: Some(truncate(note, 1024).to_string()),
        action: "Restore".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&e, &ops.reference()).await {
        tracing::warn!(%error, reason, "cannot publish an Event");
    }
}

/// At most `max` bytes, cut at a character boundary (an Event's note is limited to 1 kB).
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn observe_latency(ctx: &Ctx, ops: &Ops, phase: &str) {
    let Some(created) = ops.created() else { return };
    let secs = (Utc::now() - created).as_seconds_f64().max(0.0);
    match phase {
        "Running" => ctx.metrics.reconcile_seconds_to_cluster.observe(secs),
        "Succeed" => ctx.metrics.reconcile_seconds_to_succeed.observe(secs),
        _ => {}
    }
}

/// Refreshes the OpsRequests-by-phase gauge from the controller's cache (Restore OpsRequests only).
pub fn count_phases(ctx: &Ctx) {
    let mut counts: BTreeMap<String, i64> = PHASES.iter().map(|p| (p.to_string(), 0)).collect();
    for o in ctx.store.state() {
        if o.data.pointer("/spec/type").and_then(Value::as_str) != Some("Restore") {
            continue;
        }
        let p = o.data.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default();
        *counts.entry(p.to_string()).or_default() += 1;
    }
    let group = ctx.ops_resource.group.clone();
    for (phase, n) in counts {
        let phase = if phase.is_empty() { "none".to_string() } else { phase };
        ctx.metrics
            .reconcile_ops_by_phase
            .get_or_create(&crate::metrics::PhaseLabels { group: group.clone(), phase })
            .set(n);
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn notes_are_cut_to_1kb_at_a_character_boundary() {
        assert_eq!(truncate("abc", 1024), "abc");
        let long = "é".repeat(600);
        let cut = truncate(&long, 1024);
        assert_eq!(cut.len(), 1024);
        assert_eq!(truncate("aé", 2), "a");
    }
}
