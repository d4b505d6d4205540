//! The admission router in-process: every kind of request the API server
//! sends, and every kind of bad input, through the real axum Router.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use common::*;
use http_body_util::BodyExt;
use pitrguard::inventory::SharedInventory;
use pitrguard::server::webhook::{App, router};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn post_raw(app: App, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let req = Request::post(path).header("content-type", content_type).body(Body::from(body)).unwrap();
    let resp = router(app).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("body is JSON: {bytes:?}"));
    (status, value)
}

async fn post(app: App, path: &str, review: &Value) -> Value {
    let (status, body) = post_raw(app, path, "application/json", serde_json::to_vec(review).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(body["response"]["uid"], review["request"]["uid"], "the response echoes request.uid");
    body["response"].clone()
}

fn patch_of(response: &Value) -> Value {
    let b64 = response["patch"].as_str().expect("a patch");
    assert_eq!(response["patchType"], "JSONPatch");
    serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
}

#[tokio::test]
async fn create_outside_the_window_is_denied_with_the_spec_message() {
    for api in [OPERATIONS, APPS] {
        let r = post(app(), "/validate", &review("CREATE", pitr(api, "2024-05-07T11:00:00Z"), Value::Null)).await;
        assert_eq!(r["allowed"], false);
        assert_eq!(r["status"]["code"], 422);
        assert_eq!(
            r["status"]["message"],
            "spec.restore.restorePointInTime: 2024-05-07T11:00:00Z is 12m46s after the end of continuous backup \
             \"pg-cluster-archive-wal\" (2024-05-07T10:07:45Z .. 2024-05-07T10:47:14Z); restorable window: \
             2024-05-07T10:20:04Z .. 2024-05-07T10:47:14Z, except the completion second of a base backup: \
             2024-05-07T10:36:30Z"
        );
        // The mutating webhook lets the validating one deny, and patches nothing.
        let m = post(app(), "/mutate", &review("CREATE", pitr(api, "2024-05-07T11:00:00Z"), Value::Null)).await;
        assert_eq!(m["allowed"], true);
        assert!(m.get("patch").is_none());
    }
}

#[tokio::test]
async fn create_inside_the_window_is_allowed_and_mutated() {
    let object = pitr(OPERATIONS, "May 07,2024 18:30:00 UTC+0800");
    let v = post(app(), "/validate", &review("CREATE", object.clone(), Value::Null)).await;
    assert_eq!(v["allowed"], true);
    assert!(v.get("patch").is_none(), "the validating webhook never patches");
    assert!(v.get("warnings").is_none(), "W1 comes from the mutating webhook only: {v}");
    let m = post(app(), "/mutate", &review("CREATE", object, Value::Null)).await;
    assert_eq!(m["allowed"], true);
    assert_eq!(
        patch_of(&m),
        json!([
            {"op": "add", "path": "/spec/restore/volumeRestorePolicy", "value": "Parallel"},
            {"op": "replace", "path": "/spec/restore/restorePointInTime", "value": "2024-05-07T10:30:00Z"},
            {"op": "add", "path": "/metadata/annotations", "value": {"pitrguard.io/base-backup": "pg-cluster-full-1018"}}
        ])
    );
    let warnings = m["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].as_str().unwrap().contains("was replaced by its normal form 2024-05-07T10:30:00Z"));
}

#[tokio::test]
async fn the_validating_webhook_sends_w3_and_the_mutating_one_does_not() {
    let object = pitr(OPERATIONS, "2024-05-07T10:47:00Z");
    let v = post(app(), "/validate", &review("CREATE", object.clone(), Value::Null)).await;
    assert!(v["warnings"][0].as_str().unwrap().contains("still Running"));
    let m = post(app(), "/mutate", &review("CREATE", object, Value::Null)).await;
    assert!(m.get("warnings").is_none(), "{m}");
}

#[tokio::test]
async fn update_is_judged_only_when_the_restore_changes() {
    let old = pitr(OPERATIONS, "2024-05-07T10:30:00Z");
    let mut moved = old.clone();
    moved["spec"]["restore"]["restorePointInTime"] = json!("2024-05-07T11:00:00Z");
    let r = post(app(), "/validate", &review("UPDATE", moved.clone(), old.clone())).await;
    assert_eq!(r["allowed"], false);

    let mut labelled = moved.clone();
    labelled["metadata"]["labels"] = json!({"team": "db"});
    let r = post(app(), "/validate", &review("UPDATE", labelled, moved)).await;
    assert_eq!(r["allowed"], true, "a metadata-only update is not judged");
}

#[tokio::test]
async fn delete_with_a_null_object_is_allowed() {
    let r = post(app(), "/validate", &review("DELETE", Value::Null, pitr(OPERATIONS, "garbage"))).await;
    assert_eq!(r["allowed"], true);
    assert!(r.get("patch").is_none());
}

#[tokio::test]
async fn dry_run_gets_the_same_answer() {
    for t in ["2024-05-07T11:00:00Z", "2024-05-07T10:30:00+00:00"] {
        let mut rv = review("CREATE", pitr(OPERATIONS, t), Value::Null);
        let plain_v = post(app(), "/validate", &rv).await;
        let plain_m = post(app(), "/mutate", &rv).await;
        rv["request"]["dryRun"] = json!(true);
        assert_eq!(post(app(), "/validate", &rv).await, plain_v);
        assert_eq!(post(app(), "/mutate", &rv).await, plain_m);
    }
}

#[tokio::test]
async fn a_status_subresource_update_is_allowed_untouched() {
    let old = pitr(OPERATIONS, "2024-05-07T11:00:00Z");
    let mut new = old.clone();
    new["status"] = json!({"phase": "Running"});
    let mut rv = review("UPDATE", new, old);
    rv["request"]["subResource"] = json!("status");
    let r = post(app(), "/validate", &rv).await;
    assert_eq!(r["allowed"], true);
}

#[tokio::test]
async fn other_kinds_and_other_ops_pass_untouched() {
    let restart = json!({"apiVersion": OPERATIONS, "kind": "OpsRequest", "metadata": {"name": "x", "namespace": "demo"},
                         "spec": {"type": "Restart", "clusterName": "pg-cluster"}});
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "demo"}, "spec": {}});
    for object in [restart, pod] {
        for path in ["/validate", "/mutate"] {
            let r = post(app(), path, &review("CREATE", object.clone(), Value::Null)).await;
            assert_eq!(r["allowed"], true);
            assert!(r.get("patch").is_none() && r.get("warnings").is_none(), "{r}");
        }
    }
}

#[tokio::test]
async fn before_the_inventory_syncs_every_restore_is_denied_as_not_ready() {
    let pending = app_with(SharedInventory::pending());
    let r = post(pending, "/validate", &review("CREATE", pitr(OPERATIONS, "2024-05-07T10:30:00Z"), Value::Null)).await;
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 503);
    assert!(r["status"]["message"].as_str().unwrap().contains("not ready yet"));
}

#[tokio::test]
async fn malformed_input_gets_a_json_4xx() {
    let big = vec![b' '; 4 * 1024 * 1024];
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode)> = vec![
        ("empty body", "application/json", vec![], StatusCode::BAD_REQUEST),
        (
            "truncated",
            "application/json",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionRe"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        ("4 MiB", "application/json", big, StatusCode::PAYLOAD_TOO_LARGE),
        ("deeply nested", "application/json", nested, StatusCode::BAD_REQUEST),
        ("invalid UTF-8", "application/json", vec![b'{', 0xff, 0xfe, b'}'], StatusCode::BAD_REQUEST),
        (
            "wrong content type",
            "text/plain",
            serde_json::to_vec(&review("CREATE", pitr(OPERATIONS, "x"), Value::Null)).unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("not a review", "application/json", br#"{"kind":"Pod"}"#.to_vec(), StatusCode::BAD_REQUEST),
        (
            "no request",
            "application/json",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "v1beta1",
            "application/json",
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, ct, body, want) in cases {
        let (status, json) = post_raw(app(), "/validate", ct, body).await;
        assert_eq!(status, want, "{what}: {json}");
        assert_eq!(json["code"], want.as_u16(), "{what}");
        assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let (status, json) = post_raw(app(), "/nope", "application/json", b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(json["error"].as_str().unwrap().contains("/validate"));
    let resp = router(app()).oneshot(Request::get("/validate").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_bundled_review_fixtures_answer_as_documented() {
    let denied: Value = serde_json::from_str(include_str!("../examples/admission/review-denied.json")).unwrap();
    assert_eq!(post(app(), "/validate", &denied).await["allowed"], false);
    let allowed: Value = serde_json::from_str(include_str!("../examples/admission/review-allowed.json")).unwrap();
    assert_eq!(post(app(), "/validate", &allowed).await["allowed"], true);
}

mod read_your_writes {
    use std::sync::Arc;
    use std::time::Duration;

    use futures::future::BoxFuture;
    use pitrguard::core::facts::BackupFacts;
    use pitrguard::core::{Index, Inventory};
    use pitrguard::inventory::FreshBackups;
    use pitrguard::load::{build_index, parse_text};
    use pitrguard::server::webhook::App;

    use super::*;

    /// What the API server answers: every Backup of the examples, including the
    /// WAL archive that the cache has not seen yet.
    struct ApiServerHas(Vec<BackupFacts<'static>>);

    impl FreshBackups for ApiServerHas {
        fn backups_in(&self, _namespace: String) -> BoxFuture<'static, anyhow::Result<Index>> {
            let mut index = Index::new();
            index.replace_backups(self.0.clone());
            Box::pin(async move { Ok(index) })
        }
    }

    struct Unreachable;

    impl FreshBackups for Unreachable {
        fn backups_in(&self, _namespace: String) -> BoxFuture<'static, anyhow::Result<Index>> {
            Box::pin(async { Err(anyhow::anyhow!("connection refused")) })
        }
    }

    struct Hangs;

    impl FreshBackups for Hangs {
        fn backups_in(&self, _namespace: String) -> BoxFuture<'static, anyhow::Result<Index>> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(Index::new())
            })
        }
    }

    /// The cache knows the examples without the WAL archive; the API server has it.
    fn stale_app() -> App {
        let mut docs = Vec::new();
        for f in ["cluster.yaml", "actionsets.yaml", "backups.yaml"] {
            let path = examples().join("postgresql").join(f);
            parse_text(f, &std::fs::read_to_string(path).unwrap(), false, &mut docs).unwrap();
        }
        let full = build_index(&docs).unwrap();
        let names = ["pg-cluster-archive-wal", "pg-cluster-full-0955", "pg-cluster-full-1018", "pg-cluster-full-1034"];
        let on_server = names.iter().filter_map(|n| full.backup("demo", n).map(BackupFacts::into_owned)).collect();
        let mut cached = build_index(&docs).unwrap();
        cached.delete_backup("demo", "pg-cluster-archive-wal");
        let mut app = app_with(SharedInventory::ready(cached));
        app.fresh = Some(Arc::new(ApiServerHas(on_server)));
        app
    }

    fn outcomes(app: &App) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &app.metrics.registry()).unwrap();
        text.lines().filter(|l| l.starts_with("pitrguard_fresh_reads_total")).collect::<Vec<_>>().join("\n")
    }

    #[tokio::test]
    async fn a_denial_that_fresh_backups_overturn_is_allowed() {
        let app = stale_app();
        let r =
            post(app.clone(), "/validate", &review("CREATE", pitr(OPERATIONS, "2024-05-07T10:30:00Z"), Value::Null))
                .await;
        assert_eq!(r["allowed"], true, "{r}");
        assert!(outcomes(&app).contains("result=\"overturned\"} 1"), "{}", outcomes(&app));
    }

    #[tokio::test]
    async fn a_full_backup_that_completed_a_moment_ago_is_restorable() {
        let app = stale_app();
        {
            let mut cached = app.inventory.write();
            let mut running = cached.backup("demo", "pg-cluster-full-1034").unwrap().into_owned();
            running.phase = Some("Running".into());
            cached.apply_backup(running);
        }
        let full = restore(OPERATIONS, "r", json!({"backupName": "pg-cluster-full-1034"}));
        let r = post(app.clone(), "/validate", &review("CREATE", full, Value::Null)).await;
        assert_eq!(r["allowed"], true, "R4 is re-checked against the API server: {r}");
        assert!(outcomes(&app).contains("result=\"overturned\"} 1"));
    }

    #[tokio::test]
    async fn a_denial_with_a_rule_fresh_data_cannot_change_is_not_rechecked() {
        let app = stale_app();
        let mut o = pitr(OPERATIONS, "2024-05-07T10:30:00Z");
        o["spec"]["restore"]["volumeRestorePolicy"] = json!("Fast");
        let r = post(app.clone(), "/validate", &review("CREATE", o, Value::Null)).await;
        assert_eq!(r["allowed"], false, "R12 stands whatever the Backups are");
        assert_eq!(outcomes(&app), "");
    }

    #[tokio::test]
    async fn a_denial_that_fresh_backups_confirm_stands() {
        let app = stale_app();
        let r =
            post(app.clone(), "/validate", &review("CREATE", pitr(OPERATIONS, "2024-05-07T11:00:00Z"), Value::Null))
                .await;
        assert_eq!(r["allowed"], false);
        assert!(
            r["status"]["message"].as_str().unwrap().contains("12m46s after the end"),
            "the fresh data's message: {r}"
        );
        assert!(outcomes(&app).contains("result=\"confirmed\"} 1"));
    }

    #[tokio::test]
    async fn an_unreachable_api_server_leaves_the_cached_denial() {
        let mut app = stale_app();
        app.fresh = Some(Arc::new(Unreachable));
        let r =
            post(app.clone(), "/validate", &review("CREATE", pitr(OPERATIONS, "2024-05-07T10:30:00Z"), Value::Null))
                .await;
        assert_eq!(r["allowed"], false);
        assert!(r["status"]["message"].as_str().unwrap().contains("not found"));
        assert!(outcomes(&app).contains("result=\"error\"} 1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_api_server_is_given_up_on_within_the_bound() {
        let mut app = stale_app();
        app.fresh = Some(Arc::new(Hangs));
        let started = tokio::time::Instant::now();
        let r =
            post(app.clone(), "/validate", &review("CREATE", pitr(OPERATIONS, "2024-05-07T10:30:00Z"), Value::Null))
                .await;
        assert_eq!(r["allowed"], false);
        assert_eq!(started.elapsed(), pitrguard::server::webhook::FRESH_READ_TIMEOUT);
        assert!(outcomes(&app).contains("result=\"error\"} 1"));
    }

    #[tokio::test]
    async fn a_denial_fresh_data_cannot_change_is_not_rechecked() {
        let app = stale_app();
        let mut o = pitr(OPERATIONS, "yesterday");
        o["spec"]["restore"]["backupName"] = json!("pg-cluster-full-1034");
        let r = post(app.clone(), "/validate", &review("CREATE", o, Value::Null)).await;
        assert_eq!(r["allowed"], false);
        assert_eq!(outcomes(&app), "", "R6/R8 are not about fresh data");
    }
}
