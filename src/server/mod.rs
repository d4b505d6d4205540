//! The HTTPS admission server and the plain-HTTP admin server.

pub mod tls;
pub mod transport;
