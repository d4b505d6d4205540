//! Serving an axum Router over TLS with timeouts and graceful shutdown.
//!
//! This layer does not care what the router does. Per connection it:
//! 1. completes the TLS handshake within [`Limits::handshake_timeout`]
//!    (a failing or slow handshake is logged at debug and dropped);
//! 2. picks HTTP/2 when ALPN negotiated `h2`, HTTP/1.1 otherwise (HTTP/2
//!    over TLS requires ALPN, so there is no guessing from the first bytes);
//! 3. requires the request head within [`Limits::header_read_timeout`]:
//!    hyper enforces it for every HTTP/1 request (an idle keep-alive
//!    connection is closed after it too); for HTTP/2 the first request must
//!    arrive within it, and HTTP/2 keep-alive pings find dead peers after;
//! 4. bounds each request, body included, by [`Limits::request_timeout`]
//!    (answered with `408 Request Timeout`).
//!
//! On shutdown the listener is closed at once (new connections are
//! refused), connections still in the handshake are dropped, HTTP/1
//! connections finish their request in flight and close, HTTP/2 connections
//! get a GOAWAY and finish their open streams. Whatever is still running
//! after [`Limits::drain_timeout`] is cut.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::Request;
use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutLayer;

use super::tls::ReloadingTls;

/// Time limits of the HTTPS server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time allowed for a request head to arrive (HTTP/1: every request and
    /// idle keep-alive; HTTP/2: the first request of a connection).
    pub header_read_timeout: Duration,
    /// Time allowed for one request, reading its body included.
    pub request_timeout: Duration,
    /// Time allowed for the TLS handshake, counted from accept.
    pub handshake_timeout: Duration,
    /// Time allowed on shutdown for requests in flight to finish.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(5),
            // The API server waits at most `timeoutSeconds` (default 10s)
            // for a webhook.
            request_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// Limits of the HTTP/2 side that are not worth a knob.
const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// The listen backlog: connections the kernel has set up and `accept` has not taken yet.
/// std and tokio bind with 128; a burst of connections (a flood of idle ones, or many
/// clients reconnecting at once) overflows that, and the kernel then drops new SYNs, a
/// well-behaved client's too, which it sends again only after a second. Go servers
/// (kube-apiserver) use the kernel's `somaxconn`, 4096 by default; the kernel caps the
/// value there.
pub const LISTEN_BACKLOG: u32 = 4096;
/// Pause after an accept error that is not about one connection (for
/// example out of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Binds `addr` as `TcpListener::bind` does (`SO_REUSEADDR`), with a backlog of
/// [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then
/// drains as described in the module docs. Certificates come from `tls`
/// per connection, so a reloaded certificate is used by the next handshake.
/// Returns after the drain; errors only if the listener is unusable.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ReloadingTls>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve(listener, Some(tls), app, limits, shutdown).await
}

/// Serves `app` over plain HTTP/1.1 (the admin port: health, metrics),
/// with the default [`Limits`] and the same graceful shutdown.
pub async fn serve_plain(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve(listener, None, app, Limits::default(), shutdown).await
}

/// Everything a connection task needs, shared.
struct Shared {
    app: Router,
    tls: Option<Arc<ReloadingTls>>,
    limits: Limits,
    http1: Builder<TokioExecutor>,
    http2: Builder<TokioExecutor>,
}

async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ReloadingTls>>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let app = app.layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout));
    let shared = Arc::new(Shared { app, tls, limits, http1: http1_builder(&limits), http2: http2_builder() });

    let graceful = GracefulShutdown::new();
    // Tells connections still in the TLS handshake to give up.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    tracing::info!(%local, scheme, "listening");

    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = joined
                    && error.is_panic()
                {
                    tracing::error!(%error, "connection task panicked");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    connections.spawn(connection(
                        tcp,
                        peer,
                        shared.clone(),
                        graceful.watcher(),
                        stop_rx.clone(),
                    ));
                }
                Err(error) if is_connection_error(&error) => {
                    tracing::debug!(%error, "accept: connection failed before it was accepted");
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }

    // Refuse new connections from now on.
    drop(listener);
    let _ = stop_tx.send(true);
    tracing::info!(
        %local,
        connections = connections.len(),
        drain_timeout = ?limits.drain_timeout,
        "shutting down; draining connections"
    );
    match tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!(%local, "all connections drained"),
        Err(_) => {
            tracing::warn!(
                %local,
                connections = connections.len(),
                "drain timeout; closing the remaining connections"
            );
            connections.abort_all();
        }
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

fn http1_builder(limits: &Limits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    builder
}

fn http2_builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new()).http2_only();
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
    builder
}

/// Errors of one connection that got reset before `accept` returned it;
/// the listener is fine.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    watcher: Watcher,
    mut stop: watch::Receiver<bool>,
) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, %error, "set_nodelay failed");
    }
    let Some(tls) = &shared.tls else {
        serve_http(tcp, false, peer, &shared, watcher).await;
        return;
    };
    let acceptor = TlsAcceptor::from(tls.server_config());
    let handshake = tokio::time::timeout(shared.limits.handshake_timeout, acceptor.accept(tcp));
    let stream = tokio::select! {
        result = handshake => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, timeout = ?shared.limits.handshake_timeout, "TLS handshake timed out");
                return;
            }
        },
        _ = stop.wait_for(|stopping| *stopping) => return,
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    serve_http(stream, h2, peer, &shared, watcher).await;
}

async fn serve_http<IO>(io: IO, h2: bool, peer: SocketAddr, shared: &Shared, watcher: Watcher)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    // Set when the first request head has been read (HTTP/2 deadline).
    let seen = Arc::new(AtomicBool::new(false));
    let service = {
        let seen = seen.clone();
        shared.app.clone().map_request(move |request: Request<Incoming>| {
            seen.store(true, Ordering::Relaxed);
            request
        })
    };
    let service = TowerToHyperService::new(service);
    let builder = if h2 { &shared.http2 } else { &shared.http1 };
    let conn = watcher.watch(builder.serve_connection(TokioIo::new(io), service));
    tokio::pin!(conn);

    let result = if h2 {
        let first_request = tokio::time::sleep(shared.limits.header_read_timeout);
        tokio::select! {
            result = &mut conn => result,
            () = first_request => {
                if !seen.load(Ordering::Relaxed) {
                    tracing::debug!(%peer, "no HTTP/2 request within the header read timeout; closing");
                    return;
                }
                conn.await
            }
        }
    } else {
        conn.await
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection closed with an error");
    }
}
