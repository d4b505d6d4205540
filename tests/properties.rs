//! Property tests of the core (proptest).

use chrono::{DateTime, TimeDelta, Utc};
use pitrguard::admission::{Endpoint, parse_review, respond};
use pitrguard::cli::windows::windows;
use pitrguard::core::facts::{ActionSetFacts, BackupFacts, BackupType, Lineage, Str};
use pitrguard::core::mutate::to_patch;
use pitrguard::core::{BaseEdge, Index, Operation, Policy, Rule, judge};
use proptest::prelude::*;
use serde_json::{Value, json};

const NS: &str = "demo";

fn t0() -> DateTime<Utc> {
    "2024-05-07T10:00:00Z".parse().unwrap()
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop_oneof![Just("Restore"), Just("2024-05-07T10:30:00Z"), Just("pg"), Just("Parallel")].prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("spec".to_string()),
                    Just("restore".to_string()),
                    Just("restoreSpec".to_string()),
                    Just("backupName".to_string()),
                    Just("restorePointInTime".to_string()),
                    Just("volumeRestorePolicy".to_string()),
                    Just("clusterName".to_string()),
                    Just("metadata".to_string()),
                    Just("annotations".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An arbitrary JSON value dressed as a Restore OpsRequest of either group.
fn arb_ops() -> impl Strategy<Value = Value> {
    (arb_json(), arb_json(), any::<bool>()).prop_map(|(spec, meta, apps)| {
        let mut spec = match spec {
            Value::Object(m) => Value::Object(m),
            other => json!({"restore": other}),
        };
        spec["type"] = json!("Restore");
        json!({
            "apiVersion": if apps { "apps.kubeblocks.io/v1alpha1" } else { "operations.kubeblocks.io/v1alpha1" },
            "kind": "OpsRequest",
            "metadata": meta,
            "spec": spec,
        })
    })
}

#[derive(Debug, Clone)]
struct Scenario {
    index_desc: Vec<(String, BackupType, String, i64, bool)>,
    log: (i64, i64),
    base_required: bool,
    t: i64,
}

fn lineage(same: bool) -> Lineage<'static> {
    Lineage {
        cluster_uid: Some(if same { "uid-1" } else { "uid-2" }.into()),
        instance: Some("pg".into()),
        component: Some("postgresql".into()),
        policy_label: Some("pol".into()),
    }
}

fn arb_scenario() -> impl Strategy<Value = Scenario> {
    let base = (
        prop_oneof![Just(BackupType::Full), Just(BackupType::Incremental), Just(BackupType::Differential)],
        prop_oneof![Just("Completed"), Just("Completed"), Just("Failed"), Just("Running")],
        -600i64..4200,
        prop::bool::weighted(0.85),
    );
    // T and the end of the log range land on a base's completion second, or next to it, often enough
    // to exercise R13 and the window's edges; otherwise anywhere.
    let near = prop::option::weighted(0.6, (any::<prop::sample::Index>(), -2i64..=2));
    (prop::collection::vec(base, 0..8), 0i64..1200, 0i64..3000, any::<bool>(), -900i64..5000, near.clone(), near)
        .prop_map(|(bases, start, len, base_required, t, t_near, end_near)| {
            let ends: Vec<i64> = bases.iter().map(|b| b.2).collect();
            let pick = |raw: i64, near: Option<(prop::sample::Index, i64)>| match near {
                Some((i, d)) if !ends.is_empty() => ends[i.index(ends.len())] + d,
                _ => raw,
            };
            let end = pick(start + len, end_near).max(start);
            Scenario {
                t: pick(t, t_near),
                index_desc: bases
                    .into_iter()
                    .enumerate()
                    .map(|(i, (ty, phase, end, same))| (format!("base-{i}"), ty, phase.to_string(), end, same))
                    .collect(),
                log: (start, end),
                base_required,
            }
        })
}

fn build(s: &Scenario) -> Index {
    let at = |secs: i64| t0() + TimeDelta::seconds(secs);
    let mut inv = Index::new();
    inv.apply_backup(BackupFacts {
        namespace: NS.into(),
        name: "wal".into(),
        backup_type: BackupType::Continuous,
        phase: Some("Running".into()),
        start: Some(at(s.log.0)),
        end: Some(at(s.log.1)),
        lineage: lineage(true),
        policy_name: Some("pol".into()),
        action_set: Some("pitr".into()),
        has_cluster_snapshot: true,
    });
    inv.apply_action_set(ActionSetFacts { name: "pitr".into(), base_backup_required: s.base_required });
    for (name, ty, phase, end, same) in &s.index_desc {
        inv.apply_backup(BackupFacts {
            namespace: NS.into(),
            name: name.as_str().into(),
            backup_type: ty.clone(),
            phase: Some(phase.as_str().into()),
            start: Some(at(end - 60)),
            end: Some(at(*end)),
            lineage: lineage(*same),
            policy_name: Some("pol".into()),
            action_set: None,
            has_cluster_snapshot: true,
        });
    }
    inv
}

fn restore_at(t: &str) -> Value {
    json!({
        "apiVersion": "operations.kubeblocks.io/v1alpha1",
        "kind": "OpsRequest",
        "metadata": {"name": "r", "namespace": NS},
        "spec": {"type": "Restore", "clusterName": "new", "restore": {"backupName": "wal", "restorePointInTime": t}}
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn judging_arbitrary_objects_never_panics_and_allowed_means_no_violation(
        object in arb_ops(), old in arb_ops(), s in arb_scenario(), update in any::<bool>()
    ) {
        let inv = build(&s);
        let op = if update { Operation::Update } else { Operation::Create };
        let d = judge(op, Some(&object), Some(&old), NS, &inv, &Policy::default());
        // allowed <=> no violation, as every consumer sees it: a denial has a message and no patch,
        // an allow has no broken rule.
        prop_assert_eq!(d.allowed(), d.rules().is_empty());
        if !d.allowed() {
            prop_assert!(d.mutations.is_empty());
            prop_assert!(!d.message().is_empty());
        }
        // The webhook says the same thing as the core; a body it cannot read is a 400, never a panic.
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u", "kind": {"group": "operations.kubeblocks.io", "version": "v1alpha1", "kind": "OpsRequest"},
            "resource": {"group": "operations.kubeblocks.io", "version": "v1alpha1", "resource": "opsrequests"},
            "namespace": NS, "operation": "CREATE", "userInfo": {}, "object": object}});
        match parse_review(&serde_json::to_vec(&review).unwrap()) {
            Ok(req) => {
                let d = pitrguard::admission::decide(&req, &inv, &Policy::default());
                let answer = pitrguard::admission::Answer::from(&d);
                let validating = respond(Endpoint::Validate, &req, &answer);
                prop_assert_eq!(validating.allowed, d.rules().is_empty());
                prop_assert_eq!(validating.status.message.is_empty(), d.allowed());
                let mutating = respond(Endpoint::Mutate, &req, &answer);
                prop_assert!(mutating.allowed);
                prop_assert_eq!(mutating.patch.is_some(), d.allowed() && !d.mutations.is_empty());
            }
            Err(e) => prop_assert!(matches!(e, pitrguard::admission::ReviewError::Json(_)), "{e}"),
        }
    }

    #[test]
    fn the_patch_applied_twice_equals_applied_once(
        s in arb_scenario(),
        layout in 0usize..4,
        policy_set in prop_oneof![Just(None), Just(Some("")), Just(Some("Serial"))],
        annotated in any::<bool>(),
    ) {
        let inv = build(&s);
        let t = t0() + TimeDelta::seconds(s.t) + TimeDelta::milliseconds(if layout == 3 { 250 } else { 0 });
        let raw = match layout {
            0 => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            1 => t.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()).to_rfc3339(),
            2 => t.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()).format("%b %d,%Y %H:%M:%S UTC%z").to_string(),
            _ => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let mut object = restore_at(&raw);
        if let Some(p) = policy_set {
            object["spec"]["restore"]["volumeRestorePolicy"] = json!(p);
        }
        if annotated {
            object["metadata"]["annotations"] = json!({"pitrguard.io/base-backup": "stale", "team": "db"});
        }
        let first = judge(Operation::Create, Some(&object), None, NS, &inv, &Policy::default());
        let patch = to_patch(&first.mutations);
        let mut once = object.clone();
        json_patch::patch(&mut once, &patch).unwrap();
        let second = judge(Operation::Create, Some(&once), None, NS, &inv, &Policy::default());
        prop_assert!(second.mutations.is_empty(), "{:?}", second.mutations);
        prop_assert_eq!(second.allowed(), first.allowed());
        let mut twice = once.clone();
        json_patch::patch(&mut twice, &to_patch(&second.mutations)).unwrap();
        prop_assert_eq!(twice, once);
    }

    /// Under either edge, and for whole or fractional seconds: T is allowed exactly when the window
    /// `windows` prints contains it and does not list its second as excluded.
    #[test]
    fn validate_allows_t_exactly_inside_the_window_that_windows_prints(
        s in arb_scenario(),
        inclusive in any::<bool>(),
        millis in prop_oneof![Just(0i64), Just(0), Just(500)],
    ) {
        let inv = build(&s);
        let edge = if inclusive { BaseEdge::Inclusive } else { BaseEdge::Strict };
        let policy = Policy { base_edge: edge, ..Policy::default() };
        let t = t0() + TimeDelta::seconds(s.t) + TimeDelta::milliseconds(millis);
        let raw = t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let d = judge(Operation::Create, Some(&restore_at(&raw)), None, NS, &inv, &policy);
        let printed = windows(&inv, None, None, edge);
        prop_assert_eq!(printed.len(), 1);
        let w = &printed[0];
        let second = t0() + TimeDelta::seconds(s.t);
        let inside = w.restorable_window.as_ref().is_some_and(|w| {
            let (a, b): (DateTime<Utc>, DateTime<Utc>) = (w.start.parse().unwrap(), w.end.parse().unwrap());
            a <= t && t <= b
        }) && !w.excluded_seconds.iter().any(|e| e.second.parse::<DateTime<Utc>>().unwrap() == second);
        prop_assert_eq!(d.allowed(), inside, "T {}, window {:?}, violations {:?}", raw, w, d.violations);
        if inclusive {
            prop_assert!(w.excluded_seconds.is_empty());
            prop_assert!(!d.rules().contains(&Rule::R13));
        }
    }

    /// Every R13 denial offers restorable times, and each one offered is allowed.
    #[test]
    fn an_r13_denial_offers_times_that_are_allowed(s in arb_scenario()) {
        let inv = build(&s);
        let t = t0() + TimeDelta::seconds(s.t);
        let d = judge(Operation::Create, Some(&restore_at(&t.to_rfc3339())), None, NS, &inv, &Policy::default());
        let Some(v) = d.violations.iter().find(|v| v.rule == Rule::R13) else { return Ok(()) };
        let Some((_, offers)) = v.message.split_once("nearest restorable time") else {
            prop_assert!(v.message.contains("restorable window: none"), "{}", v.message);
            return Ok(());
        };
        let offered: Vec<&str> = offers.split(['(', ' ', ',', ';']).filter(|w| w.len() == 20 && w.ends_with('Z')).collect();
        prop_assert!(!offered.is_empty(), "{}", v.message);
        for o in &offered {
            let again = judge(Operation::Create, Some(&restore_at(o)), None, NS, &inv, &Policy::default());
            prop_assert!(again.allowed(), "offered {} in {:?}, but it is denied: {:?}", o, v.message, again.violations);
        }
    }
}

/// A random change to the inventory, as watch events deliver them.
#[derive(Debug, Clone)]
enum Change {
    Apply { name: u8, ty: u8, completed: bool, end: Option<i64>, uid: u8, instance: u8 },
    Delete { name: u8 },
}

fn arb_change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => (0u8..12, 0u8..4, prop::bool::weighted(0.8), prop::option::weighted(0.9, -100i64..400), 0u8..3, 0u8..2)
            .prop_map(|(name, ty, completed, end, uid, instance)| Change::Apply { name, ty, completed, end, uid, instance }),
        1 => (0u8..12).prop_map(|name| Change::Delete { name }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The index answers exactly what a scan of the live objects answers, after any sequence of changes.
    #[test]
    fn the_index_agrees_with_a_full_scan(
        changes in prop::collection::vec(arb_change(), 0..40),
        from in -50i64..200,
        len in 0i64..300,
        probe_labels in 0u8..4,
    ) {
        let at = |s: i64| t0() + TimeDelta::seconds(s);
        let mut index = Index::new();
        let mut live: std::collections::BTreeMap<u8, BackupFacts<'static>> = Default::default();
        for c in changes {
            match c {
                Change::Apply { name, ty, completed, end, uid, instance } => {
                    let b = BackupFacts {
                        namespace: NS.into(),
                        name: format!("b{name}").into(),
                        backup_type: [BackupType::Full, BackupType::Incremental, BackupType::Continuous, BackupType::Differential][ty as usize].clone(),
                        phase: Some(if completed { "Completed" } else { "Running" }.into()),
                        start: end.map(|e| at(e - 10)),
                        end: end.map(at),
                        lineage: Lineage {
                            cluster_uid: Some(format!("u{uid}").into()).filter(|_| uid < 2),
                            instance: Some(format!("i{instance}").into()),
                            component: Some("c".into()),
                            policy_label: Some(format!("p{instance}").into()),
                        },
                        policy_name: None,
                        action_set: None,
                        has_cluster_snapshot: true,
                    };
                    index.apply_backup(b.clone());
                    live.insert(name, b);
                }
                Change::Delete { name } => {
                    index.delete_backup(NS, &format!("b{name}"));
                    live.remove(&name);
                }
            }
        }
        use pitrguard::core::Inventory;
        // The probe matches on all three labels, on some of them (a scan of the groups), or on
        // the backup-policy label when it has none of them.
        let lineage = match probe_labels {
            0 => Lineage { cluster_uid: Some("u0".into()), instance: Some("i0".into()), component: Some("c".into()), policy_label: None },
            1 => Lineage { instance: Some("i0".into()), ..Lineage::default() },
            2 => Lineage { cluster_uid: Some("u1".into()), component: Some("c".into()), ..Lineage::default() },
            _ => Lineage::default(),
        };
        let probe = BackupFacts {
            namespace: NS.into(), name: "probe".into(), backup_type: BackupType::Continuous, phase: None,
            start: None, end: None, lineage,
            policy_name: Some("p0".into()), action_set: None, has_cluster_snapshot: true,
        };
        let (a, b) = (at(from), at(from + len));
        let m = probe.candidate_match();
        let mut want: Vec<(DateTime<Utc>, Str<'_>)> = live.values()
            .filter(|x| x.is_base() && m.matches(&x.lineage) && x.end.is_some_and(|e| a <= e && e <= b))
            .map(|x| (x.end.unwrap(), x.name.clone()))
            .collect();
        want.sort();
        let got: Vec<(DateTime<Utc>, Str<'_>)> = index.bases_ending_between(&probe, a, b).into_iter().map(|r| (r.end, r.name)).collect();
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(index.earliest_base(&probe, a, b).map(|r| r.name), want.first().map(|w| w.1.clone()));
        let latest_end = want.iter().map(|w| w.0).max();
        let latest = want.iter().find(|w| Some(w.0) == latest_end).map(|w| w.1.clone());
        prop_assert_eq!(index.latest_base(&probe, a, b).map(|r| r.name), latest);
        prop_assert_eq!(index.counts().backups, live.len());
        for (name, b) in &live {
            prop_assert_eq!(index.backup(NS, &format!("b{name}")), Some(b.clone()));
        }
    }
}
