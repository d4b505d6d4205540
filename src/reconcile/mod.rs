//! The bundled reconciler (SPEC §7): `perform` does for an admitted Restore OpsRequest what
//! KubeBlocks' OpsRequest controller does (KubeBlocks 1.0/1.1 with that controller switched off),
//! `observe` only reports, as Events and metrics, what happens to restores KubeBlocks runs.
//!
//! ```text
//!  discovery ──► Flavour ──► lease (leader only) ──► Controller(OpsRequests)
//!                                                     ▲ Clusters (by ops-request annotation)
//!                                                     ▲ DataProtection Restores (by instance label)
//!                                                     └─► perform::reconcile | observe::reconcile
//! ```
//! Every reconcile reads the OpsRequest afresh and writes with a resourceVersion precondition, so
//! a stale cache or a second leader can never write twice.

// The object builders are pure (and fuzzed: fuzz/fuzz_targets/restore_annotation.rs); the rest
// talks to a cluster.
pub mod cluster;
#[cfg(feature = "runtime")]
mod controller;
#[cfg(feature = "runtime")]
pub mod flavour;
#[cfg(feature = "runtime")]
pub mod leader;
#[cfg(feature = "runtime")]
pub mod observe;
#[cfg(feature = "runtime")]
pub mod ops;
#[cfg(feature = "runtime")]
pub mod perform;

#[cfg(feature = "runtime")]
pub use controller::{Config, Ctx, Error, Mode, preflight, restore_resource, run};
#[cfg(feature = "runtime")]
pub use flavour::Flavour;
