//! Giving freed memory back to the system after a bulk load.
//!
//! Loading an inventory decodes every object once and keeps a few hundred bytes of it; the
//! rest is freed, across the decoding threads' heaps. mimalloc keeps such pages for reuse by
//! default, so the resident size after a load would be the load's peak, not the index.

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
