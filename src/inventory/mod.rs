//! Where the inventory comes from at run time: one [`SharedInventory`] that
//! the file loader fills once, or that live watches keep current, and that
//! the webhook reads.

#[cfg(feature = "runtime")]
pub mod live;
#[cfg(feature = "runtime")]
mod relist;
#[cfg(feature = "runtime")]
pub mod slim;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::core::Inventory;
use crate::core::inventory::{Counts, Index, Overlay};

/// The core's [`Index`] behind a lock, with readiness.
#[derive(Debug, Default)]
pub struct SharedInventory {
    index: RwLock<Index>,
    ready: AtomicBool,
}

impl SharedInventory {
    /// An inventory that is complete from the start (files).
    pub fn ready(index: Index) -> Self {
        Self { index: RwLock::new(index), ready: AtomicBool::new(true) }
    }

    /// An inventory that answers only after [`Self::mark_ready`] (live watches).
    pub fn pending() -> Self {
        Self::default()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Index> {
        // A writer that panicked left a consistent index (every write is one
        // map operation), so a poisoned lock is still safe to read.
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn counts(&self) -> Counts {
        self.read().counts()
    }
}

/// Reads a namespace's Backups straight from the API server, for a denial that
/// Backups newer than the cache could overturn (read-your-writes).
#[cfg(feature = "runtime")]
pub trait FreshBackups: Send + Sync {
    fn backups_in(&self, namespace: String) -> futures::future::BoxFuture<'static, anyhow::Result<Index>>;
}

/// A way to read an inventory for code that cannot hold a lock guard across its
/// own calls: the policy module reads it once per host call.
pub trait View: Send + Sync {
    fn with(&self, f: &mut dyn FnMut(&dyn Inventory));
}

impl View for SharedInventory {
    fn with(&self, f: &mut dyn FnMut(&dyn Inventory)) {
        f(&*self.read())
    }
}

impl View for Index {
    fn with(&self, f: &mut dyn FnMut(&dyn Inventory)) {
        f(self)
    }
}

/// The shared inventory with one namespace's Backups as the API server has them
/// now (read-your-writes, see `server::webhook`).
pub struct FreshView {
    pub base: std::sync::Arc<SharedInventory>,
    pub namespace: String,
    pub fresh: Index,
}

impl View for FreshView {
    fn with(&self, f: &mut dyn FnMut(&dyn Inventory)) {
        let base = self.base.read();
        f(&Overlay { base: &*base, namespace: &self.namespace, fresh: &self.fresh })
    }
}
