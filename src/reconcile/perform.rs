//! `perform`: the steps of SPEC §7 for one Restore OpsRequest of KubeBlocks 1.0/1.1. Each call
//! takes at most one step from a fresh read, and every step can be repeated.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::cluster::{self, ANNOTATION_OPS_UID, LABEL_INSTANCE};
use super::ops::{ANNOTATION_CLAIMED_BY, Condition, FINALIZER_KUBEBLOCKS, Ops, Transition, write};
use super::{Ctx, Error};
use crate::core::{Operation, judge};

/// The ops-type label key of each OpsRequest API (CONTRACT §12).
pub fn ops_type_label(group: &str) -> &'static str {
    if group == "operations.kubeblocks.io" { "operations.kubeblocks.io/ops-type" } else { "ops.kubeblocks.io/ops-type" }
}

pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let cached = Ops::new(&obj);
    if cached.ops_type() != "Restore" || cached.is_terminal() {
        return Ok(Action::await_change());
    }
    // The cache may be behind: decide on what the API server has now.
    let Some(fresh) = ctx.ops_api(cached.namespace()).get_opt(cached.name()).await? else {
        return Ok(Action::await_change());
    };
    let ops = Ops::new(&fresh);
    if ops.ops_type() != "Restore" || ops.is_terminal() {
        return Ok(Action::await_change());
    }
    if ops.has_finalizer(FINALIZER_KUBEBLOCKS) {
        tracing::debug!(namespace = ops.namespace(), name = ops.name(), "KubeBlocks' finalizer: left to KubeBlocks");
        return Ok(Action::await_change());
    }
    if ops.annotation(ANNOTATION_CLAIMED_BY).is_none() {
        if !ops.phase().is_empty() {
            // A phase pitrguard did not write: someone else runs this OpsRequest.
            return Ok(Action::await_change());
        }
        return claim(&ctx, &ops).await;
    }
    let (name, cluster) = (ops.name().to_string(), ops.cluster_name().to_string());
    match ops.phase() {
        "" => {
            let c = Condition::new(
                "WaitForProgressing",
                true,
                "WaitForProgressing",
                format!("wait for the controller to process the OpsRequest: {name} in Cluster: {cluster}"),
            );
            write(&ctx, &ops, Transition { phase: Some("Pending"), conditions: vec![c], ..Default::default() }).await?;
            checkpoint("pending").await;
            Ok(Action::await_change())
        }
        "Pending" => {
            let t = Transition {
                phase: Some("Creating"),
                conditions: vec![
                    Condition::new(
                        "Validated",
                        true,
                        "ValidateOpsRequestPassed",
                        format!("OpsRequest: {name} is validated"),
                    ),
                    Condition::new(
                        "Backup",
                        true,
                        "RestoreStarted",
                        format!("Start to restore the Cluster: {cluster}"),
                    ),
                ],
                fields: [("startTimestamp", json!(super::ops::now()))].into(),
            };
            write(&ctx, &ops, t).await?;
            checkpoint("creating").await;
            Ok(Action::await_change())
        }
        "Creating" => creating(&ctx, &ops).await,
        "Running" => running(&ctx, &ops).await,
        _ => Ok(Action::await_change()),
    }
}

/// A test hook for crash safety: with `PITRGUARD_TEST_FREEZE_AFTER=<step>` the reconcile stops
/// for good right after that step's write, so a test can SIGKILL the process exactly there.
/// Steps: claim, pending, creating, cluster (created, OpsRequest not yet labelled), labelled, running.
async fn checkpoint(step: &str) {
    static FREEZE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if FREEZE.get_or_init(|| std::env::var("PITRGUARD_TEST_FREEZE_AFTER").ok()).as_deref() == Some(step) {
        tracing::warn!(step, "frozen after this step (PITRGUARD_TEST_FREEZE_AFTER)");
        std::future::pending::<()>().await;
    }
}

/// The first write: only if nobody wrote since our read.
async fn claim(ctx: &Ctx, ops: &Ops) -> Result<Action, Error> {
    let patch = json!({"metadata": {"resourceVersion": ops.resource_version(),
        "annotations": {ANNOTATION_CLAIMED_BY: ctx.identity}}});
    ctx.ops_api(ops.namespace()).patch(ops.name(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    tracing::info!(namespace = ops.namespace(), name = ops.name(), "claimed");
    checkpoint("claim").await;
    Ok(Action::await_change())
}

fn fail_with(message: String) -> Transition {
    Transition {
        phase: Some("Failed"),
        conditions: vec![Condition::new("Failed", false, "OpsRequestFailed", message)],
        ..Default::default()
    }
}

/// When `spec.timeoutSeconds` has run out: Aborted.
async fn timed_out(ctx: &Ctx, ops: &Ops) -> Result<Option<Action>, Error> {
    let Some(deadline) = ops.deadline() else { return Ok(None) };
    if Utc::now() < deadline {
        return Ok(None);
    }
    let c = Condition::new(
        "Aborted",
        true,
        "Aborted",
        format!(
            "OpsRequest: {} is aborted: spec.timeoutSeconds ({}s) ran out in phase {}",
            ops.name(),
            ops.timeout_seconds(),
            ops.phase()
        ),
    );
    write(ctx, ops, Transition { phase: Some("Aborted"), conditions: vec![c], ..Default::default() }).await?;
    Ok(Some(Action::await_change()))
}

/// Wakes up at the deadline, or after `otherwise` without one.
fn until_deadline(ops: &Ops, otherwise: Option<Duration>) -> Action {
    match ops.deadline() {
        Some(d) => {
            let left = (d - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(200);
            Action::requeue(otherwise.map_or(left, |o| o.min(left)))
        }
        None => otherwise.map_or_else(Action::await_change, Action::requeue),
    }
}

fn is_ours(cluster: &DynamicObject, ops: &Ops) -> bool {
    cluster.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_OPS_UID)).map(String::as_str) == Some(ops.uid())
}

async fn creating(ctx: &Ctx, ops: &Ops) -> Result<Action, Error> {
    if let Some(a) = timed_out(ctx, ops).await? {
        return Ok(a);
    }
    let (ns, name) = (ops.namespace(), ops.cluster_name());
    let existing = ctx.cluster_api(ns).get_opt(name).await?;
    let cluster = match existing {
        Some(c) if is_ours(&c, ops) => c,
        Some(_) => {
            let msg = format!(
                "Cluster \"{name}\" already exists in namespace \"{ns}\" and was not created by this OpsRequest \
(it has no annotation {ANNOTATION_OPS_UID}={}); it is left untouched: restore into another spec.clusterName",
                ops.uid()
            );
            write(ctx, ops, fail_with(msg)).await?;
            return Ok(Action::await_change());
        }
        None => {
            // Step 2: the rules again, on live data: the range may have moved since admission.
            if let Some(message) = recheck(ctx, ops).await? {
                write(ctx, ops, fail_with(message)).await?;
                return Ok(Action::await_change());
            }
            let backups = Api::namespaced_with(
                ctx.client.clone(),
                ops.backup_namespace(),
                &ApiResource::from_gvk(&GroupVersionKind::gvk("dataprotection.kubeblocks.io", "v1alpha1", "Backup")),
            );
            let backup: Option<DynamicObject> = backups.get_opt(ops.backup_name()).await?;
            let Some(backup) = backup else {
                let msg =
                    format!("backup \"{}\" not found in namespace \"{}\"", ops.backup_name(), ops.backup_namespace());
                write(ctx, ops, fail_with(msg)).await?;
                return Ok(Action::await_change());
            };
            let backup = serde_json::to_value(&backup).unwrap_or(Value::Null);
            let desired = match cluster::build_cluster(&ops.v, &backup) {
                Ok(c) => c,
                Err(e) => {
                    write(ctx, ops, fail_with(e.to_string())).await?;
                    return Ok(Action::await_change());
                }
            };
            let api_version = desired["apiVersion"].as_str().unwrap_or("apps.kubeblocks.io/v1").to_string();
            let (group, version) = api_version.split_once('/').unwrap_or(("apps.kubeblocks.io", "v1"));
            let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, "Cluster"));
            let obj: DynamicObject = serde_json::from_value(desired).map_err(|e| Error::Other(e.to_string()))?;
            match Api::namespaced_with(ctx.client.clone(), ns, &ar).create(&PostParams::default(), &obj).await {
                Ok(created) => {
                    tracing::info!(namespace = ns, cluster = name, ops = ops.name(), "Cluster created");
                    checkpoint("cluster").await;
                    created
                }
                // Someone created it meanwhile (ours from a previous leader, or foreign): decide on a fresh read.
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Action::requeue(Duration::from_millis(100))),
                Err(e) => return Err(e.into()),
            }
        }
    };
    // Step 4: label the OpsRequest, point it at its Cluster, phase Running.
    let mut owners: Vec<Value> =
        ops.v.pointer("/metadata/ownerReferences").and_then(Value::as_array).cloned().unwrap_or_default();
    let cluster_uid = cluster.metadata.uid.clone().unwrap_or_default();
    owners.retain(|o| o["uid"] != cluster_uid.as_str());
    let cluster_api_version = cluster.types.as_ref().map_or("apps.kubeblocks.io/v1".into(), |t| t.api_version.clone());
    owners.push(json!({"apiVersion": cluster_api_version, "kind": "Cluster", "name": name, "uid": cluster_uid}));
    let patch = json!({"metadata": {"resourceVersion": ops.resource_version(),
        "labels": {LABEL_INSTANCE: name, ops_type_label(&ctx.ops_resource.group): "Restore"},
        "ownerReferences": owners}});
    let labelled = ctx.ops_api(ns).patch(ops.name(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    checkpoint("labelled").await;
    let n = cluster::components_pending(&serde_json::to_value(&cluster).unwrap_or(Value::Null)).unwrap_or(1).max(1);
    let t = Transition {
        phase: Some("Running"),
        conditions: vec![],
        fields: [
            ("clusterGeneration", json!(cluster.metadata.generation.unwrap_or(1))),
            ("progress", json!(format!("0/{n}"))),
        ]
        .into(),
    };
    let running = write(ctx, &Ops::new(&labelled), t).await?;
    // Running has no condition of its own upstream; its Event says what the OpsRequest now waits for.
    let note = format!("Cluster {name} created from backup {}; waiting for it to be Running", ops.backup_name());
    super::ops::event(ctx, &running, false, "ClusterCreated", &note).await;
    checkpoint("running").await;
    Ok(Action::await_change())
}

/// The rules on live data; `Some(message)` when the restore would now be refused. Reads only
/// what the rules need for this restore (its backup, that backup's lineage, ActionSet, Cluster).
async fn recheck(ctx: &Ctx, ops: &Ops) -> Result<Option<String>, Error> {
    let ns = ops.namespace();
    let index = match crate::core::request::decode(&ops.v, ns) {
        Ok(req) => {
            crate::inventory::live::gather(&ctx.client, &req).await.map_err(|e| Error::Other(format!("{e:#}")))?
        }
        Err(_) => crate::core::Index::new(), // the rules report the schema error themselves
    };
    let decision = judge(Operation::Create, Some(&ops.v), None, ns, &index, &ctx.policy);
    Ok((!decision.allowed()).then(|| decision.message()))
}

async fn running(ctx: &Ctx, ops: &Ops) -> Result<Action, Error> {
    let (ns, name) = (ops.namespace(), ops.cluster_name());
    let Some(cluster) = ctx.cluster_api(ns).get_opt(name).await? else {
        let t = Transition {
            phase: Some("Failed"),
            conditions: vec![
                Condition::new("Validated", false, "ClusterNotFound", format!("spec.clusterName: {name} is not found")),
                Condition::new(
                    "Failed",
                    false,
                    "OpsRequestFailed",
                    format!("restore failed: Cluster \"{name}\" was deleted before it was restored"),
                ),
            ],
            ..Default::default()
        };
        write(ctx, ops, t).await?;
        return Ok(Action::await_change());
    };
    if !is_ours(&cluster, ops) {
        let msg = format!("restore failed: Cluster \"{name}\" was replaced by one this OpsRequest did not create");
        write(ctx, ops, fail_with(msg)).await?;
        return Ok(Action::await_change());
    }
    if cluster.metadata.deletion_timestamp.is_some() {
        write(ctx, ops, fail_with(format!("restore failed: Cluster \"{name}\" is being deleted"))).await?;
        return Ok(Action::await_change());
    }
    let uid = cluster.metadata.uid.clone().unwrap_or_default();
    if let Some((restore, why)) = failed_restore(ctx, ns, name, &uid).await? {
        let msg = format!("restore failed: DataProtection Restore \"{restore}\" of Cluster \"{name}\" failed: {why}");
        write(ctx, ops, fail_with(msg)).await?;
        return Ok(Action::await_change());
    }
    let value = serde_json::to_value(&cluster).unwrap_or(Value::Null);
    let total: usize = ops
        .v
        .pointer("/status/progress")
        .and_then(Value::as_str)
        .and_then(|p| p.split_once('/'))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1);
    let done = total.saturating_sub(cluster::components_pending(&value).unwrap_or(0));
    match value.pointer("/status/phase").and_then(Value::as_str) {
        Some("Running") => {
            let c = Condition::new(
                "Succeed",
                true,
                "OpsRequestProcessedSuccessfully",
                format!("Successfully processed the OpsRequest: {} in Cluster: {name}", ops.name()),
            );
            let t = Transition {
                phase: Some("Succeed"),
                conditions: vec![c],
                fields: [("progress", json!(format!("{total}/{total}")))].into(),
            };
            write(ctx, ops, t).await?;
            return Ok(Action::await_change());
        }
        Some("Failed") => {
            let why = value.pointer("/status/message").and_then(Value::as_str).unwrap_or("");
            write(ctx, ops, fail_with(format!("restore failed: Cluster \"{name}\" is Failed {why}").trim().into()))
                .await?;
            return Ok(Action::await_change());
        }
        _ => {}
    }
    if let Some(a) = timed_out(ctx, ops).await? {
        return Ok(a);
    }
    let progress = format!("{done}/{total}");
    if ops.v.pointer("/status/progress").and_then(Value::as_str) != Some(progress.as_str()) {
        write(ctx, ops, Transition { fields: [("progress", json!(progress))].into(), ..Default::default() }).await?;
    }
    Ok(until_deadline(ops, None))
}

use kube::Api;

/// A Failed prepareData/postReady Restore of this Cluster (its name carries the Cluster's uid
/// prefix, so Restores of an older Cluster of the same name do not count): name and reason.
pub async fn failed_restore(
    ctx: &Ctx,
    ns: &str,
    cluster: &str,
    cluster_uid: &str,
) -> Result<Option<(String, String)>, Error> {
    let lp = ListParams::default().labels(&format!("{LABEL_INSTANCE}={cluster}"));
    let uid8: String = cluster_uid.chars().take(8).collect();
    let list = ctx.restore_api(ns).list(&lp).await?;
    for r in list.items {
        let rname = r.metadata.name.clone().unwrap_or_default();
        let stage = rname.contains("-preparedata") || rname.contains("-postready");
        let mine = uid8.is_empty() || rname.contains(&format!("-{uid8}-"));
        if !stage || !mine || r.data.pointer("/status/phase").and_then(Value::as_str) != Some("Failed") {
            continue;
        }
        return Ok(Some((rname, restore_failure(&r.data))));
    }
    Ok(None)
}

/// What a Failed Restore says about itself: a failed condition's message, else a failed action's.
pub fn restore_failure(status_holder: &Value) -> String {
    let conditions = status_holder.pointer("/status/conditions").and_then(Value::as_array);
    let from_conditions = conditions.into_iter().flatten().find_map(|c| {
        let failed = c["status"] == "False" || c["reason"].as_str().is_some_and(|r| r.contains("Fail"));
        c["message"].as_str().filter(|m| failed && !m.is_empty()).map(String::from)
    });
    let actions = status_holder.pointer("/status/actions");
    let from_actions = || {
        let stages = actions.and_then(|a| a.as_object()).into_iter().flat_map(|o| o.values());
        stages.filter_map(Value::as_array).flatten().find_map(|a| {
            (a["status"] == "Failed").then(|| a["message"].as_str().unwrap_or("action failed").to_string())
        })
    };
    from_conditions.or_else(from_actions).unwrap_or_else(|| "its phase is Failed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restores_failure_comes_from_its_condition_or_action() {
        let r = json!({"status": {"phase": "Failed", "conditions": [
            {"type": "ValidationPassed", "status": "True", "reason": "ValidateSuccessfully", "message": "ok"},
            {"type": "PrepareData", "status": "False", "reason": "Failed", "message": "job failed: no space left"}]}});
        assert_eq!(restore_failure(&r), "job failed: no space left");
        let r = json!({"status": {"phase": "Failed", "actions": {"prepareData": [
            {"name": "a", "status": "Failed", "message": "wal missing"}]}}});
        assert_eq!(restore_failure(&r), "wal missing");
        assert_eq!(restore_failure(&json!({"status": {"phase": "Failed"}})), "its phase is Failed");
    }

    #[test]
    fn label_keys_follow_the_api_group() {
        assert_eq!(ops_type_label("operations.kubeblocks.io"), "operations.kubeblocks.io/ops-type");
        assert_eq!(ops_type_label("apps.kubeblocks.io"), "ops.kubeblocks.io/ops-type");
    }
}
