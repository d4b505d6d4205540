//! pitrguard's pure rule core, shared by the `pitrguard` binary (admission,
//! CLI, reconciler) and the WebAssembly policy module (`pitrguard-policy`).
//!
//! - [`core`]: the rules, pure functions of (OpsRequest, inventory).
//! - [`crd`]: types generated from the real KubeBlocks CRDs.
//! - [`module_abi`]: what the policy module and its hosts agree on (settings,
//!   audit annotations).
//!
//! Nothing here does I/O, reads a clock or needs an async runtime
//! (`tests/core_is_pure.rs` at the workspace root keeps it that way), so the
//! crate builds for `wasm32-wasip1`.

#![forbid(unsafe_code)]

pub mod core;
pub mod crd;
pub mod module_abi;
