//! Popcount kernels over 1-bit codes stored in blocks of [`BLOCK`] rows.
//!
//! A code row has `words` little-endian `u64` words; dimension `i` is bit
//! `i % 64` of word `i / 64`. Rows are stored in blocks of 8, word-major:
//! word `w` of row `8 b + l` is `blocks[(b * words + w) * 8 + l]`. One
//! 64-byte load then holds the same word of 8 rows, so a vector kernel sums
//! 8 rows in its lanes with no horizontal reduction, and the scan streams
//! memory in whole cache lines.
//!
//! Query bit-planes are stored plane after plane: `planes[j * words + w]` is
//! bit `j` of the levels of the dimensions in word `w`.

/// Rows per block.
pub const BLOCK: usize = 8;

/// `(blocks, words, planes, bits, seg_words, out)`: see [`plane_scan_portable`].
pub type PlaneScanFn = fn(&[u64], usize, &[u64], usize, usize, &mut [u32]);
/// `(blocks, words, query_code, out)`: see [`hamming_scan_portable`].
pub type HammingScanFn = fn(&[u64], usize, &[u64], &mut [u32]);

/// Rearranges row-major codes (`n` rows of `words`) into blocks of 8 rows,
/// zero-padding the last block.
pub fn to_blocked(codes: &[u64], words: usize) -> Vec<u64> {
    let n = codes.len() / words.max(1);
    let mut out = vec![0u64; n.div_ceil(BLOCK) * BLOCK * words];
    for (r, row) in codes.chunks_exact(words).enumerate() {
        let (b, l) = (r / BLOCK, r % BLOCK);
        for (w, &x) in row.iter().enumerate() {
            out[(b * words + w) * BLOCK + l] = x;
        }
    }
    out
}

/// Word `w` of row `row` in blocked codes.
#[inline]
pub fn word_of(blocks: &[u64], words: usize, row: usize, w: usize) -> u64 {
    blocks[((row / BLOCK) * words + w) * BLOCK + row % BLOCK]
}

/// For each row of each block and each segment of `seg_words` words, writes
/// the pair `(sum_j 2^j * popcount(code & plane_j), popcount(code))` to
/// `out[2 * (row * nseg + seg)..][..2]`: the dot product of the row's bits
/// with the query's integer levels, and the number of set bits.
#[inline(always)]
fn plane_scan_impl(
    blocks: &[u64],
    words: usize,
    planes: &[u64],
    bits: usize,
    seg_words: usize,
    out: &mut [u32],
) {
    let nseg = words.div_ceil(seg_words);
    for (blk, o) in blocks
        .chunks_exact(BLOCK * words)
        .zip(out.chunks_exact_mut(BLOCK * 2 * nseg))
    {
        for seg in 0..nseg {
            let (start, end) = (seg * seg_words, ((seg + 1) * seg_words).min(words));
            let mut acc = [0u32; BLOCK];
            let mut pop = [0u32; BLOCK];
            for w in start..end {
                let c = &blk[w * BLOCK..(w + 1) * BLOCK];
                for l in 0..BLOCK {
                    pop[l] += c[l].count_ones();
                }
                for j in 0..bits {
                    let p = planes[j * words + w];
                    for l in 0..BLOCK {
                        acc[l] += (c[l] & p).count_ones() << j;
                    }
                }
            }
            for l in 0..BLOCK {
                o[2 * (l * nseg + seg)] = acc[l];
                o[2 * (l * nseg + seg) + 1] = pop[l];
            }
        }
    }
}

/// Hamming distance of every row to `query`, written to `out[row]`.
#[inline(always)]
fn hamming_scan_impl(blocks: &[u64], words: usize, query: &[u64], out: &mut [u32]) {
    for (blk, o) in blocks
        .chunks_exact(BLOCK * words)
        .zip(out.chunks_exact_mut(BLOCK))
    {
        let mut acc = [0u32; BLOCK];
        for (w, &q) in query.iter().enumerate().take(words) {
            for l in 0..BLOCK {
                acc[l] += (blk[w * BLOCK + l] ^ q).count_ones();
            }
        }
        o.copy_from_slice(&acc);
    }
}

/// Portable build of the bit-plane scan (no target features). `blocks`
/// holds whole blocks; `out` gets `2 * nseg` values per row of every block.
pub fn plane_scan_portable(
    blocks: &[u64],
    words: usize,
    planes: &[u64],
    bits: usize,
    seg_words: usize,
    out: &mut [u32],
) {
    plane_scan_impl(blocks, words, planes, bits, seg_words, out);
}

/// Portable build of the Hamming scan over whole blocks.
pub fn hamming_scan_portable(blocks: &[u64], words: usize, query: &[u64], out: &mut [u32]) {
    hamming_scan_impl(blocks, words, query, out);
}

/// Bit-by-bit reference for [`plane_scan_portable`] over row-major codes,
/// used only by tests.
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

/// x86_64 builds of the kernels.
#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use super::BLOCK;

    #[target_feature(enable = "popcnt")]
    unsafe fn plane_scan_inner(
        blocks: &[u64],
        words: usize,
        planes: &[u64],
        bits: usize,
        seg_words: usize,
        out: &mut [u32],
    ) {
        super::plane_scan_impl(blocks, words, planes, bits, seg_words, out);
    }

    #[target_feature(enable = "popcnt")]
    unsafe fn hamming_scan_inner(blocks: &[u64], words: usize, query: &[u64], out: &mut [u32]) {
        super::hamming_scan_impl(blocks, words, query, out);
    }

    /// AVX-512 VPOPCNTDQ build: each 64-byte load is one word of 8 rows; the
    /// AND with a broadcast plane word, popcount and shifted add run in all 8
    /// lanes at once. Lane `l` holds row `l`'s level dot in its low 32 bits
    /// and its popcount in the high 32 bits (neither can overflow: a segment
    /// has < 2^24 bits and levels are < 2^8).
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    unsafe fn plane_scan_avx512_inner(
        blocks: &[u64],
        words: usize,
        planes: &[u64],
        bits: usize,
        seg_words: usize,
        out: &mut [u32],
    ) {
        use std::arch::x86_64::*;
        let nseg = words.div_ceil(seg_words);
        let step = BLOCK * words;
        let nblocks = (blocks.len() / step).min(out.len() / (BLOCK * 2 * nseg));
        let mut lanes = [0u64; BLOCK];
        for b in 0..nblocks {
            let blk = &blocks[b * step..(b + 1) * step];
            if (b + 2) * step <= blocks.len() {
                // Stream ahead: two blocks (>= 768 bytes for 384-d codes).
                // SAFETY: the address is inside `blocks`; a prefetch never
                // faults and has no visible effect.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(blocks.as_ptr().add((b + 2) * step).cast()) };
            }
            let o = &mut out[b * BLOCK * 2 * nseg..(b + 1) * BLOCK * 2 * nseg];
            for seg in 0..nseg {
                let (start, end) = (seg * seg_words, ((seg + 1) * seg_words).min(words));
                // SAFETY: same features as this function; `blk` is one block.
                let (dot, pop) = unsafe { block_sums(blk, words, planes, bits, start, end) };
                let total = _mm512_add_epi64(_mm512_slli_epi64::<32>(pop), dot);
                // SAFETY: `lanes` is 8 u64 = 64 bytes, the size of the store.
                unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), total) };
                for (l, &v) in lanes.iter().enumerate() {
                    o[2 * (l * nseg + seg)] = v as u32;
                    o[2 * (l * nseg + seg) + 1] = (v >> 32) as u32;
                }
            }
        }
    }

    /// Per lane (row) of one block `blk` (`words * 8` words): the level dot
    /// `sum_j 2^j popcount(code & plane_j)` and the popcount over words
    /// `start..end`. Each 64-byte load is one word of 8 rows; the AND with a
    /// broadcast plane word, popcount and add run in all 8 lanes at once.
    /// Neither sum can overflow its lane (segments have < 2^24 bits, levels
    /// are < 2^8).
    ///
    /// # Safety
    /// The CPU must support `avx512f` and `avx512vpopcntdq`;
    /// `blk.len() >= words * 8`, `end <= words`, `planes.len() >= bits * words`.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    #[inline]
    pub(crate) unsafe fn block_sums(
        blk: &[u64],
        words: usize,
        planes: &[u64],
        bits: usize,
        start: usize,
        end: usize,
    ) -> (std::arch::x86_64::__m512i, std::arch::x86_64::__m512i) {
        use std::arch::x86_64::*;
        // One accumulator per plane: the shifts by 2^j happen once per
        // block instead of once per word.
        let mut acc = [_mm512_setzero_si512(); 8];
        let mut pop = _mm512_setzero_si512();
        for w in start..end {
            // SAFETY: `w < words` and `blk` has `words * 8` words.
            let c = unsafe { _mm512_loadu_si512(blk.as_ptr().add(w * BLOCK).cast()) };
            pop = _mm512_add_epi64(pop, _mm512_popcnt_epi64(c));
            for (j, a) in acc.iter_mut().enumerate().take(bits) {
                // A broadcast load folds into the AND (no buffer of
                // broadcast planes: allocating one per call cost ~5%).
                // SAFETY: `j < bits`, `w < words`, planes has `bits * words`.
                let p = _mm512_set1_epi64(unsafe { *planes.get_unchecked(j * words + w) } as i64);
                let cnt = _mm512_popcnt_epi64(_mm512_and_si512(c, p));
                *a = _mm512_add_epi64(*a, cnt);
            }
        }
        let mut dot = _mm512_setzero_si512();
        for (j, a) in acc.iter().enumerate().take(bits) {
            dot = _mm512_add_epi64(dot, _mm512_sllv_epi64(*a, _mm512_set1_epi64(j as i64)));
        }
        (dot, pop)
    }

    /// AVX-512 VPOPCNTDQ Hamming scan: XOR and popcount 8 rows per load.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    unsafe fn hamming_scan_avx512_inner(
        blocks: &[u64],
        words: usize,
        query: &[u64],
        out: &mut [u32],
    ) {
        use std::arch::x86_64::*;
        let step = BLOCK * words;
        let nblocks = (blocks.len() / step).min(out.len() / BLOCK);
        let mut lanes = [0u64; BLOCK];
        for b in 0..nblocks {
            let blk = &blocks[b * step..(b + 1) * step];
            let mut acc = _mm512_setzero_si512();
            for (w, &q) in query.iter().enumerate().take(words) {
                // SAFETY: as in the plane scan, `w < words` keeps the load in `blk`.
                let c = unsafe { _mm512_loadu_si512(blk.as_ptr().add(w * BLOCK).cast()) };
                let x = _mm512_xor_si512(c, _mm512_set1_epi64(q as i64));
                acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(x));
            }
            // SAFETY: 64-byte store into an 8 x u64 array.
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), acc) };
            for (o, &v) in out[b * BLOCK..(b + 1) * BLOCK].iter_mut().zip(&lanes) {
                *o = v as u32;
            }
        }
    }

    /// Bit-plane scan with AVX-512 VPOPCNTDQ; handed out by `Kernels::detect`
    /// only after run-time detection of `avx512f` and `avx512vpopcntdq`.
    pub fn plane_scan_avx512(
        blocks: &[u64],
        words: usize,
        planes: &[u64],
        bits: usize,
        seg_words: usize,
        out: &mut [u32],
    ) {
        if words == 0 || bits > 8 || planes.len() < bits * words {
            return super::plane_scan_portable(blocks, words, planes, bits, seg_words, out);
        }
        // SAFETY: `Kernels::detect` checked both features; every load is
        // bounded by the block count computed from the slice lengths.
        unsafe { plane_scan_avx512_inner(blocks, words, planes, bits, seg_words, out) }
    }

    /// Hamming scan with AVX-512 VPOPCNTDQ; same contract as [`plane_scan_avx512`].
    pub fn hamming_scan_avx512(blocks: &[u64], words: usize, query: &[u64], out: &mut [u32]) {
        if words == 0 || query.len() < words {
            return super::hamming_scan_portable(blocks, words, query, out);
        }
        // SAFETY: as above.
        unsafe { hamming_scan_avx512_inner(blocks, words, query, out) }
    }

    /// Bit-plane scan with `popcnt`. Only handed out by `Kernels::detect`
    /// after `is_x86_feature_detected!("popcnt")`.
    pub fn plane_scan_popcnt(
        blocks: &[u64],
        words: usize,
        planes: &[u64],
        bits: usize,
        seg_words: usize,
        out: &mut [u32],
    ) {
        // SAFETY: `Kernels::detect` hands out this function only after the
        // CPU reported `popcnt`.
        unsafe { plane_scan_inner(blocks, words, planes, bits, seg_words, out) }
    }

    /// Hamming scan with `popcnt`; same contract as [`plane_scan_popcnt`].
    pub fn hamming_scan_popcnt(blocks: &[u64], words: usize, query: &[u64], out: &mut [u32]) {
        // SAFETY: as above, only reachable after run-time detection.
        unsafe { hamming_scan_inner(blocks, words, query, out) }
    }
}
