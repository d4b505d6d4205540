//! Giving freed memory back to the system.
//!
//! Loading an inventory decodes every object once and keeps a few hundred bytes of it; the
//! rest is freed, across the decoding threads' heaps. mimalloc keeps such pages for reuse by
//! default, so the resident size after a load would be the load's peak, not the index.

/// mimalloc's `mi_option_purge_delay` (mimalloc.h; libmimalloc-sys names no constant for it).
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes the allocator give a page back to the system as soon as it is free, rather than after
/// mimalloc's default delay (1 s in mimalloc 3): with the default, the pages freed while the
/// watches' lists were decoded stayed resident long after the index was built. Measured on a
/// live inventory of 10 000 Backups (BENCHMARKS.md, "live"): 899 instead of 2 133 resident bytes
/// per Backup, 1 948 instead of 5 766 at the peak; under h2load the webhook made 0.005 more
/// `madvise` calls per request. Call it first thing in `main`.
#[allow(unsafe_code)]
pub fn purge_freed_pages_at_once() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: mi_option_set only stores an option's value; the purge delay may change at any time.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

/// Returns the allocator's free pages to the system (mimalloc: `mi_collect(true)`); with
/// glibc's malloc (`--no-default-features --features runtime`), nothing to do here.
#[allow(unsafe_code)]
pub fn give_back_freed() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: mi_collect only walks mimalloc's own heaps; it is safe to call from any thread at any time.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

/// Counts the times much was freed at once (a list indexed); see [`on_worker_idle`].
static FREED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    /// The value of [`FREED`] when this thread last gave its free pages back.
    static GIVEN_BACK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// [`give_back_freed`] here, and on each runtime worker the next time it goes idle
/// ([`on_worker_idle`]): mimalloc's heaps are per thread, and a list decoded on one worker and
/// indexed on another thread leaves free pages in the heaps of both workers.
pub fn give_back_freed_everywhere() {
    FREED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    give_back_freed();
}

/// For the runtime's `on_thread_park`: gives this worker's free pages back once after each
/// [`give_back_freed_everywhere`]; otherwise one atomic load.
pub fn on_worker_idle() {
    let freed = FREED.load(std::sync::atomic::Ordering::Relaxed);
    GIVEN_BACK.with(|given| {
        if given.get() != freed {
            given.set(freed);
            give_back_freed();
        }
    });
}
