//! The validation rules R1–R13 (SPEC.md §3), warnings W1–W3 (§5), and the
//! mutations M1–M3 (§4) that an object passing every rule gets.
//!
//! Each rule is one function named after its id; [`evaluate`] runs them in
//! order and stops where a later rule would have nothing to stand on (no
//! backup name, no backup, no time).

use std::cell::OnceCell;

use chrono::{SubsecRound, TimeDelta};

use super::decision::{Decision, Plan, Rule, Violation, Warning, WarningId, push_range, range_text};
use super::facts::BackupFacts;
use super::inventory::{BaseRef, Inventory};
use super::mutate::Mutation;
use super::request::RestoreRequest;
use super::time::{
    ACCEPTED_LAYOUTS, PointInTime, format_time, go_duration, is_normal_form, push_go_duration, push_time,
};
use super::window::{BaseEdge, Restorable, Window, base_for, base_required, nearest_restorable, window};

/// The settings that change decisions (`--default-volume-restore-policy`, `--edge-warning`,
/// `--base-edge`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub default_volume_restore_policy: String,
    pub edge_warning: TimeDelta,
    pub base_edge: BaseEdge,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            default_volume_restore_policy: "Parallel".into(),
            edge_warning: TimeDelta::seconds(60),
            base_edge: BaseEdge::Strict,
        }
    }
}

pub const VOLUME_RESTORE_POLICIES: [&str; 2] = ["Serial", "Parallel"];

/// The restorable window of S, worked out on first use.
struct LazyWindow<'a> {
    s: &'a BackupFacts<'a>,
    inv: &'a dyn Inventory,
    edge: BaseEdge,
    window: OnceCell<Window<'a>>,
}

impl<'a> LazyWindow<'a> {
    fn get(&self) -> &Window<'a> {
        self.window.get_or_init(|| window(self.s, self.inv, self.edge))
    }
}

struct Judge<'a> {
    req: &'a RestoreRequest<'a>,
    inv: &'a dyn Inventory,
    violations: Vec<Violation>,
    warnings: Vec<Warning>,
    /// `restorePointInTime`, parsed (R8).
    time: Option<PointInTime>,
}

impl Judge<'_> {
    fn deny(&mut self, rule: Rule, message: String) {
        self.violations.push(Violation { rule, message });
    }

    fn warn(&mut self, id: WarningId, message: String) {
        self.warnings.push(Warning { id, message });
    }

    fn field(&self, name: &str) -> String {
        format!("{}.{name}", self.req.restore_field.path())
    }
}

/// Judges a Restore OpsRequest against the inventory.
pub fn evaluate(req: &RestoreRequest, inv: &dyn Inventory, policy: &Policy) -> Decision {
    let mut j = Judge { req, inv, violations: Vec::new(), warnings: Vec::new(), time: None };
    r2_new_cluster_name(&mut j);
    r12_volume_restore_policy(&mut j);
    let t = r8_point_in_time_parses(&mut j);
    j.time = t;
    let Some(backup_name) = r1_backup_named(&mut j) else {
        return finish(j, None);
    };
    let namespace = req.backup_namespace();
    let Some(s) = r3_backup_exists(&mut j, namespace, &backup_name) else {
        return finish(j, None);
    };
    r4_backup_phase(&mut j, &s);
    r5_cluster_snapshot(&mut j, &s);

    let mut plan = Plan {
        backup_namespace: namespace.to_string(),
        backup_name,
        point_in_time: t.map(|t| t.instant.trunc_subsecs(0)),
        base_backup: None,
        volume_restore_policy: req.volume_restore_policy().unwrap_or(&policy.default_volume_restore_policy).to_string(),
    };
    if !s.is_continuous() {
        r6_no_point_in_time_for_full(&mut j, &s);
        return finish(j, Some(plan));
    }

    // The whole window (every base's completion second) is only worked out for a message.
    let w = LazyWindow { s: &s, inv, edge: policy.base_edge, window: OnceCell::new() };
    let has_time = r7_point_in_time_set(&mut j, &s, &w);
    let ranged = r9_time_range(&mut j, &s);
    if let (Some(t), true, true) = (t, has_time, ranged) {
        if r10_inside_log_range(&mut j, &s, &w, t) && base_required(&s, inv) {
            let base = r11_base_backup(&mut j, &s, &w, t);
            if let Some(base) = &base
                && policy.base_edge == BaseEdge::Strict
            {
                r13_after_base_completion_second(&mut j, &s, &w, t, base);
            }
            plan.base_backup = base.map(|b| String::from(&*b.name));
        }
        w3_edge_of_running_backup(&mut j, &s, t, policy.edge_warning);
    }
    finish(j, Some(plan))
}

/// Adds the mutations and the warnings that explain them to an object that passed.
fn finish(mut j: Judge<'_>, plan: Option<Plan>) -> Decision {
    let mut mutations = Vec::new();
    if j.violations.is_empty() {
        let req = j.req;
        if req.volume_restore_policy().is_none() {
            // M1
            mutations.push(Mutation::VolumeRestorePolicy {
                field: req.restore_field,
                value: plan.as_ref().map(|p| p.volume_restore_policy.clone()).unwrap_or_default(),
                was_empty: req.restore.as_ref().and_then(|r| r.volume_restore_policy.as_ref()).is_some(),
            });
        }
        if let (Some(raw), Some(_), Some(t)) =
            (req.point_in_time(), plan.as_ref().and_then(|p| p.point_in_time), j.time)
            && !is_normal_form(raw)
        {
            let normal = t.normal_form();
            // M2, W1, W2
            j.warn(
                WarningId::W1,
                format!("{}: \"{raw}\" was replaced by its normal form {normal}", j.field("restorePointInTime")),
            );
            if t.has_fraction() {
                j.warn(
                    WarningId::W2,
                    format!(
                        "{}: the fraction of a second in \"{raw}\" was dropped; the restore uses {normal}",
                        j.field("restorePointInTime")
                    ),
                );
            }
            mutations.push(Mutation::PointInTime { field: req.restore_field, value: normal });
        }
        if let Some(base) = plan.as_ref().and_then(|p| p.base_backup.as_ref()) {
            // M3
            let current = req.base_backup_annotation.as_deref();
            if current != Some(base) {
                mutations.push(Mutation::BaseBackup {
                    value: base.clone(),
                    annotations: req.annotations,
                    was_set: current.is_some(),
                });
            }
        }
    }
    // W1/W2 before W3, as kubectl lists them.
    j.warnings.sort_by_key(|w| w.id);
    Decision { skipped: None, violations: j.violations, warnings: j.warnings, mutations, plan }
}

/// R1: `restore` is present and `backupName` is not empty.
fn r1_backup_named(j: &mut Judge<'_>) -> Option<String> {
    let Some(restore) = &j.req.restore else {
        j.deny(Rule::R1, "spec.restore: missing; a Restore OpsRequest needs spec.restore.backupName".into());
        return None;
    };
    match restore.backup_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => Some(name.to_string()),
        None => {
            let field = j.field("backupName");
            j.deny(Rule::R1, format!("{field}: empty; name the Backup to restore from"));
            None
        }
    }
}

/// R2: `spec.clusterName` (0.9 also `clusterRef`) names a Cluster that does not exist yet.
fn r2_new_cluster_name(j: &mut Judge<'_>) {
    let req = j.req;
    match req.cluster_name.as_deref().filter(|n| !n.is_empty()) {
        None => j.deny(Rule::R2, "spec.clusterName: empty; name the new cluster that the restore creates".into()),
        Some(name) if j.inv.cluster_exists(&req.namespace, name) => j.deny(
            Rule::R2,
            format!(
                "spec.clusterName: cluster \"{name}\" already exists in namespace \"{}\"; a restore creates a new \
                 cluster, so choose a name that is not taken",
                req.namespace
            ),
        ),
        Some(_) => {}
    }
}

/// R3: the source backup S exists.
fn r3_backup_exists<'a>(j: &mut Judge<'a>, namespace: &str, name: &str) -> Option<BackupFacts<'a>> {
    let found = j.inv.backup(namespace, name);
    if found.is_none() {
        let field = j.field("backupName");
        j.deny(Rule::R3, format!("{field}: backup \"{name}\" not found in namespace \"{namespace}\""));
    }
    found
}

/// R4: S is not Failed or Deleting; a backup that is not Continuous is Completed.
fn r4_backup_phase(j: &mut Judge<'_>, s: &BackupFacts) {
    let phase = s.phase.as_deref().unwrap_or("");
    let shown = if phase.is_empty() { "<none>" } else { phase };
    if matches!(phase, "Failed" | "Deleting") {
        let field = j.field("backupName");
        j.deny(
            Rule::R4,
            format!(
                "{field}: backup \"{}\" is {shown}; restore from a Completed backup or a Running continuous backup",
                s.name
            ),
        );
    } else if !s.is_continuous() && phase != "Completed" {
        let field = j.field("backupName");
        j.deny(
            Rule::R4,
            format!(
                "{field}: {} backup \"{}\" is {shown}, not Completed; only a Completed backup can be restored",
                s.backup_type.as_str(),
                s.name
            ),
        );
    }
}

/// R5: S carries the cluster snapshot that the new cluster is built from.
fn r5_cluster_snapshot(j: &mut Judge<'_>, s: &BackupFacts) {
    if !s.has_cluster_snapshot {
        let field = j.field("backupName");
        j.deny(
            Rule::R5,
            format!(
                "{field}: backup \"{}\" has no annotation kubeblocks.io/cluster-snapshot, which the restore builds the \
                 new cluster from; use a backup taken by KubeBlocks",
                s.name
            ),
        );
    }
}

/// R6: a backup that is not Continuous takes no `restorePointInTime`.
fn r6_no_point_in_time_for_full(j: &mut Judge<'_>, s: &BackupFacts) {
    if j.req.point_in_time().is_none() {
        return;
    }
    let continuous = j.inv.continuous_like(&s.namespace, &s.candidate_match());
    let alternatives = if continuous.is_empty() {
        "there is no continuous backup of the same cluster".to_string()
    } else {
        format!("continuous backups of the same cluster: {}", quoted(&continuous))
    };
    let field = j.field("restorePointInTime");
    j.deny(
        Rule::R6,
        format!(
            "{field}: backup \"{}\" is a {} backup, and a point in time needs a Continuous backup; remove \
             restorePointInTime or restore from a continuous backup ({alternatives})",
            s.name,
            s.backup_type.as_str()
        ),
    );
}

/// R7: a Continuous backup needs `restorePointInTime`.
fn r7_point_in_time_set(j: &mut Judge<'_>, s: &BackupFacts, w: &LazyWindow<'_>) -> bool {
    if j.req.point_in_time().is_some() {
        return true;
    }
    let field = j.field("restorePointInTime");
    j.deny(
        Rule::R7,
        format!(
            "{field}: empty; restoring from continuous backup \"{}\" needs a point in time ({})",
            s.name,
            restorable_text(w.get())
        ),
    );
    false
}

/// R8: `restorePointInTime` parses.
fn r8_point_in_time_parses(j: &mut Judge<'_>) -> Option<PointInTime> {
    let raw = j.req.point_in_time()?;
    let parsed = PointInTime::parse(raw);
    if parsed.is_none() {
        let field = j.field("restorePointInTime");
        j.deny(Rule::R8, format!("{field}: \"{raw}\" is not a time; use {ACCEPTED_LAYOUTS}"));
    }
    parsed
}

/// R9: S has a start and an end, in order.
fn r9_time_range(j: &mut Judge<'_>, s: &BackupFacts) -> bool {
    let problem = match (s.start, s.end) {
        (Some(a), Some(b)) if a <= b => return true,
        (Some(a), Some(b)) => format!("its start {} is after its end {}", format_time(a), format_time(b)),
        (None, _) => "it has no start time (status.timeRange.start or status.startTimestamp)".to_string(),
        (_, None) => "it has no end time yet (status.timeRange.end or status.completionTimestamp)".to_string(),
    };
    let field = j.field("backupName");
    j.deny(
        Rule::R9,
        format!(
            "{field}: continuous backup \"{}\" has no usable log range: {problem}; wait until it has archived logs",
            s.name
        ),
    );
    false
}

/// R10: `start(S) <= T <= end(S)`.
fn r10_inside_log_range(j: &mut Judge<'_>, s: &BackupFacts, w: &LazyWindow<'_>, t: PointInTime) -> bool {
    let (Some(start), Some(end)) = (s.start, s.end) else {
        return false;
    };
    let (distance, side) = if t.instant < start {
        (start - t.instant, "before the start")
    } else if t.instant > end {
        (t.instant - end, "after the end")
    } else {
        return true;
    };
    // Written piece by piece into one buffer: this is the denial a wrong time gets, the one
    // answered most often (benches/webhook_load.rs sends it).
    let mut m = String::with_capacity(320);
    m.push_str(j.req.restore_field.path());
    m.push_str(".restorePointInTime: ");
    t.push_display(&mut m);
    m.push_str(" is ");
    push_go_duration(&mut m, distance);
    m.push(' ');
    m.push_str(side);
    m.push_str(" of continuous backup \"");
    m.push_str(&s.name);
    m.push_str("\" (");
    push_range(&mut m, start, end);
    m.push_str("); ");
    push_restorable(&mut m, w.get());
    j.deny(Rule::R10, m);
    false
}

/// R11: a base backup completed inside the log range, at or before T. Returns M3's pick, P(T).
fn r11_base_backup<'a>(
    j: &mut Judge<'a>,
    s: &BackupFacts<'_>,
    w: &LazyWindow<'_>,
    t: PointInTime,
) -> Option<BaseRef<'a>> {
    if let Some(base) = base_for(s, j.inv, t.instant) {
        return Some(base);
    }
    let w = w.get();
    let (start, end) = w.log_range?;
    let field = j.field("restorePointInTime");
    let why = match &w.first_base {
        Some(first) => format!(
            "{} is {} before the first full backup that completed inside the log range (\"{}\", at {}); {}",
            t.display(),
            go_duration(first.end - t.instant),
            first.name,
            format_time(first.end),
            restorable_text(w)
        ),
        None => format!(
            "no full backup completed inside the log range of continuous backup \"{}\" ({}), so no point can be \
             restored yet; take a full backup of the cluster first",
            s.name,
            range_text(start, end)
        ),
    };
    j.deny(Rule::R11, format!("{field}: {why}"));
    None
}

/// R13: T is not inside the completion second of its base P(T), `end(P(T)) < T`.
fn r13_after_base_completion_second(
    j: &mut Judge<'_>,
    s: &BackupFacts,
    w: &LazyWindow<'_>,
    t: PointInTime,
    base: &BaseRef<'_>,
) {
    if base.end < t.instant.trunc_subsecs(0) {
        return;
    }
    let w = w.get();
    let at = |(time, base): Restorable| match base {
        Some(b) => format!("{} (from base backup \"{}\")", format_time(time), b.name),
        None => format_time(time),
    };
    let offer = match nearest_restorable(s, j.inv, w, t.instant) {
        (Some(earlier), Some(later)) => format!("nearest restorable times: {} or {}", at(earlier), at(later)),
        (Some(earlier), None) => {
            format!("nearest restorable time: {} (the log range ends before any later one)", at(earlier))
        }
        (None, Some(later)) => format!(
            "nearest restorable time: {} (\"{}\" is the first full backup inside the log range)",
            at(later),
            base.name
        ),
        (None, None) => restorable_text(w),
    };
    let field = j.field("restorePointInTime");
    j.deny(
        Rule::R13,
        format!(
            "{field}: {} falls in the second in which base backup \"{}\" completed ({}); backup times are stored \
             rounded down to the second, so the backup can become consistent later within that second, and the \
             database then refuses the restore or returns changes made after {}; {offer}",
            t.display(),
            base.name,
            format_time(base.end),
            t.display(),
        ),
    );
}

/// W3: T is within the edge of a continuous backup that is still archiving.
fn w3_edge_of_running_backup(j: &mut Judge<'_>, s: &BackupFacts, t: PointInTime, edge: TimeDelta) {
    let Some(end) = s.end else { return };
    if s.phase.as_deref() != Some("Running") || t.instant > end || end - t.instant > edge {
        return;
    }
    let field = j.field("restorePointInTime");
    j.warn(
        WarningId::W3,
        format!(
            "{field}: {} is {} before the end of continuous backup \"{}\", which is still Running: the last logs \
             may not be archived yet",
            t.display(),
            go_duration(end - t.instant),
            s.name
        ),
    );
}

/// R12: `volumeRestorePolicy`, when set, is Serial or Parallel.
fn r12_volume_restore_policy(j: &mut Judge<'_>) {
    if let Some(p) = j.req.volume_restore_policy()
        && !VOLUME_RESTORE_POLICIES.contains(&p)
    {
        let field = j.field("volumeRestorePolicy");
        j.deny(Rule::R12, format!("{field}: \"{p}\" is not a policy; use Serial or Parallel"));
    }
}

/// How many excluded seconds a message lists before it counts the rest.
const EXCLUDED_SHOWN: usize = 3;

fn restorable_text(w: &Window<'_>) -> String {
    let mut text = String::with_capacity(128);
    push_restorable(&mut text, w);
    text
}

/// [`restorable_text`] appended to `text`.
fn push_restorable(text: &mut String, w: &Window<'_>) {
    match (w.restorable, &w.first_base) {
        (Some((a, b)), _) => {
            text.push_str("restorable window: ");
            push_range(text, a, b);
            if !w.excluded.is_empty() {
                let what = if w.excluded.len() == 1 { "second of a base backup" } else { "seconds of base backups" };
                text.push_str(", except the completion ");
                text.push_str(what);
                text.push_str(": ");
                for (i, e) in w.excluded.iter().take(EXCLUDED_SHOWN).enumerate() {
                    if i > 0 {
                        text.push_str(", ");
                    }
                    push_time(text, e.end);
                }
                if w.excluded.len() > EXCLUDED_SHOWN {
                    text.push_str(&format!(" and {} more", w.excluded.len() - EXCLUDED_SHOWN));
                }
            }
        }
        (None, Some(first)) => text.push_str(&format!(
            "restorable window: none, base backups completed in every second from the first one inside the log range \
             (\"{}\", at {}) to its end",
            first.name,
            format_time(first.end)
        )),
        (None, None) if w.log_range.is_some() => {
            text.push_str("restorable window: none, no full backup completed inside the log range")
        }
        (None, None) => text.push_str("restorable window: none, the backup has no log range yet"),
    }
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
}
