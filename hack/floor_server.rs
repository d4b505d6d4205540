//! The floor for `hack/bench-external-load.sh`: pitrguard's HTTPS stack with none of its work.
//!
//! `cargo build --release --example floor-server`, then
//! `target/release/examples/floor-server --addr 127.0.0.1:8443 --cert tls.crt --key tls.key
//! [--read-review]`.
//!
//! The same transport as `pitrguard serve` (`serve_tls`: tokio-rustls, hyper's HTTP/1.1 and
//! HTTP/2 picked by ALPN, its timeouts and graceful shutdown; the certificate from
//! `ReloadingTls`, with its file watcher), the same global allocator and the same tokio runtime
//! (multi-thread, one worker per core). The router is the floor of `benches/webhook_load.rs`:
//! `POST /validate` reads the whole body and returns a constant allowed AdmissionReview. No
//! tracing subscriber is installed (there is nothing to log per request). It prints
//! `floor-server listening on https://ADDR/validate` once the port is bound and runs until
//! SIGTERM or Ctrl-C; a second signal exits at once.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use clap::Parser;
use pitrguard::server::tls::{ReloadingTls, TlsFiles};
use pitrguard::server::transport::{Limits, serve_tls};
use tokio::sync::watch;

// The allocator of the pitrguard binary (src/main.rs): mimalloc, glibc with `--no-default-features --features runtime`.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The floor's answer: an allowed AdmissionReview, as small as the webhook's (benches/webhook_load.rs).
const FLOOR_RESPONSE: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true}}"#;

/// pitrguard's HTTPS transport answering every POST /validate with a constant allowed AdmissionReview.
#[derive(Parser, Debug)]
#[command(name = "floor-server")]
struct Args {
    /// Address to listen on (port 0: any free port; the bound address is printed).
    #[arg(long)]
    addr: SocketAddr,
    /// Serving certificate (PEM), as `pitrguard serve --tls-cert`.
    #[arg(long)]
    cert: PathBuf,
    /// Its private key (PEM), as `pitrguard serve --tls-key`.
    #[arg(long)]
    key: PathBuf,
    /// CA bundle (PEM) client certificates must chain to (mutual TLS), as `pitrguard serve --client-ca`.
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// Also read the body with serde_json (into `IgnoredAny`) before answering: the least any
    /// webhook that looks at the AdmissionReview pays (the "floor + serde_json" of the benches).
    #[arg(long)]
    read_review: bool,
}

fn router(read_review: bool) -> Router {
    Router::new().route(
        "/validate",
        post(move |body: Bytes| async move {
            if read_review {
                let read: Result<serde::de::IgnoredAny, _> = serde_json::from_slice(&body);
                std::hint::black_box(read.is_ok());
            }
            std::hint::black_box(&body);
            ([(header::CONTENT_TYPE, "application/json")], FLOOR_RESPONSE).into_response()
        }),
    )
}

/// Resolves when SIGTERM or Ctrl-C arrives.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let tls = ReloadingTls::load(TlsFiles { cert: args.cert, key: args.key, client_ca: args.client_ca })?;
    let _watcher = tls.spawn_watcher();
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!("floor-server listening on https://{}/validate", listener.local_addr()?);

    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
        shutdown_signal().await;
        std::process::exit(130);
    });
    let shutdown = async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    };
    serve_tls(listener, tls, router(args.read_review), Limits::default(), shutdown).await?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // The runtime of `pitrguard serve` (src/main.rs): multi-thread, one worker per core.
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor-server: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
