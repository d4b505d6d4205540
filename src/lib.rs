//! pitrguard: stops bad KubeBlocks point-in-time restores at `kubectl apply`.
//!
//! - [`core`]: the rules, pure functions of (OpsRequest, inventory)
//!   (re-exported from the `pitrguard-core` crate, which also builds for wasm32).
//! - [`crd`]: types generated from the real KubeBlocks CRDs (same crate).
//! - [`load`]: manifests from files, and the file-backed inventory.
//! - [`admission`], [`server`]: the webhook; [`inventory`]: what it judges against.
//! - [`policy_module`]: the rules' WebAssembly build, run in wasmtime (`--policy-module`).
//! - [`reconcile`]: the bundled reconciler.
//! - [`cli`]: the `pitrguard` command line.

// One exception, allowed where it is: `memory` calls into the allocator.
#![deny(unsafe_code)]

// Without the `runtime` feature only the offline part builds: decisions, loading, the
// reconciler's object builders and (with `module-host`) the policy module's host.
pub mod admission;
#[cfg(feature = "runtime")]
pub mod certs;
#[cfg(feature = "runtime")]
pub mod cli;
#[cfg(feature = "runtime")]
pub mod file_watch;
pub mod inventory;
pub mod json_text;
pub mod load;
#[cfg(feature = "runtime")]
pub mod logging;
pub mod memory;
#[cfg(feature = "runtime")]
pub mod metrics;
#[cfg(feature = "module-host")]
pub mod policy_module;
pub mod reconcile;
#[cfg(feature = "runtime")]
pub mod server;

pub use pitrguard_core::{core, crd, module_abi};
