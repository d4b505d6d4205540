//! `--policy-module FILE`: the rules' WebAssembly build (`pitrguard-policy.wasm`,
//! SPEC.md §8) judges instead of the built-in core, in wasmtime, with its
//! Kubewarden host calls answered from pitrguard's own inventory.
//!
//! ```text
//!  request ──► queue ──► worker thread (its own Instance of the current Compiled)
//!                             │ validate ──► module ──host calls──► capabilities ──► inventory View
//!  Answer  ◄── answer.rs ◄────┘ ModuleAnswer, or ModuleError (deadline, trap): a denial that says so
//!
//!  file changes ──► file_watch ──► reload: compile + check; a module that fails keeps the old one
//! ```

pub mod answer;
pub mod capabilities;
#[cfg(feature = "runtime")]
mod pool;
pub mod runtime;

#[cfg(feature = "runtime")]
pub use pool::{LoadError, POLL_INTERVAL, PolicyModule};
pub use runtime::{Compiled, Instance, Limits, ModuleAnswer, ModuleError, Runtime};
