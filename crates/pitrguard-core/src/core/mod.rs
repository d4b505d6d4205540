//! The pure core: point-in-time-restore rules as plain functions of
//! (OpsRequest, inventory). No I/O, no clock, no async runtime here; this
//! module is meant to compile to WebAssembly as a policy module. A test
//! (`tests/core_is_pure.rs`) keeps it that way.
//!
//! ```text
//!  object (JSON text) ──► judge_json ──► request::decode_json ──► rules::evaluate ──► Decision
//!                                                                   │    ▲               │
//!                                                          window ◄─┘    │               └─► mutate::to_patch
//!                                                                   Inventory (trait; Index)
//! ```

pub mod decision;
pub mod facts;
pub mod inventory;
pub mod judge;
pub mod mutate;
pub mod request;
pub mod rules;
pub mod time;
pub mod window;

#[cfg(test)]
mod tests;

pub use decision::{Decision, Rule, Violation, Warning, WarningId};
pub use facts::{ActionSetFacts, BackupFacts};
pub use inventory::{Index, Inventory};
pub use judge::{Operation, judge, judge_head, judge_json};
pub use rules::Policy;
pub use window::BaseEdge;
