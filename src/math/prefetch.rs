//! Software prefetch of a slice's cache lines. Tier2 rows are gathered in
//! an order the hardware cannot predict, so the pipeline asks for the next
//! rows while it scores the current one. A no-op where unsupported.

/// Asks the CPU to bring every 64-byte line of `data` towards L1.
#[inline]
pub fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = data.as_ptr().cast::<i8>();
        let bytes = std::mem::size_of_val(data);
        for off in (0..bytes).step_by(64) {
            // SAFETY: `off < bytes`, so the address is inside `data`; a
            // prefetch never faults and has no visible effect (SSE, baseline
            // on x86_64).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}
