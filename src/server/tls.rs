//! TLS for the webhook: rustls config, certificate reload. (in progress)
