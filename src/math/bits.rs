//! Popcount kernels over 1-bit codes stored as little-endian `u64` words.
//!
//! A code row has `words` words; dimension `i` is bit `i % 64` of word `i / 64`.
//! Query bit-planes are interleaved by word: `planes[w * bits + j]` is bit `j`
//! of every dimension in word `w`, so each code word is loaded once.

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
            for w in start..end {
                let c = row[w];
                pop += c.count_ones();
                let p = &planes[w * bits..(w + 1) * bits];
                for (j, &pw) in p.iter().enumerate() {
                    acc += (c & pw).count_ones() << j;
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
