//! Giving freed memory back to the system after a crowd leaves or arrives.
//!
//! glibc's allocator keeps freed memory in its arenas for reuse: after 2,000
//! users left, a server measured 40 MiB resident against a 12 MiB baseline,
//! and it stayed there; after 19,000 arrived, each held 2.1 KiB more than
//! it needed. `malloc_trim` returns the free pages. The logic task calls
//! [`release_free_memory`] when the number of sessions has fallen to half
//! of its peak, or grown by half and settled, since the last call
//! (docs/RELIABILITY.md and docs/BENCHMARKS.md have the figures). It is the
//! only `unsafe` in Plaza.
#![allow(unsafe_code)]

/// Returns free heap memory to the system (glibc on Linux; elsewhere a
/// no-op). Takes a few milliseconds; run it off the logic task.
pub(crate) fn release_free_memory() {
    let started = std::time::Instant::now();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only releases memory that is
    // already free; glibc makes it safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
    tracing::debug!(took = ?started.elapsed(), "gave freed memory back");
}
