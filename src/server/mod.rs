//! The HTTPS admission server and the plain-HTTP admin server.

pub mod admin;
pub mod tls;
pub mod transport;
pub mod webhook;
