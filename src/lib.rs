//! pitrguard: stops bad KubeBlocks point-in-time restores at `kubectl apply`.
//!
//! - [`core`]: the rules, pure functions of (OpsRequest, inventory)
//!   (re-exported from the `pitrguard-core` crate, which also builds for wasm32).
//! - [`crd`]: types generated from the real KubeBlocks CRDs (same crate).
//! - [`load`]: manifests from files, and the file-backed inventory.
//! - [`cli`]: the `pitrguard` command line.

#![forbid(unsafe_code)]

pub mod admission;
pub mod certs;
pub mod cli;
pub mod inventory;
pub mod load;
pub mod metrics;
pub mod reconcile;
pub mod server;

pub use pitrguard_core::{core, crd};
