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

// One exception, allowed where it is: `memory::give_back_freed` calls into the allocator.
#![deny(unsafe_code)]

pub mod admission;
pub mod certs;
pub mod cli;
pub mod file_watch;
pub mod inventory;
pub mod load;
pub mod memory;
pub mod metrics;
pub mod policy_module;
pub mod reconcile;
pub mod server;

pub use pitrguard_core::{core, crd, module_abi};
