//! The process allocator, tuned for batch work (`kiroku compact`, `kiroku verify`).
//!
//! Compaction allocates and frees buffers of a few hundred KiB to a few MiB all the
//! time (Parquet pages and their compressed copies, column builders, segment buffers).
//! With glibc's defaults, memory freed at the top of a heap beyond a small threshold is
//! returned to the kernel and the next allocation faults fresh pages in again: about
//! 90,000 page faults compacting 200,000 records. Keeping up to 256 MiB of freed memory,
//! and serving requests up to 32 MiB from the heap rather than from fresh mappings,
//! made the same run 4% faster (`GLIBC_TUNABLES` A/B in BENCHMARKS.md). The proxy and
//! the library keep the defaults: a long-running server should give memory back.

/// Keep freed memory in the process for reuse (glibc on Linux; elsewhere nothing).
/// Call once, early, in a process that does batch work.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets allocator parameters; both values are within the
    // ranges glibc documents (the mmap threshold's maximum is 32 MiB on 64-bit).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
