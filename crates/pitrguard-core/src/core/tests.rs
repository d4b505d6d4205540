//! Table-driven tests of every rule, mutation and warning (SPEC.md §3–§5).

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use super::decision::{Rule, WarningId};
use super::facts::{ActionSetFacts, BackupFacts, BackupType, Lineage};
use super::inventory::Index;
use super::mutate::to_patch;
use super::{BaseEdge, Decision, Operation, Policy, judge};

const NS: &str = "demo";

fn at(hms: &str) -> DateTime<Utc> {
    format!("2024-05-07T{hms}Z").parse().unwrap()
}

fn lineage() -> Lineage<'static> {
    Lineage {
        cluster_uid: Some("uid-1".into()),
        instance: Some("pg".into()),
        component: Some("postgresql".into()),
        policy_label: Some("pg-policy".into()),
    }
}

fn mk_backup<'a>(
    name: &'a str,
    ty: BackupType,
    phase: &'a str,
    start: Option<&str>,
    end: Option<&str>,
) -> BackupFacts<'a> {
    BackupFacts {
        namespace: NS.into(),
        name: name.into(),
        backup_type: ty,
        phase: Some(phase.into()),
        start: start.map(at),
        end: end.map(at),
        lineage: lineage(),
        policy_name: Some("pg-policy".into()),
        action_set: None,
        has_cluster_snapshot: true,
    }
}

fn mk_wal<'a>(name: &'a str, action_set: &'a str) -> BackupFacts<'a> {
    BackupFacts {
        action_set: Some(action_set.into()),
        ..mk_backup(name, BackupType::Continuous, "Running", Some("10:07:45"), Some("10:47:14"))
    }
}

/// The examples' story: a WAL archive 10:07:45..10:47:14, full backups before
/// and inside it, one failed, one incremental.
fn inventory() -> Index {
    let mut inv = Index::new();
    inv.apply_backup(mk_wal("wal", "pg-pitr"));
    inv.apply_backup(mk_wal("wal-nobase", "pg-pitr-nobase"));
    inv.apply_action_set(ActionSetFacts { name: "pg-pitr".into(), base_backup_required: true });
    inv.apply_action_set(ActionSetFacts { name: "pg-pitr-nobase".into(), base_backup_required: false });
    inv.apply_backup(mk_backup("full-early", BackupType::Full, "Completed", Some("09:55:02"), Some("10:01:37")));
    inv.apply_backup(mk_backup("full-b", BackupType::Full, "Completed", Some("10:18:40"), Some("10:20:03")));
    inv.apply_backup(mk_backup("full-c", BackupType::Full, "Completed", Some("10:34:10"), Some("10:36:30")));
    inv.apply_backup(mk_backup("full-failed", BackupType::Full, "Failed", Some("10:42:00"), None));
    inv.apply_backup(mk_backup("incr-d", BackupType::Incremental, "Completed", Some("10:39:00"), Some("10:40:00")));
    inv.apply_cluster(NS, "pg");
    inv
}

fn ops(restore: Value) -> Value {
    json!({
        "apiVersion": "operations.kubeblocks.io/v1alpha1",
        "kind": "OpsRequest",
        "metadata": {"name": "r", "namespace": NS},
        "spec": {"type": "Restore", "clusterName": "pg-new", "restore": restore}
    })
}

fn pitr(backup: &str, t: &str) -> Value {
    ops(json!({"backupName": backup, "restorePointInTime": t, "volumeRestorePolicy": "Parallel"}))
}

fn decide_with(object: &Value, inv: &Index) -> Decision {
    judge(Operation::Create, Some(object), None, NS, inv, &Policy::default())
}

fn decide(object: &Value) -> Decision {
    decide_with(object, &inventory())
}

/// KubeBlocks' own reading of the base edge (`--base-edge inclusive`): R13 off.
fn decide_inclusive(object: &Value, inv: &Index) -> Decision {
    let policy = Policy { base_edge: BaseEdge::Inclusive, ..Policy::default() };
    judge(Operation::Create, Some(object), None, NS, inv, &policy)
}

fn assert_denied(d: &Decision, rule: Rule, fragments: &[&str]) {
    assert!(d.rules().contains(&rule), "expected {rule}, got {:?}", d.violations);
    let v = d.violations.iter().find(|v| v.rule == rule).unwrap();
    for f in fragments {
        assert!(v.message.contains(f), "{rule} message {:?} lacks {f:?}", v.message);
    }
    assert!(d.mutations.is_empty(), "a denied object gets no patch");
}

#[test]
fn r1_restore_and_backup_name_are_required() {
    let mut no_restore = ops(json!(null));
    no_restore["spec"].as_object_mut().unwrap().remove("restore");
    assert_denied(&decide(&no_restore), Rule::R1, &["spec.restore: missing"]);
    assert_denied(&decide(&ops(json!({"backupName": ""}))), Rule::R1, &["spec.restore.backupName: empty"]);
    assert_denied(&decide(&ops(json!({}))), Rule::R1, &["spec.restore.backupName"]);
}

#[test]
fn r2_cluster_name_is_new_and_not_empty() {
    let mut taken = pitr("wal", "2024-05-07T10:30:00Z");
    taken["spec"]["clusterName"] = json!("pg");
    assert_denied(&decide(&taken), Rule::R2, &["spec.clusterName", "\"pg\" already exists in namespace \"demo\""]);
    let mut empty = pitr("wal", "2024-05-07T10:30:00Z");
    empty["spec"]["clusterName"] = json!("");
    assert_denied(&decide(&empty), Rule::R2, &["spec.clusterName: empty"]);
    // The same name in another namespace is free.
    let mut elsewhere = taken.clone();
    elsewhere["metadata"]["namespace"] = json!("other");
    elsewhere["spec"]["restore"]["backupNamespace"] = json!(NS);
    assert!(decide(&elsewhere).allowed(), "{:?}", decide(&elsewhere).violations);
}

#[test]
fn r2_reads_cluster_ref_in_0_9() {
    let mut o = pitr("wal", "2024-05-07T10:30:00Z");
    o["apiVersion"] = json!("apps.kubeblocks.io/v1alpha1");
    o["spec"].as_object_mut().unwrap().remove("clusterName");
    o["spec"]["clusterRef"] = json!("pg");
    assert_denied(&decide(&o), Rule::R2, &["\"pg\" already exists"]);
}

#[test]
fn r3_backup_exists_in_the_backup_namespace() {
    assert_denied(
        &decide(&pitr("wall", "2024-05-07T10:30:00Z")),
        Rule::R3,
        &["backup \"wall\" not found in namespace \"demo\""],
    );
    let mut other_ns = pitr("wal", "2024-05-07T10:30:00Z");
    other_ns["spec"]["restore"]["backupNamespace"] = json!("backups");
    assert_denied(&decide(&other_ns), Rule::R3, &["namespace \"backups\""]);
}

#[test]
fn backups_in_another_namespace_are_found_through_backup_namespace() {
    let mut inv = Index::new();
    let mut s = mk_wal("wal", "pg-pitr");
    s.namespace = "backups".into();
    let mut base = mk_backup("full", BackupType::Full, "Completed", Some("10:10:00"), Some("10:12:00"));
    base.namespace = "backups".into();
    inv.apply_backup(s);
    inv.apply_backup(base);
    let mut o = pitr("wal", "2024-05-07T10:30:00Z");
    o["spec"]["restore"]["backupNamespace"] = json!("backups");
    let d = decide_with(&o, &inv);
    assert!(d.allowed(), "{:?}", d.violations);
    assert_eq!(d.plan.unwrap().base_backup.as_deref(), Some("full"));
}

#[test]
fn r4_backup_phase() {
    let cases = [
        ("Continuous", "Failed", true),
        ("Continuous", "Deleting", true),
        ("Continuous", "Running", false),
        ("Continuous", "Completed", false),
        ("Full", "Running", true),
        ("Full", "New", true),
        ("Full", "Completed", false),
        ("Incremental", "Failed", true),
    ];
    for (ty, phase, denied) in cases {
        let mut inv = inventory();
        let mut b = mk_backup("b", BackupType::from_label(Some(ty)), phase, Some("10:10:00"), Some("10:45:00"));
        b.action_set = Some("pg-pitr-nobase".into());
        inv.apply_backup(b);
        let object =
            if ty == "Continuous" { pitr("b", "2024-05-07T10:30:00Z") } else { ops(json!({"backupName": "b"})) };
        let d = decide_with(&object, &inv);
        assert_eq!(d.rules().contains(&Rule::R4), denied, "{ty} {phase}: {:?}", d.violations);
        if denied {
            assert_denied(&d, Rule::R4, &[phase]);
        }
    }
}

#[test]
fn r5_needs_the_cluster_snapshot() {
    let mut inv = inventory();
    let mut b = mk_backup("bare", BackupType::Full, "Completed", Some("10:10:00"), Some("10:12:00"));
    b.has_cluster_snapshot = false;
    inv.apply_backup(b);
    assert_denied(
        &decide_with(&ops(json!({"backupName": "bare"})), &inv),
        Rule::R5,
        &["kubeblocks.io/cluster-snapshot"],
    );
}

#[test]
fn r6_no_point_in_time_for_a_full_backup() {
    let d = decide(&pitr("full-c", "2024-05-07T10:40:00Z"));
    assert_denied(&d, Rule::R6, &["\"full-c\" is a Full backup", "\"wal\", \"wal-nobase\""]);
    let mut lonely = Index::new();
    lonely.apply_backup(mk_backup("full-c", BackupType::Full, "Completed", Some("10:34:10"), Some("10:36:30")));
    assert_denied(&decide_with(&pitr("full-c", "2024-05-07T10:40:00Z"), &lonely), Rule::R6, &["no continuous backup"]);
    assert!(decide(&ops(json!({"backupName": "full-c"}))).allowed());
}

#[test]
fn r7_continuous_needs_a_point_in_time() {
    assert_denied(
        &decide(&ops(json!({"backupName": "wal"}))),
        Rule::R7,
        &[
            "restorePointInTime: empty",
            "restorable window: 2024-05-07T10:20:04Z .. 2024-05-07T10:47:14Z, except the completion seconds of base \
             backups: 2024-05-07T10:36:30Z, 2024-05-07T10:40:00Z",
        ],
    );
    assert_denied(&decide(&pitr("wal", "")), Rule::R7, &["empty"]);
}

#[test]
fn r8_point_in_time_parses() {
    for bad in ["yesterday", "2024-05-07 10:30:00", "07/05/2024 10:30", "2024-05-07T10:30:00"] {
        assert_denied(&decide(&pitr("wal", bad)), Rule::R8, &[bad, "RFC 3339", "May 07,2024 18:07:45 UTC+0800"]);
    }
}

#[test]
fn r9_needs_an_ordered_log_range() {
    let mut inv = inventory();
    inv.apply_backup(mk_backup("no-end", BackupType::Continuous, "Running", Some("10:07:45"), None));
    inv.apply_backup(mk_backup("no-start", BackupType::Continuous, "Running", None, Some("10:07:45")));
    inv.apply_backup(mk_backup("reversed", BackupType::Continuous, "Running", Some("10:47:14"), Some("10:07:45")));
    for (name, fragment) in [("no-end", "no end time"), ("no-start", "no start time"), ("reversed", "is after its end")]
    {
        assert_denied(&decide_with(&pitr(name, "2024-05-07T10:30:00Z"), &inv), Rule::R9, &[fragment]);
    }
}

#[test]
fn r10_both_ends_are_inclusive() {
    // wal-nobase needs no base backup, so only R10 decides.
    let cases = [
        ("2024-05-07T10:07:45Z", None),
        ("2024-05-07T10:07:44Z", Some("1s before the start")),
        ("2024-05-07T10:47:14Z", None),
        ("2024-05-07T10:47:15Z", Some("1s after the end")),
        ("2024-05-07T10:47:14.5Z", Some("500ms after the end")),
        ("2024-05-07T18:47:14+08:00", None),
        ("2024-05-07T18:47:15+08:00", Some("1s after the end")),
        ("May 07,2024 18:07:44 UTC+0800", Some("1s before the start")),
    ];
    for (t, denial) in cases {
        let d = decide(&pitr("wal-nobase", t));
        match denial {
            None => assert!(d.allowed(), "{t}: {:?}", d.violations),
            Some(f) => assert_denied(&d, Rule::R10, &[f, "(2024-05-07T10:07:45Z .. 2024-05-07T10:47:14Z)"]),
        }
    }
}

#[test]
fn r10_message_matches_the_spec_example() {
    let mut inv = inventory();
    inv.apply_backup(mk_wal("pg-cluster-archive-wal", "pg-pitr"));
    let object = pitr("pg-cluster-archive-wal", "2024-05-07T11:00:00Z");
    // The SPEC's example predates R13: it is KubeBlocks' inclusive reading.
    assert_eq!(
        decide_inclusive(&object, &inv).message(),
        "spec.restore.restorePointInTime: 2024-05-07T11:00:00Z is 12m46s after the end of continuous backup \
         \"pg-cluster-archive-wal\" (2024-05-07T10:07:45Z .. 2024-05-07T10:47:14Z); restorable window: \
         2024-05-07T10:20:03Z .. 2024-05-07T10:47:14Z"
    );
    assert_eq!(
        decide_with(&object, &inv).message(),
        "spec.restore.restorePointInTime: 2024-05-07T11:00:00Z is 12m46s after the end of continuous backup \
         \"pg-cluster-archive-wal\" (2024-05-07T10:07:45Z .. 2024-05-07T10:47:14Z); restorable window: \
         2024-05-07T10:20:04Z .. 2024-05-07T10:47:14Z, except the completion seconds of base backups: \
         2024-05-07T10:36:30Z, 2024-05-07T10:40:00Z"
    );
}

#[test]
fn r11_a_base_backup_completed_inside_the_range_before_t() {
    let d = decide_inclusive(&pitr("wal", "2024-05-07T10:20:03Z"), &inventory());
    assert!(d.allowed(), "{:?}", d.violations);
    assert_eq!(d.plan.unwrap().base_backup.as_deref(), Some("full-b"));
    let d = decide(&pitr("wal", "2024-05-07T10:20:04Z"));
    assert!(d.allowed(), "{:?}", d.violations);
    assert_eq!(d.plan.unwrap().base_backup.as_deref(), Some("full-b"));
    assert_denied(
        &decide(&pitr("wal", "2024-05-07T10:20:02Z")),
        Rule::R11,
        &[
            "1s before the first full backup that completed inside the log range (\"full-b\", at 2024-05-07T10:20:03Z)",
            "restorable window: 2024-05-07T10:20:04Z .. 2024-05-07T10:47:14Z",
        ],
    );
    // A full backup that ended before the log range does not count.
    assert_denied(&decide(&pitr("wal", "2024-05-07T10:10:00Z")), Rule::R11, &["before the first full backup"]);
}

#[test]
fn r11_without_any_base_backup_says_so() {
    let mut inv = Index::new();
    inv.apply_backup(mk_wal("wal", "pg-pitr"));
    inv.apply_backup(mk_backup("full-early", BackupType::Full, "Completed", Some("09:55:02"), Some("10:01:37")));
    assert_denied(
        &decide_with(&pitr("wal", "2024-05-07T10:30:00Z"), &inv),
        Rule::R11,
        &["no full backup completed inside the log range", "take a full backup"],
    );
}

#[test]
fn r11_is_waived_when_the_action_set_needs_no_base() {
    let d = decide(&pitr("wal-nobase", "2024-05-07T10:08:00Z"));
    assert!(d.allowed(), "{:?}", d.violations);
    assert_eq!(d.plan.as_ref().unwrap().base_backup, None);
    assert!(d.mutations.iter().all(|m| m.id() != "M3"));
}

#[test]
fn an_unknown_action_set_requires_a_base() {
    let mut inv = inventory();
    inv.apply_backup(mk_wal("wal-unknown-as", "not-installed"));
    assert_denied(&decide_with(&pitr("wal-unknown-as", "2024-05-07T10:08:00Z"), &inv), Rule::R11, &[]);
}

#[test]
fn m3_picks_the_latest_base_at_or_before_t() {
    // Under the inclusive edge a base is picked at its own end; under strict from the next second.
    let cases = [
        ("2024-05-07T10:30:00Z", "full-b"),
        ("2024-05-07T10:36:30Z", "full-c"),
        ("2024-05-07T10:39:59Z", "full-c"),
        ("2024-05-07T10:40:00Z", "incr-d"), // an Incremental backup is a base too
        ("2024-05-07T10:47:14Z", "incr-d"), // the Failed full at 10:42 is not
    ];
    let strict = [("2024-05-07T10:36:31Z", "full-c"), ("2024-05-07T10:40:01Z", "incr-d")];
    let inclusive = |o: &Value| decide_inclusive(o, &inventory());
    for (t, base, decide) in cases
        .iter()
        .map(|(t, b)| (t, b, &inclusive as &dyn Fn(&Value) -> Decision))
        .chain(strict.iter().map(|(t, b)| (t, b, &decide as &dyn Fn(&Value) -> Decision)))
    {
        let d = decide(&pitr("wal", t));
        assert_eq!(d.plan.as_ref().unwrap().base_backup.as_deref(), Some(*base), "{t}");
        let patch = serde_json::to_value(to_patch(&d.mutations)).unwrap();
        assert_eq!(
            patch,
            json!([{"op": "add", "path": "/metadata/annotations", "value": {"pitrguard.io/base-backup": *base}}]),
            "{t}"
        );
    }
}

#[test]
fn m3_ties_go_to_the_smallest_name() {
    let mut inv = inventory();
    inv.apply_backup(mk_backup("full-c2", BackupType::Full, "Completed", Some("10:34:00"), Some("10:36:30")));
    inv.apply_backup(mk_backup("full-a2", BackupType::Full, "Completed", Some("10:34:00"), Some("10:36:30")));
    let d = decide_with(&pitr("wal", "2024-05-07T10:37:00Z"), &inv);
    assert_eq!(d.plan.unwrap().base_backup.as_deref(), Some("full-a2"));
}

#[test]
fn candidates_match_on_the_labels_s_has() {
    // S with only the instance label matches bases of any uid/component of that instance.
    let mut inv = Index::new();
    let mut s = mk_wal("wal", "pg-pitr");
    s.lineage = Lineage { instance: Some("pg".into()), ..Lineage::default() };
    inv.apply_backup(s);
    let mut other_uid = mk_backup("full-x", BackupType::Full, "Completed", Some("10:10:00"), Some("10:12:00"));
    other_uid.lineage.cluster_uid = Some("uid-2".into());
    inv.apply_backup(other_uid);
    let mut other_instance = mk_backup("full-y", BackupType::Full, "Completed", Some("10:10:00"), Some("10:13:00"));
    other_instance.lineage.instance = Some("mysql".into());
    inv.apply_backup(other_instance);
    let d = decide_with(&pitr("wal", "2024-05-07T10:30:00Z"), &inv);
    assert_eq!(d.plan.unwrap().base_backup.as_deref(), Some("full-x"));

    // S with all three labels does not match a base of another component.
    let mut inv = Index::new();
    inv.apply_backup(mk_wal("wal", "pg-pitr"));
    let mut other_component = mk_backup("full-z", BackupType::Full, "Completed", Some("10:10:00"), Some("10:12:00"));
    other_component.lineage.component = Some("pgbouncer".into());
    inv.apply_backup(other_component);
    assert_denied(&decide_with(&pitr("wal", "2024-05-07T10:30:00Z"), &inv), Rule::R11, &[]);
}

#[test]
fn candidates_fall_back_to_the_backup_policy_label() {
    let mut inv = Index::new();
    let mut s = mk_wal("wal", "pg-pitr");
    s.lineage = Lineage::default();
    s.policy_name = Some("pg-policy".into());
    inv.apply_backup(s);
    let mut same_policy = mk_backup("full-p", BackupType::Full, "Completed", Some("10:10:00"), Some("10:12:00"));
    same_policy.lineage = Lineage { policy_label: Some("pg-policy".into()), ..Lineage::default() };
    let mut other_policy = mk_backup("full-q", BackupType::Full, "Completed", Some("10:10:00"), Some("10:14:00"));
    other_policy.lineage = Lineage { policy_label: Some("other".into()), ..lineage() };
    inv.apply_backup(same_policy);
    inv.apply_backup(other_policy);
    let d = decide_with(&pitr("wal", "2024-05-07T10:30:00Z"), &inv);
    assert_eq!(d.plan.unwrap().base_backup.as_deref(), Some("full-p"));
}

#[test]
fn r12_volume_restore_policy() {
    for (p, ok) in [("Serial", true), ("Parallel", true), ("Fast", false), ("parallel", false)] {
        let d = decide(&ops(json!({"backupName": "full-c", "volumeRestorePolicy": p})));
        assert_eq!(d.allowed(), ok, "{p}");
        if !ok {
            assert_denied(&d, Rule::R12, &[p, "Serial or Parallel"]);
        }
    }
}

#[test]
fn m1_fills_the_default_volume_restore_policy() {
    let patch = |o: &Value, policy: &Policy| {
        let d = judge(Operation::Create, Some(o), None, NS, &inventory(), policy);
        serde_json::to_value(to_patch(&d.mutations)).unwrap()
    };
    let absent = ops(json!({"backupName": "full-c"}));
    assert_eq!(
        patch(&absent, &Policy::default()),
        json!([{"op": "add", "path": "/spec/restore/volumeRestorePolicy", "value": "Parallel"}])
    );
    let serial = Policy { default_volume_restore_policy: "Serial".into(), ..Policy::default() };
    assert_eq!(
        patch(&absent, &serial),
        json!([{"op": "add", "path": "/spec/restore/volumeRestorePolicy", "value": "Serial"}])
    );
    let empty = ops(json!({"backupName": "full-c", "volumeRestorePolicy": ""}));
    assert_eq!(
        patch(&empty, &Policy::default()),
        json!([{"op": "replace", "path": "/spec/restore/volumeRestorePolicy", "value": "Parallel"}])
    );
}

#[test]
fn m2_normalises_and_w1_w2_say_so() {
    let d = decide(&pitr("wal", "May 07,2024 18:30:00 UTC+0800"));
    assert!(d.allowed());
    let patch = serde_json::to_value(to_patch(&d.mutations)).unwrap();
    assert_eq!(
        patch[0],
        json!({"op": "replace", "path": "/spec/restore/restorePointInTime", "value": "2024-05-07T10:30:00Z"})
    );
    assert_eq!(d.warnings.len(), 1);
    assert_eq!(d.warnings[0].id, WarningId::W1);
    assert!(
        d.warnings[0]
            .message
            .contains("\"May 07,2024 18:30:00 UTC+0800\" was replaced by its normal form 2024-05-07T10:30:00Z")
    );

    let d = decide(&pitr("wal", "2024-05-07T10:30:00.750Z"));
    let ids: Vec<WarningId> = d.warnings.iter().map(|w| w.id).collect();
    assert_eq!(ids, [WarningId::W1, WarningId::W2]);
    assert!(d.warnings[1].message.contains("fraction of a second"));

    let d = decide(&pitr("wal", "2024-05-07T10:30:00Z"));
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn w3_warns_near_the_end_of_a_running_backup() {
    let warned =
        |inv: &Index, t: &str| decide_with(&pitr("wal", t), inv).warnings.iter().any(|w| w.id == WarningId::W3);
    let inv = inventory();
    assert!(warned(&inv, "2024-05-07T10:47:14Z"));
    assert!(warned(&inv, "2024-05-07T10:46:14Z"), "60s is inside the default edge");
    assert!(!warned(&inv, "2024-05-07T10:46:13Z"));
    let d = decide(&pitr("wal", "2024-05-07T10:47:00Z"));
    assert!(d.allowed(), "W3 only warns");
    assert!(d.warnings[0].message.contains("14s before the end") && d.warnings[0].message.contains("still Running"));

    let mut completed = inventory();
    let mut s = mk_wal("wal", "pg-pitr");
    s.phase = Some("Completed".into());
    completed.apply_backup(s);
    assert!(!warned(&completed, "2024-05-07T10:47:14Z"));

    let wide = Policy { edge_warning: TimeDelta::seconds(600), ..Policy::default() };
    let d = judge(Operation::Create, Some(&pitr("wal", "2024-05-07T10:40:00Z")), None, NS, &inventory(), &wide);
    assert!(d.warnings.iter().any(|w| w.id == WarningId::W3));
}

#[test]
fn restore_spec_of_0_9_is_judged_and_patched_in_place() {
    let o = json!({
        "apiVersion": "apps.kubeblocks.io/v1alpha1",
        "kind": "OpsRequest",
        "metadata": {"name": "r", "namespace": NS, "annotations": {"team": "db"}},
        "spec": {"type": "Restore", "clusterName": "pg-new",
                 "restoreSpec": {"backupName": "wal", "restorePointInTime": "2024-05-07T18:30:00+08:00"}}
    });
    let d = decide(&o);
    assert!(d.allowed(), "{:?}", d.violations);
    assert_eq!(
        serde_json::to_value(to_patch(&d.mutations)).unwrap(),
        json!([
            {"op": "add", "path": "/spec/restoreSpec/volumeRestorePolicy", "value": "Parallel"},
            {"op": "replace", "path": "/spec/restoreSpec/restorePointInTime", "value": "2024-05-07T10:30:00Z"},
            {"op": "add", "path": "/metadata/annotations/pitrguard.io~1base-backup", "value": "full-b"}
        ])
    );
    let bad = {
        let mut o = o.clone();
        o["spec"]["restoreSpec"]["restorePointInTime"] = json!("2024-05-07T11:00:00Z");
        decide(&o)
    };
    assert_denied(&bad, Rule::R10, &["spec.restoreSpec.restorePointInTime"]);
}

#[test]
fn the_patch_is_idempotent() {
    for t in ["May 07,2024 18:30:00 UTC+0800", "2024-05-07T10:30:00.5+00:00", "2024-05-07T10:41:00Z"] {
        let mut o = ops(json!({"backupName": "wal", "restorePointInTime": t}));
        let first = decide(&o);
        assert!(!first.mutations.is_empty());
        json_patch::patch(&mut o, &to_patch(&first.mutations)).unwrap();
        let second = decide(&o);
        assert!(second.allowed());
        assert!(second.mutations.is_empty(), "{t}: {:?}", second.mutations);
        assert!(second.warnings.iter().all(|w| w.id == WarningId::W3));
    }
    // A stale base-backup annotation is replaced.
    let mut o = pitr("wal", "2024-05-07T10:41:00Z");
    o["metadata"]["annotations"] = json!({"pitrguard.io/base-backup": "full-b"});
    assert_eq!(
        serde_json::to_value(to_patch(&decide(&o).mutations)).unwrap(),
        json!([{"op": "replace", "path": "/metadata/annotations/pitrguard.io~1base-backup", "value": "incr-d"}])
    );
}

#[test]
fn what_is_not_judged_passes_untouched() {
    let restart = json!({"apiVersion": "operations.kubeblocks.io/v1alpha1", "kind": "OpsRequest",
        "metadata": {"name": "x"}, "spec": {"type": "Restart", "clusterName": "pg"}});
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
    let other_group = json!({"apiVersion": "example.com/v1", "kind": "OpsRequest", "spec": {"type": "Restore"}});
    let bad = pitr("wall", "yesterday");
    let inv = inventory();
    let p = Policy::default();
    for (op, object, old) in [
        (Operation::Create, Some(&restart), None),
        (Operation::Create, Some(&pod), None),
        (Operation::Create, Some(&other_group), None),
        (Operation::Delete, None, Some(&bad)),
        (Operation::Connect, Some(&bad), None),
        (Operation::Update, Some(&bad), Some(&bad)),
    ] {
        let d = judge(op, object, old, NS, &inv, &p);
        assert!(
            d.skipped.is_some() && d.allowed() && d.mutations.is_empty() && d.warnings.is_empty(),
            "{op:?} {object:?}"
        );
    }
}

#[test]
fn an_update_that_changes_the_restore_is_judged() {
    let old = pitr("wal", "2024-05-07T10:30:00Z");
    let mut new = old.clone();
    new["spec"]["restore"]["restorePointInTime"] = json!("2024-05-07T11:00:00Z");
    let d = judge(Operation::Update, Some(&new), Some(&old), NS, &inventory(), &Policy::default());
    assert_denied(&d, Rule::R10, &[]);
    // Only metadata changed: not judged, even though the restore itself is now out of range.
    let mut relabelled = new.clone();
    relabelled["metadata"]["labels"] = json!({"a": "b"});
    let d = judge(Operation::Update, Some(&relabelled), Some(&new), NS, &inventory(), &Policy::default());
    assert!(d.skipped.is_some());
}

#[test]
fn a_malformed_restore_is_denied_not_crashed() {
    let d = decide(&ops(json!({"backupName": 5})));
    assert_denied(&d, Rule::Schema, &["cannot be read", "spec.restore.backupName: expected a string, found a number"]);
    let mut o = ops(json!({"backupName": "wal"}));
    o["metadata"]["annotations"] = json!(["not", "a", "map"]);
    assert_denied(&decide(&o), Rule::Schema, &["metadata.annotations: expected an object, found an array"]);
    let d = decide(&ops(json!("not an object")));
    assert!(!d.allowed());
}

#[test]
fn several_violations_are_all_reported() {
    let mut o = ops(json!({"backupName": "wall", "restorePointInTime": "soon", "volumeRestorePolicy": "Fast"}));
    o["spec"]["clusterName"] = json!("pg");
    let d = decide(&o);
    assert_eq!(d.rules(), [Rule::R2, Rule::R12, Rule::R8, Rule::R3]);
}

#[test]
fn r13_the_completion_second_of_the_base_is_not_restorable() {
    // (T, the base named, the nearest restorable times offered)
    let cases = [
        (
            "2024-05-07T10:36:30Z",
            "full-c",
            "nearest restorable times: 2024-05-07T10:36:29Z (from base backup \"full-b\") or 2024-05-07T10:36:31Z \
             (from base backup \"full-c\")",
        ),
        // A fraction is dropped first (M2), so it falls in the same second.
        ("2024-05-07T10:36:30.999Z", "full-c", "2024-05-07T10:36:29Z (from base backup \"full-b\")"),
        (
            "2024-05-07T10:20:03Z",
            "full-b",
            "nearest restorable time: 2024-05-07T10:20:04Z (from base backup \"full-b\") (\"full-b\" is the first \
             full backup inside the log range)",
        ),
        ("2024-05-07T10:40:00Z", "incr-d", "2024-05-07T10:39:59Z (from base backup \"full-c\")"),
    ];
    for (t, base, offer) in cases {
        let d = decide(&pitr("wal", t));
        assert_denied(
            &d,
            Rule::R13,
            &[
                &format!("falls in the second in which base backup \"{base}\" completed"),
                "rounded down to the second",
                offer,
            ],
        );
        assert_eq!(d.rules(), [Rule::R13], "{t}");
        assert!(decide_inclusive(&pitr("wal", t), &inventory()).allowed(), "{t}: inclusive allows it");
    }
}

#[test]
fn r13_offers_skip_a_run_of_completion_seconds_and_stop_at_the_log_range() {
    let mut inv = inventory();
    inv.apply_backup(mk_backup("full-c1", BackupType::Full, "Completed", Some("10:34:10"), Some("10:36:31")));
    inv.apply_backup(mk_backup("full-c2", BackupType::Full, "Completed", Some("10:34:10"), Some("10:36:29")));
    assert_denied(
        &decide_with(&pitr("wal", "2024-05-07T10:36:30Z"), &inv),
        Rule::R13,
        &["2024-05-07T10:36:28Z (from base backup \"full-b\") or 2024-05-07T10:36:32Z (from base backup \"full-c1\")"],
    );
    inv.apply_backup(mk_backup("full-last", BackupType::Full, "Completed", Some("10:45:00"), Some("10:47:14")));
    assert_denied(
        &decide_with(&pitr("wal", "2024-05-07T10:47:14Z"), &inv),
        Rule::R13,
        &["nearest restorable time: 2024-05-07T10:47:13Z (from base backup \"incr-d\") (the log range ends"],
    );
}

#[test]
fn r13_with_only_a_base_in_the_last_second_nothing_is_restorable() {
    let mut inv = Index::new();
    inv.apply_backup(mk_wal("wal", "pg-pitr"));
    inv.apply_backup(mk_backup("full-late", BackupType::Full, "Completed", Some("10:45:00"), Some("10:47:14")));
    let expected = "restorable window: none, base backups completed in every second from the first one inside the \
                    log range (\"full-late\", at 2024-05-07T10:47:14Z) to its end";
    assert_denied(&decide_with(&pitr("wal", "2024-05-07T10:47:14Z"), &inv), Rule::R13, &[expected]);
    assert_denied(&decide_with(&pitr("wal", "2024-05-07T10:30:00Z"), &inv), Rule::R11, &[expected]);
    assert!(decide_inclusive(&pitr("wal", "2024-05-07T10:47:14Z"), &inv).allowed());
}

#[test]
fn r13_does_not_apply_without_a_required_base() {
    let mut inv = inventory();
    inv.apply_backup(mk_backup("full-mid", BackupType::Full, "Completed", Some("10:20:00"), Some("10:25:00")));
    assert!(decide_with(&pitr("wal-nobase", "2024-05-07T10:25:00Z"), &inv).allowed());
}

#[test]
fn a_relisted_index_replaces_every_backup_and_keeps_action_sets_and_clusters() {
    use super::inventory::Inventory;
    let mut inv = inventory();
    inv.apply_cluster(NS, "pg");
    inv.apply_backup(BackupFacts {
        namespace: "other".into(),
        ..mk_backup("gone", BackupType::Full, "Failed", None, None)
    });
    // The re-list: the WAL archive and one base, under other symbol and lineage ids than before.
    let mut listed = Index::new();
    listed.apply_backup(BackupFacts {
        phase: Some("Deleting".into()),
        ..mk_backup("x", BackupType::Full, "", None, None)
    });
    listed.apply_backup(mk_backup("full-c", BackupType::Full, "Completed", Some("10:34:10"), Some("10:36:30")));
    listed.apply_backup(mk_wal("wal", "pg-pitr"));
    inv.replace_backups_with(listed);

    assert_eq!(inv.counts().backups, 3);
    assert_eq!(inv.backup("other", "gone"), None);
    assert_eq!(inv.backup(NS, "full-b"), None);
    assert_eq!(inv.backup(NS, "wal"), Some(mk_wal("wal", "pg-pitr")));
    assert!(inv.cluster_exists(NS, "pg"));
    assert!(inv.action_set("pg-pitr").is_some());
    let wal = inv.backup(NS, "wal").unwrap();
    let bases: Vec<_> =
        inv.bases_ending_between(&wal, at("10:00:00"), at("11:00:00")).into_iter().map(|b| b.name).collect();
    assert_eq!(bases, ["full-c"]);
    // 10:30 is before the only base left, full-c (10:36:30).
    let d = judge(Operation::Create, Some(&pitr("wal", "2024-05-07T10:30:00Z")), None, NS, &inv, &Policy::default());
    assert_denied(&d, Rule::R11, &["full-c"]);
}
