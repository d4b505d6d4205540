//! A re-list's Backups, indexed on a thread of their own while the list arrives.
//!
//! The watch decodes each page of the list on a runtime worker and frees the page's objects as
//! their facts are indexed. Indexed on that worker, the index's names and tree nodes would land in
//! the holes the page's objects leave, a few per allocator page, and keep every such page resident
//! long after the rest of it is free. A thread of its own has a heap of its own (mimalloc's heaps
//! are per thread): the index is packed into pages of its own, and the pages of the decoded list
//! are freed whole.

use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::core::facts::BackupFacts;
use crate::core::inventory::Index;

pub enum RelistedBackups {
    /// Facts go to the thread that indexes them.
    Thread { facts: mpsc::Sender<BackupFacts<'static>>, index: JoinHandle<Index> },
    /// The thread could not be started: indexed where the facts arrive.
    Here(Index),
}

impl Default for RelistedBackups {
    fn default() -> Self {
        let (facts, arriving) = mpsc::channel::<BackupFacts<'static>>();
        let thread = std::thread::Builder::new().name("pitrguard-index".into()).spawn(move || {
            let mut index = Index::new();
            for b in arriving {
                index.apply_backup(b);
            }
            index
        });
        match thread {
            Ok(index) => Self::Thread { facts, index },
            Err(error) => {
                tracing::warn!(%error, "could not start the thread that indexes a re-list; indexing on the watch's own");
                Self::Here(Index::new())
            }
        }
    }
}

impl RelistedBackups {
    pub fn push(&mut self, b: BackupFacts<'static>) {
        match self {
            Self::Thread { facts, .. } => {
                // The thread ends only when this sender is dropped, or by a panic, which `finish`
                // passes on.
                let _ = facts.send(b);
            }
            Self::Here(index) => index.apply_backup(b),
        }
    }

    /// The index of every Backup pushed. Waits for the thread to index what is still queued: the
    /// tail of the last page, since it indexes faster than pages are decoded.
    pub fn finish(self) -> Index {
        match self {
            Self::Thread { facts, index } => {
                drop(facts);
                index.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }
            Self::Here(index) => index,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::slim::tests::backup;

    #[test]
    fn every_backup_pushed_is_in_the_finished_index() {
        let mut relist = RelistedBackups::default();
        assert!(matches!(relist, RelistedBackups::Thread { .. }));
        for i in 0..1000 {
            relist.push(backup(&format!("b-{i}")));
        }
        relist.push(backup("b-7")); // again: replaced, not added
        let index = relist.finish();
        assert_eq!(index.counts().backups, 1000);
        assert!(crate::core::Inventory::backup(&index, "ns", "b-999").is_some());
    }
}
