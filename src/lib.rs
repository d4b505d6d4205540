//! pitrguard: stops bad KubeBlocks point-in-time restores at `kubectl apply`.
//!
//! - [`core`]: the rules, pure functions of (OpsRequest, inventory).
//! - [`crd`]: types generated from the real KubeBlocks CRDs.
//! - [`load`]: manifests from files, and the file-backed inventory.
//! - [`cli`]: the `pitrguard` command line.

#![forbid(unsafe_code)]

pub mod admission;
pub mod certs;
pub mod cli;
pub mod core;
pub mod crd;
pub mod inventory;
pub mod load;
pub mod metrics;
pub mod reconcile;
pub mod server;
