//! How the process asks glibc for memory. Set once, before any thread starts.

/// Allocations of at least this many bytes get their own mapping, returned to the system when
/// freed. It is glibc's own starting value; what changes is that glibc no longer raises it.
pub const MAP_AT_LEAST_BYTES: i32 = 128 * 1024;

/// Keeps large allocations out of the heap. glibc raises its mapping threshold each time a
/// mapped block is freed (up to 32 MiB), after which the run's large, short-lived buffers
/// (downloaded bulk results, journal entries, output parts) are carved out of the heap, and the
/// holes they leave between long-lived answers are never given back (docs/benchmarks.md has
/// what that cost). Fixing the threshold also stops the dynamic adjustment. Must be
/// called before any other thread exists, as glibc's allocator settings are process-wide.
/// `false` when glibc refused (the defaults stay: more memory, nothing else); `true` elsewhere
/// than glibc, whose allocators have no such threshold.
#[must_use]
pub fn map_large_allocations() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes no pointers and only changes the allocator's parameters, under
    // glibc's own arena lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MAP_AT_LEAST_BYTES) != 0
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_takes_the_threshold() {
        assert!(super::map_large_allocations(), "mallopt refused M_MMAP_THRESHOLD={}", super::MAP_AT_LEAST_BYTES);
    }
}
