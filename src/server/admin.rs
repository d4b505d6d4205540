//! The plain-HTTP admin port: `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::inventory::SharedInventory;
use crate::inventory::live::WatchState;
use crate::metrics::{KindLabels, Metrics, ResultLabels};

#[derive(Clone)]
pub struct Admin {
    pub inventory: Arc<SharedInventory>,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub tls: Option<Arc<dyn CertificateStatus>>,
    /// The live inventory's watches, when there are any.
    pub watch: Option<Arc<WatchState>>,
}

/// What `/metrics` reports about the serving certificate.
pub trait CertificateStatus: Send + Sync {
    /// notAfter of the current certificate, as a Unix time.
    fn not_after_unix(&self) -> Option<i64>;
    /// Successful and failed reloads so far.
    fn reloads(&self) -> (u64, u64);
}

pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(admin)
}

async fn readyz(State(admin): State<Admin>) -> Response {
    if admin.inventory.is_ready() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "inventory not synced yet\n").into_response()
    }
}

async fn metrics(State(admin): State<Admin>) -> Response {
    // Gauges that mirror other state are refreshed at scrape time.
    let counts = admin.inventory.counts();
    let m = &admin.metrics;
    for (kind, n) in [("Backup", counts.backups), ("ActionSet", counts.action_sets), ("Cluster", counts.clusters)] {
        m.inventory_objects.get_or_create(&KindLabels { kind }).set(n as i64);
    }
    m.inventory_ready.set(i64::from(admin.inventory.is_ready()));
    if let Some(watch) = &admin.watch {
        m.inventory_staleness.set(watch.staleness().as_secs_f64());
    }
    if let Some(tls) = &admin.tls {
        if let Some(t) = tls.not_after_unix() {
            m.cert_expiry.set(t);
        }
        // Counters only go up: add what happened since the last scrape, one scrape at a time.
        static SYNC: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = SYNC.lock().unwrap_or_else(|e| e.into_inner());
        let (ok, failed) = tls.reloads();
        for (result, total) in [("success", ok), ("failure", failed)] {
            let c = m.cert_reloads.get_or_create(&ResultLabels { result });
            c.inc_by(total.saturating_sub(c.get()));
        }
    }
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &admin.registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}\n")).into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}
