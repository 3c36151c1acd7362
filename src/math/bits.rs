//! Popcount kernels over 1-bit codes stored as little-endian `u64` words.
//!
//! A code row has `words` words; dimension `i` is bit `i % 64` of word `i / 64`.
//! Query bit-planes are stored plane after plane: `planes[j * words + w]` is
//! bit `j` of the levels of the dimensions in word `w`.

/// `(codes, words, planes, bits, seg_words, out)`: see [`plane_scan_portable`].
pub type PlaneScanFn = fn(&[u64], usize, &[u64], usize, usize, &mut [u32]);
/// `(codes, words, query_code, out)`: see [`hamming_scan_portable`].
pub type HammingScanFn = fn(&[u64], usize, &[u64], &mut [u32]);

/// For each row and each segment of `seg_words` words, writes the pair
/// `(sum_j 2^j * popcount(code & plane_j), popcount(code))` to
/// `out[2 * (row * nseg + seg)..][..2]`: the dot product of the row's bits
/// with the query's integer levels, and the number of set bits.
#[inline(always)]
fn plane_scan_impl(
    codes: &[u64],
    words: usize,
    planes: &[u64],
    bits: usize,
    seg_words: usize,
    out: &mut [u32],
) {
    let nseg = words.div_ceil(seg_words);
    for (row, o) in codes
        .chunks_exact(words)
        .zip(out.chunks_exact_mut(2 * nseg))
    {
        for (seg, slot) in o.chunks_exact_mut(2).enumerate() {
            let start = seg * seg_words;
            let end = (start + seg_words).min(words);
            let (mut acc, mut pop) = (0u32, 0u32);
            for (w, &c) in row.iter().enumerate().take(end).skip(start) {
                pop += c.count_ones();
                for j in 0..bits {
                    acc += (c & planes[j * words + w]).count_ones() << j;
                }
            }
            slot[0] = acc;
            slot[1] = pop;
        }
    }
}

/// Hamming distance of every row to `query`, written to `out[row]`.
#[inline(always)]
fn hamming_scan_impl(codes: &[u64], words: usize, query: &[u64], out: &mut [u32]) {
    for (row, o) in codes.chunks_exact(words).zip(out.iter_mut()) {
        *o = row
            .iter()
            .zip(query)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
    }
}

/// Portable build of the bit-plane scan (no target features).
pub fn plane_scan_portable(
    codes: &[u64],
    words: usize,
    planes: &[u64],
    bits: usize,
    seg_words: usize,
    out: &mut [u32],
) {
    plane_scan_impl(codes, words, planes, bits, seg_words, out);
}

/// Portable build of the Hamming scan.
pub fn hamming_scan_portable(codes: &[u64], words: usize, query: &[u64], out: &mut [u32]) {
    hamming_scan_impl(codes, words, query, out);
}

/// Bit-by-bit reference for [`plane_scan_portable`], used only by tests.
pub fn plane_scan_reference(
    codes: &[u64],
    words: usize,
    levels: &[u32],
    seg_words: usize,
    out: &mut [u32],
) {
    let nseg = words.div_ceil(seg_words);
    for (r, row) in codes.chunks_exact(words).enumerate() {
        for seg in 0..nseg {
            let (mut acc, mut pop) = (0u32, 0u32);
            let end = ((seg + 1) * seg_words).min(words);
            for (w, &word) in row.iter().enumerate().take(end).skip(seg * seg_words) {
                for b in 0..64 {
                    if (word >> b) & 1 == 1 {
                        pop += 1;
                        acc += levels.get(w * 64 + b).copied().unwrap_or(0);
                    }
                }
            }
            out[2 * (r * nseg + seg)] = acc;
            out[2 * (r * nseg + seg) + 1] = pop;
        }
    }
}

/// x86_64 builds of the kernels with the `popcnt` instruction enabled.
#[cfg(target_arch = "x86_64")]
pub mod x86 {
    #[target_feature(enable = "popcnt")]
    unsafe fn plane_scan_inner(
        codes: &[u64],
        words: usize,
        planes: &[u64],
        bits: usize,
        seg_words: usize,
        out: &mut [u32],
    ) {
        super::plane_scan_impl(codes, words, planes, bits, seg_words, out);
    }

    #[target_feature(enable = "popcnt")]
    unsafe fn hamming_scan_inner(codes: &[u64], words: usize, query: &[u64], out: &mut [u32]) {
        super::hamming_scan_impl(codes, words, query, out);
    }

    /// AVX-512 VPOPCNTDQ build: a segment's words (up to 8 per register) are
    /// ANDed with every plane and popcounted in one vector each, and the
    /// lane sums are reduced once per segment.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    unsafe fn plane_scan_avx512_inner(
        codes: &[u64],
        words: usize,
        planes: &[u64],
        bits: usize,
        seg_words: usize,
        out: &mut [u32],
    ) {
        let nseg = words.div_ceil(seg_words);
        if nseg == 1 && words <= 8 && bits <= 8 {
            // SAFETY: same contract as this function.
            return unsafe { plane_scan_avx512_short(codes, words, planes, bits, out) };
        }
        use std::arch::x86_64::*;
        debug_assert!(planes.len() >= bits * words);
        for (row, o) in codes
            .chunks_exact(words)
            .zip(out.chunks_exact_mut(2 * nseg))
        {
            for (seg, slot) in o.chunks_exact_mut(2).enumerate() {
                let start = seg * seg_words;
                let end = (start + seg_words).min(words);
                // Low 32 bits of each lane: level dot; high 32 bits: popcount.
                // One reduction per segment instead of two; neither half can
                // overflow (a segment has < 2^24 bits, levels < 2^8).
                let mut acc = _mm512_setzero_si512();
                for w in (start..end).step_by(8) {
                    let lanes = (end - w).min(8);
                    let m: __mmask8 = (0xFFu16 >> (8 - lanes)) as u8;
                    // SAFETY: lanes beyond `end - w` are masked off, so the
                    // loads read only `row[w..end]` and `planes[j*words+w..]`,
                    // which are in bounds (row has `words`, planes `bits*words`).
                    let c = unsafe { _mm512_maskz_loadu_epi64(m, row.as_ptr().add(w).cast()) };
                    acc = _mm512_add_epi64(acc, _mm512_slli_epi64::<32>(_mm512_popcnt_epi64(c)));
                    for j in 0..bits {
                        // SAFETY: see above.
                        let p = unsafe {
                            _mm512_maskz_loadu_epi64(m, planes.as_ptr().add(j * words + w).cast())
                        };
                        let cnt = _mm512_popcnt_epi64(_mm512_and_si512(c, p));
                        acc = _mm512_add_epi64(
                            acc,
                            _mm512_sllv_epi64(cnt, _mm512_set1_epi64(j as i64)),
                        );
                    }
                }
                let both = _mm512_reduce_add_epi64(acc) as u64;
                slot[0] = both as u32;
                slot[1] = (both >> 32) as u32;
            }
        }
    }

    /// Rows of at most 8 words, one segment: the planes stay in registers,
    /// and rows are read with full-width loads (the lanes past the row are
    /// zeroed) except where that would run past the slice.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    unsafe fn plane_scan_avx512_short(
        codes: &[u64],
        words: usize,
        planes: &[u64],
        bits: usize,
        out: &mut [u32],
    ) {
        use std::arch::x86_64::*;
        let m: __mmask8 = (0xFFu16 >> (8 - words)) as u8;
        let mut pv = [_mm512_setzero_si512(); 8];
        for (j, v) in pv.iter_mut().enumerate().take(bits) {
            // SAFETY: the mask keeps the load inside `planes[j*words..][..words]`.
            *v = unsafe { _mm512_maskz_loadu_epi64(m, planes.as_ptr().add(j * words).cast()) };
        }
        let rows = codes.len() / words;
        for (r, slot) in out.chunks_exact_mut(2).enumerate().take(rows) {
            let at = r * words;
            if at + 128 < codes.len() {
                // Hardware prefetchers lose track of 48-byte strides across
                // pages; ask for the line 1 KiB ahead explicitly (measured best of
                // 0.5, 1 and 2 KiB with benches/kernels.rs).
                // SAFETY: a prefetch of an in-bounds address has no effect
                // on program state.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(codes.as_ptr().add(at + 128).cast()) };
            }
            let c = if at + 8 <= codes.len() {
                // SAFETY: `at + 8 <= codes.len()`, so the full load is in bounds;
                // lanes past this row are zeroed by the mask.
                _mm512_maskz_mov_epi64(m, unsafe {
                    _mm512_loadu_si512(codes.as_ptr().add(at).cast())
                })
            } else {
                // SAFETY: masked to this row's `words` words, all in bounds.
                unsafe { _mm512_maskz_loadu_epi64(m, codes.as_ptr().add(at).cast()) }
            };
            let mut acc = _mm512_slli_epi64::<32>(_mm512_popcnt_epi64(c));
            for (j, p) in pv.iter().enumerate().take(bits) {
                let cnt = _mm512_popcnt_epi64(_mm512_and_si512(c, *p));
                acc = _mm512_add_epi64(acc, _mm512_sllv_epi64(cnt, _mm512_set1_epi64(j as i64)));
            }
            let both = _mm512_reduce_add_epi64(acc) as u64;
            slot[0] = both as u32;
            slot[1] = (both >> 32) as u32;
        }
    }

    /// Bit-plane scan with AVX-512 VPOPCNTDQ; handed out only after run-time
    /// detection of `avx512f` and `avx512vpopcntdq`.
    pub fn plane_scan_avx512(
        codes: &[u64],
        words: usize,
        planes: &[u64],
        bits: usize,
        seg_words: usize,
        out: &mut [u32],
    ) {
        if planes.len() < bits * words
            || out.len() < 2 * words.div_ceil(seg_words) * (codes.len() / words.max(1))
        {
            return super::plane_scan_portable(codes, words, planes, bits, seg_words, out);
        }
        // SAFETY: `Kernels::detect` checked both features; slice lengths are
        // checked above, so the masked loads stay in bounds.
        unsafe { plane_scan_avx512_inner(codes, words, planes, bits, seg_words, out) }
    }

    /// Bit-plane scan with `popcnt`. Only handed out by `Kernels::detect`
    /// after `is_x86_feature_detected!("popcnt")`.
    pub fn plane_scan_popcnt(
        codes: &[u64],
        words: usize,
        planes: &[u64],
        bits: usize,
        seg_words: usize,
        out: &mut [u32],
    ) {
        // SAFETY: `Kernels::detect` hands out this function only after the
        // CPU reported `popcnt`.
        unsafe { plane_scan_inner(codes, words, planes, bits, seg_words, out) }
    }

    /// Hamming scan with `popcnt`; same contract as [`plane_scan_popcnt`].
    pub fn hamming_scan_popcnt(codes: &[u64], words: usize, query: &[u64], out: &mut [u32]) {
        // SAFETY: as above, only reachable after run-time detection.
        unsafe { hamming_scan_inner(codes, words, query, out) }
    }
}
