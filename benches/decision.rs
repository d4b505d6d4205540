//! The cost of one admission decision as the inventory grows.
//!
//! `cargo bench --bench decision` — figures go to BENCHMARKS.md via
//! `hack/bench-report.sh`. The naive scan is the baseline in the same run: it
//! finds base candidates by walking every Backup, as a controller without an
//! index would.

use std::hint::black_box;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use pitrguard::core::facts::{BackupFacts, BackupType, CandidateMatch, Lineage};
use pitrguard::core::{Index, Operation, Policy, judge_head, judge_json};
use serde_json::json;

// The allocator the binary runs on (mimalloc unless built with --no-default-features --features runtime).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BACKUPS_PER_CLUSTER: usize = 50;

fn t0() -> DateTime<Utc> {
    "2024-05-07T00:00:00Z".parse().unwrap()
}

/// `n` Backups: clusters of 50 (one continuous, 49 full), 20 clusters per namespace.
fn inventory(n: usize) -> (Index, Vec<BackupFacts<'static>>) {
    let mut index = Index::new();
    let mut all = Vec::with_capacity(n);
    for i in 0..n {
        let cluster = i / BACKUPS_PER_CLUSTER;
        let k = i % BACKUPS_PER_CLUSTER;
        let lineage = Lineage {
            cluster_uid: Some(format!("uid-{cluster}").into()),
            instance: Some(format!("pg-{cluster}").into()),
            component: Some("postgresql".into()),
            policy_label: Some(format!("pol-{cluster}").into()),
        };
        let continuous = k == 0;
        let end = t0() + TimeDelta::minutes(30 * k as i64 + 5);
        let b = BackupFacts {
            namespace: format!("ns-{}", cluster / 20).into(),
            name: if continuous { format!("pg-{cluster}-wal") } else { format!("pg-{cluster}-full-{k}") }.into(),
            backup_type: if continuous { BackupType::Continuous } else { BackupType::Full },
            phase: Some(if continuous { "Running" } else { "Completed" }.into()),
            start: Some(if continuous { t0() } else { end - TimeDelta::minutes(5) }),
            end: Some(if continuous { t0() + TimeDelta::hours(25) } else { end }),
            lineage,
            policy_name: Some(format!("pol-{cluster}").into()),
            action_set: Some("pg-pitr".into()),
            has_cluster_snapshot: true,
        };
        all.push(b.clone());
        index.apply_backup(b);
    }
    (index, all)
}

/// The Restore's JSON text, as it arrives in an AdmissionReview.
fn request(n: usize) -> String {
    let cluster = (n / BACKUPS_PER_CLUSTER) / 2;
    serde_json::to_string(&json!({
        "apiVersion": "operations.kubeblocks.io/v1alpha1",
        "kind": "OpsRequest",
        "metadata": {"name": "restore", "namespace": format!("ns-{}", cluster / 20)},
        "spec": {"type": "Restore", "clusterName": "restored", "restore": {
            "backupName": format!("pg-{cluster}-wal"), "restorePointInTime": "2024-05-07T12:34:56Z"}}
    }))
    .unwrap()
}

/// Baseline: the base backup KubeBlocks would pick, found by scanning every Backup.
fn naive_latest_base(all: &[BackupFacts], s: &BackupFacts, to: DateTime<Utc>) -> Option<String> {
    let m: CandidateMatch = s.candidate_match();
    all.iter()
        .filter(|b| b.namespace == s.namespace && b.is_base() && m.matches(&b.lineage))
        .filter(|b| b.end.is_some_and(|e| Some(e) >= s.start && e <= to))
        .max_by(|a, b| a.end.cmp(&b.end).then_with(|| b.name.cmp(&a.name)))
        .map(|b| b.name.to_string())
}

fn decision(c: &mut Criterion) {
    let policy = Policy::default();
    let mut group = c.benchmark_group("decision");
    let mut builds = serde_json::Map::new();
    for n in [100usize, 10_000, 100_000, 1_000_000] {
        let started = std::time::Instant::now();
        let (index, all) = inventory(n);
        // Building includes making the facts; reported next to the decision (hack/bench-decision.sh).
        builds.insert(n.to_string(), json!(started.elapsed().as_secs_f64()));
        let object = request(n);
        let d = judge_json(Operation::Create, Some(&object), None, "", &index, &policy);
        assert!(d.allowed(), "the benchmark request must pass: {:?}", d.violations);
        group.bench_with_input(BenchmarkId::new("judge", n), &n, |b, _| {
            b.iter(|| judge_json(Operation::Create, Some(black_box(&object)), None, "", &index, &policy))
        });
        // The decision as /validate makes it: the Restore's head was read with the AdmissionReview
        // (`parse_review`, measured in the admission group), so only the decision is left.
        let head = pitrguard::core::request::head(&object).unwrap();
        group.bench_with_input(BenchmarkId::new("decide", n), &n, |b, _| {
            b.iter(|| judge_head(Operation::Create, Some(black_box(&head).clone()), || false, "", &index, &policy))
        });
        // The rules alone, on the request already decoded: what grows, if anything, with the inventory.
        let decoded = pitrguard::core::request::decode_json(&object, "").unwrap();
        group.bench_with_input(BenchmarkId::new("rules", n), &n, |b, _| {
            b.iter(|| pitrguard::core::rules::evaluate(black_box(&decoded), &index, &policy))
        });
        let name = serde_json::from_str::<serde_json::Value>(&object).unwrap()["spec"]["restore"]["backupName"].clone();
        let s = all.iter().find(|b| Some(&*b.name) == name.as_str()).unwrap().clone();
        let t: DateTime<Utc> = "2024-05-07T12:34:56Z".parse().unwrap();
        assert_eq!(naive_latest_base(&all, &s, t), d.plan.unwrap().base_backup);
        group.bench_with_input(BenchmarkId::new("naive-scan-baseline", n), &n, |b, _| {
            b.iter(|| naive_latest_base(black_box(&all), &s, t))
        });
    }
    group.finish();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion/decision/index-build.json");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(out, serde_json::to_vec(&builds).unwrap()).unwrap();
}

criterion_group!(benches, decision, admission);
criterion_main!(benches);

/// The admission layer around one decision: AdmissionReview bytes in, response bytes out.
fn admission(c: &mut Criterion) {
    use pitrguard::admission::{Answer, Endpoint, decide, parse_review, respond, review_body};
    let docs = pitrguard::load::read_documents(&[concat!(env!("CARGO_MANIFEST_DIR"), "/examples").into()]).unwrap();
    let index = pitrguard::load::build_index(&docs).unwrap();
    let body = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/admission/review-denied.json")).unwrap();
    let policy = Policy::default();
    let mut group = c.benchmark_group("admission");
    group.bench_function("parse_review", |b| b.iter(|| parse_review(black_box(&body)).unwrap()));
    let req = parse_review(&body).unwrap();
    group.bench_function("decide", |b| b.iter(|| decide(black_box(&req), &index, &policy)));
    let d = Answer::for_endpoint(&decide(&req, &index, &policy), Endpoint::Validate);
    group.bench_function("respond+serialize", |b| {
        b.iter(|| review_body(&respond(Endpoint::Validate, black_box(&req), &d)))
    });
    group.bench_function("end-to-end", |b| {
        b.iter(|| {
            let req = parse_review(black_box(&body)).unwrap();
            let d = Answer::for_endpoint(&decide(&req, &index, &policy), Endpoint::Validate);
            review_body(&respond(Endpoint::Validate, &req, &d))
        })
    });
    group.finish();
}
