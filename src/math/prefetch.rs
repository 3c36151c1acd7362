//! Software prefetch of a slice's cache lines. Tier2 rows are gathered in
//! an order the hardware cannot predict, so the pipeline asks for the next
//! rows while it scores the current one. A no-op where unsupported.

/// Asks the CPU to bring every 64-byte line of `data` towards L1.
#[inline]
pub fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    lines::<T, { std::arch::x86_64::_MM_HINT_T0 }>(data);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Asks the CPU to bring every 64-byte line of `data` into L2 (not L1).
/// For long reads asked for well ahead, such as whole float32 rows: a
/// prefetch into L1 holds one of the core's few L1 miss buffers until its
/// line arrives, and a loop asking for 4 rows of 24 to 96 lines each
/// stalls on them (perf: most of a debian-minilm-384 query's rescoring
/// samples on one `prefetcht0`); L2 tracks many more misses, and the
/// row's sequential read from L2 is cheap (blueprint 3.6).
#[inline]
pub fn prefetch_l2<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    lines::<T, { std::arch::x86_64::_MM_HINT_T1 }>(data);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lines<T, const HINT: i32>(data: &[T]) {
    use std::arch::x86_64::_mm_prefetch;
    let start = data.as_ptr().cast::<i8>();
    let bytes = std::mem::size_of_val(data);
    for off in (0..bytes).step_by(64) {
        // SAFETY: `off < bytes`, so the address is inside `data`; a
        // prefetch never faults and has no visible effect (SSE, baseline
        // on x86_64).
        unsafe { _mm_prefetch::<HINT>(start.add(off)) };
    }
}
