//! The global allocator, and what it counts.
//!
//! Every shipped build is static with musl, whose allocator (mallocng) keeps the pages of
//! the groups it has touched: measured by bench/soak, the daemon's anonymous memory grew
//! 356 KiB over 100 probes while its heap grew 39 KiB. Those builds use dlmalloc (a Rust port
//! of Doug Lea's allocator: best-fit bins that reuse freed memory first, coalescing, large
//! blocks mapped apart and given back) in its place: the same 100 probes, +67 KiB (trend),
//! for 13 KiB more executable. Other builds (tests, development) keep the system allocator.
//!
//! With feature `heap-stats` (a build for benchmarks: `bench/soak`), the global allocator
//! also counts the bytes in use, so that a long run can tell the heap from RSS (an allocator
//! may keep freed pages: RSS alone does not say whether memory leaks). `/metrics` then
//! carries `netmode_heap_bytes` and `netmode_heap_allocations_total`. Without the feature,
//! nothing is counted and the metrics are absent.

/// The allocator underneath (the counting one wraps it).
#[cfg(target_env = "musl")]
const UNDER: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;
#[cfg(all(not(target_env = "musl"), feature = "heap-stats"))]
const UNDER: std::alloc::System = std::alloc::System;

#[cfg(all(target_env = "musl", not(feature = "heap-stats")))]
#[global_allocator]
static GLOBAL: dlmalloc::GlobalDlmalloc = UNDER;

#[cfg(feature = "heap-stats")]
mod counting {
    use super::UNDER;
    use std::alloc::{GlobalAlloc, Layout};
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

    pub static LIVE: AtomicUsize = AtomicUsize::new(0);
    pub static PEAK: AtomicUsize = AtomicUsize::new(0);
    pub static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
    /// Allocations of at least this many bytes are reported with their backtrace
    /// (`NETMODE_HEAP_TRAP_BYTES`, read at start; 0: none).
    pub static TRAP: AtomicUsize = AtomicUsize::new(0);

    thread_local! {
        static IN_TRAP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    fn count(size: usize) {
        let live = LIVE.fetch_add(size, Relaxed) + size;
        PEAK.fetch_max(live, Relaxed);
        ALLOCATIONS.fetch_add(1, Relaxed);
        let trap = TRAP.load(Relaxed);
        if trap > 0 && size >= trap {
            // The report allocates: not again from inside it.
            let _ = IN_TRAP.try_with(|t| {
                if !t.replace(true) {
                    eprintln!(
                        "heap: {size} bytes allocated at\n{}",
                        std::backtrace::Backtrace::force_capture()
                    );
                    t.set(false);
                }
            });
        }
    }

    pub struct Counting;

    // SAFETY: every call is passed to the allocator underneath unchanged; only counters are
    // added.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract is the allocator's underneath.
            let p = unsafe { UNDER.alloc(layout) };
            if !p.is_null() {
                count(layout.size());
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as alloc.
            let p = unsafe { UNDER.alloc_zeroed(layout) };
            if !p.is_null() {
                count(layout.size());
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as alloc.
            unsafe { UNDER.dealloc(ptr, layout) };
            LIVE.fetch_sub(layout.size(), Relaxed);
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as alloc.
            let p = unsafe { UNDER.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                LIVE.fetch_sub(layout.size(), Relaxed);
                count(new_size);
            }
            p
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;
}

/// The heap now: bytes in use and allocations made since start (`None` without the
/// feature).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heap {
    pub bytes: usize,
    /// The most bytes ever in use at once: an allocator keeps (at least) the peak's pages.
    pub peak_bytes: usize,
    pub allocations: u64,
}

/// Start reporting allocations of at least `NETMODE_HEAP_TRAP_BYTES` with their backtrace
/// (feature heap-stats only; finding what makes a peak).
pub fn trap_from_env() {
    #[cfg(feature = "heap-stats")]
    if let Some(n) = std::env::var("NETMODE_HEAP_TRAP_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        counting::TRAP.store(n, std::sync::atomic::Ordering::Relaxed);
    }
}

pub fn now() -> Option<Heap> {
    #[cfg(feature = "heap-stats")]
    {
        use std::sync::atomic::Ordering::Relaxed;
        Some(Heap {
            bytes: counting::LIVE.load(Relaxed),
            peak_bytes: counting::PEAK.load(Relaxed),
            allocations: counting::ALLOCATIONS.load(Relaxed),
        })
    }
    #[cfg(not(feature = "heap-stats"))]
    None
}
