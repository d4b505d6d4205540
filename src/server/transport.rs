//! Serving an axum Router over TLS with timeouts and graceful shutdown. (in progress)
