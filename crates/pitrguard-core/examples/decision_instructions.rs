//! A fixed workload for `hack/bench-instructions.sh`: `judge_json` on one Restore, many times,
//! against an inventory shaped like `benches/decision.rs` (clusters of one continuous and 49
//! full Backups). Run under callgrind, it gives the instructions of one decision: a count that
//! does not move with the machine's load, unlike the seconds of `cargo bench`.
//!
//! `decision_instructions [RESTORE_POINT_IN_TIME] [ITERATIONS]`: 12:34:56 is allowed (with a
//! base backup), a time outside the log range is denied by R10. Then the same number of
//! `read_restore`s (`judge_json`'s decoding half, `request::decode_json`, on its own), of
//! `read_floor`s: serde_json reading the Restore's text into nothing, the least any decoding costs,
//! and of `read_review_floor`s, the same for the AdmissionReview of `examples/admission/review-denied.json`.

use chrono::{DateTime, TimeDelta, Utc};
use pitrguard_core::core::facts::{BackupFacts, BackupType, Lineage};
use pitrguard_core::core::{Index, Operation, Policy, judge_json};

const BACKUPS: usize = 1000;
const PER_CLUSTER: usize = 50;

fn main() {
    let mut args = std::env::args().skip(1);
    let t = args.next().unwrap_or_else(|| "2024-05-07T12:34:56Z".into());
    let iterations: usize = args.next().map_or(10_000, |n| n.parse().expect("ITERATIONS is a number"));
    let t0: DateTime<Utc> = "2024-05-07T00:00:00Z".parse().unwrap();
    let mut index = Index::new();
    for i in 0..BACKUPS {
        let (cluster, k) = (i / PER_CLUSTER, i % PER_CLUSTER);
        let continuous = k == 0;
        let end = t0 + TimeDelta::minutes(30 * k as i64 + 5);
        index.apply_backup(BackupFacts {
            namespace: format!("ns-{}", cluster / 20).into(),
            name: if continuous { format!("pg-{cluster}-wal") } else { format!("pg-{cluster}-full-{k}") }.into(),
            backup_type: if continuous { BackupType::Continuous } else { BackupType::Full },
            phase: Some(if continuous { "Running" } else { "Completed" }.into()),
            start: Some(if continuous { t0 } else { end - TimeDelta::minutes(5) }),
            end: Some(if continuous { t0 + TimeDelta::hours(25) } else { end }),
            lineage: Lineage {
                cluster_uid: Some(format!("uid-{cluster}").into()),
                instance: Some(format!("pg-{cluster}").into()),
                component: Some("postgresql".into()),
                policy_label: Some(format!("pol-{cluster}").into()),
            },
            policy_name: Some(format!("pol-{cluster}").into()),
            action_set: Some("pg-pitr".into()),
            has_cluster_snapshot: true,
        });
    }
    let object = serde_json::json!({
        "apiVersion": "operations.kubeblocks.io/v1alpha1", "kind": "OpsRequest",
        "metadata": {"name": "restore", "namespace": "ns-0"},
        "spec": {"type": "Restore", "clusterName": "restored",
                 "restore": {"backupName": "pg-10-wal", "restorePointInTime": t}}
    })
    .to_string();
    let policy = Policy::default();
    let mut allowed = 0;
    for _ in 0..iterations {
        let d = judge_json(Operation::Create, Some(std::hint::black_box(&object)), None, "", &index, &policy);
        allowed += usize::from(d.allowed());
    }
    println!("{allowed} of {iterations} allowed");
    // The decoding half alone, in a function of its own: inside `judge_json` it is inlined.
    let mut decoded = 0;
    for _ in 0..iterations {
        decoded += usize::from(read_restore(std::hint::black_box(&object)));
    }
    println!("{decoded} of {iterations} decoded");
    // The floor of the decoding half: serde_json reading the same text and keeping nothing.
    let mut read = 0;
    for _ in 0..iterations {
        read += usize::from(read_floor(std::hint::black_box(&object)));
    }
    println!("{read} of {iterations} read");
    // The same floor for the whole AdmissionReview the webhook reads before any decision.
    // As the webhook gets it: bytes (serde_json then checks the strings' UTF-8 itself).
    let review = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/admission/review-denied.json"))
        .expect("examples/admission/review-denied.json");
    let mut read = 0;
    for _ in 0..iterations {
        read += usize::from(read_review_floor(std::hint::black_box(&review)));
    }
    println!("{read} of {iterations} AdmissionReviews read");
}

#[inline(never)]
fn read_restore(object: &str) -> bool {
    pitrguard_core::core::request::decode_json(object, "").is_ok()
}

#[inline(never)]
fn read_review_floor(review: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(review).is_ok()
}

#[inline(never)]
fn read_floor(object: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(object).is_ok()
}
