//! `observe`: never writes an OpsRequest, a Cluster or a Restore. Reports as Events on the
//! OpsRequest what KubeBlocks' own controller does not say: the restore started, a data restore
//! failed (apecloud/kubeblocks#10098: the OpsRequest stays Running), it timed out, it succeeded.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::api::DynamicObject;
use kube::runtime::controller::Action;

use super::ops::{Ops, event};
use super::perform::failed_restore;
use super::{Ctx, Error};

pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ops = Ops::new(&obj);
    if ops.ops_type() != "Restore" {
        return Ok(Action::await_change());
    }
    let first = |what: &str| {
        ctx.reported.lock().unwrap_or_else(|e| e.into_inner()).insert((ops.uid().to_string(), what.to_string()))
    };
    let (phase, cluster) = (ops.phase(), ops.cluster_name());
    if matches!(phase, "Creating" | "Running") && first("started") {
        let note = format!("Restore of Cluster {cluster} from backup {} started (phase {phase})", ops.backup_name());
        event(&ctx, &ops, false, "RestoreStarted", &note).await;
        ctx.metrics.reconcile_observed.get_or_create(&crate::metrics::ResultLabels { result: "started" }).inc();
    }
    if phase == "Succeed" && first("succeeded") {
        event(&ctx, &ops, false, "RestoreSucceeded", &format!("Cluster {cluster} is restored and Running")).await;
        ctx.metrics.reconcile_observed.get_or_create(&crate::metrics::ResultLabels { result: "succeeded" }).inc();
    }
    if ops.is_terminal() {
        return Ok(Action::await_change());
    }
    if let Some(c) = ctx.cluster_api(ops.namespace()).get_opt(cluster).await? {
        let uid = c.metadata.uid.clone().unwrap_or_default();
        if let Some((restore, why)) = failed_restore(&ctx, ops.namespace(), cluster, &uid).await?
            && first(&format!("failed/{restore}"))
        {
            let note = format!(
                "DataProtection Restore \"{restore}\" of Cluster \"{cluster}\" failed: {why}. KubeBlocks keeps this \
OpsRequest {phase} until spec.timeoutSeconds (apecloud/kubeblocks#10098)"
            );
            event(&ctx, &ops, true, "RestoreFailed", &note).await;
            ctx.metrics.reconcile_observed.get_or_create(&crate::metrics::ResultLabels { result: "failed" }).inc();
        }
    }
    match ops.deadline() {
        Some(d) if Utc::now() >= d => {
            if first("timeout") {
                let note = format!("spec.timeoutSeconds ({}s) ran out in phase {phase}", ops.timeout_seconds());
                event(&ctx, &ops, true, "RestoreTimedOut", &note).await;
                ctx.metrics
                    .reconcile_observed
                    .get_or_create(&crate::metrics::ResultLabels { result: "timed_out" })
                    .inc();
            }
            Ok(Action::await_change())
        }
        Some(d) => Ok(Action::requeue((d - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(200))),
        None => Ok(Action::await_change()),
    }
}
