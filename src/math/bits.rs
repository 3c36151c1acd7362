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

/// Blocked 1-bit codes: whole blocks of [`BLOCK`] rows of `words` words.
#[derive(Debug, Clone, Copy)]
pub struct CodeBlocks<'a> {
    /// `blocks.len()` is a multiple of `BLOCK * words`.
    pub blocks: &'a [u64],
    /// `u64` words per row.
    pub words: usize,
}

/// A query's bit-planes: `planes[j * words + w]` is bit `j` of the levels
/// of the dimensions in word `w`, for `j < bits` (1..=8).
#[derive(Debug, Clone, Copy)]
pub struct Planes<'a> {
    /// `bits * words` words, plane after plane.
    pub planes: &'a [u64],
    /// Bits per level.
    pub bits: usize,
}

/// `(codes, planes, out)`: see [`plane_scan_portable`].
pub type PlaneScanFn = fn(CodeBlocks<'_>, Planes<'_>, &mut [u32]);

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

/// For each row of each block, writes the pair
/// `(sum_j 2^j * popcount(code & plane_j), popcount(code))` to
/// `out[2 * row..][..2]`: the dot product of the row's bits with the
/// query's integer levels, and the number of set bits.
#[inline(always)]
fn plane_scan_impl(codes: CodeBlocks<'_>, q: Planes<'_>, out: &mut [u32]) {
    let words = codes.words;
    for (blk, o) in codes
        .blocks
        .chunks_exact(BLOCK * words)
        .zip(out.chunks_exact_mut(BLOCK * 2))
    {
        let mut acc = [0u32; BLOCK];
        let mut pop = [0u32; BLOCK];
        for w in 0..words {
            let c = &blk[w * BLOCK..(w + 1) * BLOCK];
            for l in 0..BLOCK {
                pop[l] += c[l].count_ones();
            }
            for j in 0..q.bits {
                let p = q.planes[j * words + w];
                for l in 0..BLOCK {
                    acc[l] += (c[l] & p).count_ones() << j;
                }
            }
        }
        for l in 0..BLOCK {
            o[2 * l] = acc[l];
            o[2 * l + 1] = pop[l];
        }
    }
}

/// Sets the bits of `rows` in `words`, a bitmap over rows (rows past the
/// end are ignored). (Gathering a word's bits in a register while
/// consecutive rows share it was slower on 1% filters of the clustered 1M
/// set, 7% -> 11% of a query's samples: its rows change words at random.)
pub fn set_bits(words: &mut [u64], rows: &[u32]) {
    for &r in rows {
        if let Some(w) = words.get_mut(r as usize / 64) {
            *w |= 1u64 << (r % 64);
        }
    }
}

/// Set bits in `words`. The shipped build targets baseline x86-64, where
/// `count_ones` is a dozen shifts and masks per word; this picks the CPU's
/// `popcnt` (or AVX-512 VPOPCNTDQ) at run time for the recounts filters
/// still do (tags, `$and` / `$or` / `$not`: a 1M-row mask is 15,625
/// words). Its own gain was not timed apart from the skipped recount.
pub fn count_ones(words: &[u64]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        // Detection is cached by std: an atomic load per call.
        if std::arch::is_x86_feature_detected!("avx512vpopcntdq")
            && std::arch::is_x86_feature_detected!("avx512f")
        {
            // SAFETY: both features were detected on this CPU.
            return unsafe { x86::count_ones_avx512(words) };
        }
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: `popcnt` was detected on this CPU.
            return unsafe { x86::count_ones_popcnt(words) };
        }
    }
    count_ones_portable(words)
}

/// Adds to `out[p]` the set bits of `words` (bits `0..len`) in
/// `offsets[p]..offsets[p + 1]` (`offsets` non-decreasing), for every range
/// in one pass, with the CPU's `popcnt` picked at run time as in
/// [`count_ones`]. A mask's matches per partition, for routes that ask
/// about every partition: counted a range at a time in baseline x86-64's
/// shift-and-mask popcount, 6.7% of a 1% filter's query on the clustered
/// 1M set (2,000 partitions).
pub fn count_ranges(words: &[u64], len: usize, offsets: &[u64], out: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: `popcnt` was detected on this CPU.
        return unsafe { x86::count_ranges_popcnt(words, len, offsets, out) };
    }
    count_ranges_portable(words, len, offsets, out);
}

/// [`count_ranges`] without target features (inlined into the `popcnt`
/// build): the set bits below each offset, as a running count over whole
/// words plus the part of the offset's own word, differenced between
/// consecutive offsets.
#[inline(always)]
pub fn count_ranges_portable(words: &[u64], len: usize, offsets: &[u64], out: &mut [u32]) {
    let (mut counted, mut total) = (0usize, 0u64);
    let mut below = |i: u64| {
        let i = (i as usize).min(len);
        let (w, bit) = (i / 64, i % 64);
        while counted < w {
            total += u64::from(words[counted].count_ones());
            counted += 1;
        }
        let part = match bit {
            0 => 0,
            _ => (words[w] & ((1u64 << bit) - 1)).count_ones(),
        };
        total + u64::from(part)
    };
    let Some(&first) = offsets.first() else {
        return;
    };
    let mut prev = below(first);
    for (o, &end) in out.iter_mut().zip(&offsets[1..]) {
        let next = below(end);
        *o += (next - prev) as u32;
        prev = next;
    }
}

/// [`count_ones`] without target features (inlined into the feature
/// builds, which compile the same loop with their instructions).
#[inline(always)]
pub fn count_ones_portable(words: &[u64]) -> usize {
    words.iter().map(|w| w.count_ones() as usize).sum()
}

/// Portable build of the bit-plane scan (no target features). `codes`
/// holds whole blocks; `out` gets 2 values per row of every block.
pub fn plane_scan_portable(codes: CodeBlocks<'_>, q: Planes<'_>, out: &mut [u32]) {
    plane_scan_impl(codes, q, out);
}

/// Bit-by-bit reference for [`plane_scan_portable`] over row-major codes,
/// used only by tests.
pub fn plane_scan_reference(codes: &[u64], words: usize, levels: &[u32], out: &mut [u32]) {
    for (r, row) in codes.chunks_exact(words).enumerate() {
        let (mut acc, mut pop) = (0u32, 0u32);
        for (w, &word) in row.iter().enumerate() {
            for b in 0..64 {
                if (word >> b) & 1 == 1 {
                    pop += 1;
                    acc += levels.get(w * 64 + b).copied().unwrap_or(0);
                }
            }
        }
        out[2 * r] = acc;
        out[2 * r + 1] = pop;
    }
}

/// x86_64 builds of the kernels.
#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use super::{CodeBlocks, Planes, BLOCK};

    /// [`super::count_ones`] with `popcnt`.
    ///
    /// # Safety
    /// The CPU must support `popcnt`.
    #[target_feature(enable = "popcnt")]
    pub(super) unsafe fn count_ones_popcnt(words: &[u64]) -> usize {
        super::count_ones_portable(words)
    }

    /// [`super::count_ranges`] with `popcnt`.
    ///
    /// # Safety
    /// The CPU must support `popcnt`.
    #[target_feature(enable = "popcnt")]
    pub(super) unsafe fn count_ranges_popcnt(
        words: &[u64],
        len: usize,
        offsets: &[u64],
        out: &mut [u32],
    ) {
        super::count_ranges_portable(words, len, offsets, out);
    }

    /// [`super::count_ones`] with AVX-512 VPOPCNTDQ (the compiler
    /// vectorises the same loop eight words a step).
    ///
    /// # Safety
    /// The CPU must support `avx512f` and `avx512vpopcntdq`.
    #[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
    pub(super) unsafe fn count_ones_avx512(words: &[u64]) -> usize {
        super::count_ones_portable(words)
    }

    #[target_feature(enable = "popcnt")]
    unsafe fn plane_scan_inner(codes: CodeBlocks<'_>, q: Planes<'_>, out: &mut [u32]) {
        super::plane_scan_impl(codes, q, out);
    }

    /// AVX-512 VPOPCNTDQ build: each 64-byte load is one word of 8 rows; the
    /// AND with a broadcast plane word, popcount and shifted add run in all 8
    /// lanes at once.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    unsafe fn plane_scan_avx512_inner<const B: usize>(
        codes: CodeBlocks<'_>,
        q: Planes<'_>,
        out: &mut [u32],
    ) {
        use std::arch::x86_64::*;
        let (blocks, words) = (codes.blocks, codes.words);
        let step = BLOCK * words;
        let nblocks = (blocks.len() / step).min(out.len() / (BLOCK * 2));
        let mut lanes = [0u64; BLOCK];
        for b in 0..nblocks {
            let blk = &blocks[b * step..(b + 1) * step];
            if (b + 2) * step <= blocks.len() {
                // Stream ahead: two blocks (>= 768 bytes for 384-d codes).
                // SAFETY: the address is inside `blocks`; a prefetch never
                // faults and has no visible effect.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(blocks.as_ptr().add((b + 2) * step).cast()) };
            }
            // SAFETY: same features as this function; `blk` is one block.
            let (dot, pop) = unsafe { block_sums::<B>(blk, words, q.planes) };
            // Lane `l`: row `l`'s level dot in the low 32 bits, its popcount
            // in the high 32 (neither can overflow: < 2^24 bits, levels < 2^8).
            let total = _mm512_add_epi64(_mm512_slli_epi64::<32>(pop), dot);
            // SAFETY: `lanes` is 8 u64 = 64 bytes, the size of the store.
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), total) };
            let o = &mut out[b * BLOCK * 2..(b + 1) * BLOCK * 2];
            for (l, &v) in lanes.iter().enumerate() {
                o[2 * l] = v as u32;
                o[2 * l + 1] = (v >> 32) as u32;
            }
        }
    }

    /// Per lane (row) of one block `blk` (`words * 8` words): the level dot
    /// `sum_j 2^j popcount(code & plane_j)` over the `B` planes and the
    /// popcount of the whole code. Each 64-byte load is one word of 8 rows;
    /// the AND with a broadcast plane word, popcount and add run in all 8
    /// lanes at once. `B` is a constant so the plane loop unrolls and the
    /// accumulators stay in registers (with a run-time count they were
    /// indexed through the stack). Neither sum can overflow its lane (codes
    /// have < 2^24 bits, levels are < 2^8).
    ///
    /// # Safety
    /// The CPU must support `avx512f` and `avx512vpopcntdq`;
    /// `blk.len() >= words * 8`, `planes.len() >= B * words`.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    #[inline]
    pub(crate) unsafe fn block_sums<const B: usize>(
        blk: &[u64],
        words: usize,
        planes: &[u64],
    ) -> (std::arch::x86_64::__m512i, std::arch::x86_64::__m512i) {
        use std::arch::x86_64::*;
        // One accumulator per plane: the shifts by 2^j happen once per
        // block instead of once per word.
        let mut acc = [_mm512_setzero_si512(); B];
        let mut pop = _mm512_setzero_si512();
        for w in 0..words {
            // SAFETY: `w < words` and `blk` has `words * 8` words.
            let c = unsafe { _mm512_loadu_si512(blk.as_ptr().add(w * BLOCK).cast()) };
            pop = _mm512_add_epi64(pop, _mm512_popcnt_epi64(c));
            for (j, a) in acc.iter_mut().enumerate() {
                // A broadcast load folds into the AND (no buffer of
                // broadcast planes: allocating one per call cost ~5%).
                // SAFETY: `j < B`, `w < words`, planes has `B * words`.
                let p = _mm512_set1_epi64(unsafe { *planes.get_unchecked(j * words + w) } as i64);
                let cnt = _mm512_popcnt_epi64(_mm512_and_si512(c, p));
                *a = _mm512_add_epi64(*a, cnt);
            }
        }
        let mut dot = _mm512_setzero_si512();
        for (j, a) in acc.iter().enumerate() {
            dot = _mm512_add_epi64(dot, _mm512_sllv_epi64(*a, _mm512_set1_epi64(j as i64)));
        }
        (dot, pop)
    }

    /// True when the AVX-512 kernels may run on these arguments (else they
    /// fall back to the portable build).
    pub(crate) fn fits(codes: CodeBlocks<'_>, q: Planes<'_>) -> bool {
        codes.words > 0 && (1..=8).contains(&q.bits) && q.planes.len() >= q.bits * codes.words
    }

    /// Calls `f::<B>(args)` with `B` the run-time bit count (1..=8; `fits`
    /// has checked it), so each plane count gets its own unrolled kernel.
    macro_rules! by_bits {
        ($bits:expr, $f:ident, ($($arg:expr),*)) => {
            match $bits {
                1 => $f::<1>($($arg),*),
                2 => $f::<2>($($arg),*),
                3 => $f::<3>($($arg),*),
                4 => $f::<4>($($arg),*),
                5 => $f::<5>($($arg),*),
                6 => $f::<6>($($arg),*),
                7 => $f::<7>($($arg),*),
                _ => $f::<8>($($arg),*),
            }
        };
    }
    pub(crate) use by_bits;

    /// Bit-plane scan with AVX-512 VPOPCNTDQ; handed out by `Kernels::detect`
    /// only after run-time detection of `avx512f` and `avx512vpopcntdq`.
    pub fn plane_scan_avx512(codes: CodeBlocks<'_>, q: Planes<'_>, out: &mut [u32]) {
        if !fits(codes, q) {
            return super::plane_scan_portable(codes, q, out);
        }
        // SAFETY: `Kernels::detect` checked both features; every load is
        // bounded by the block count computed from the slice lengths, and
        // `fits` checked the planes for `q.bits`.
        unsafe { by_bits!(q.bits, plane_scan_avx512_inner, (codes, q, out)) }
    }

    /// Bit-plane scan with `popcnt`. Only handed out by `Kernels::detect`
    /// after `is_x86_feature_detected!("popcnt")`.
    pub fn plane_scan_popcnt(codes: CodeBlocks<'_>, q: Planes<'_>, out: &mut [u32]) {
        // SAFETY: `Kernels::detect` hands out this function only after the
        // CPU reported `popcnt`.
        unsafe { plane_scan_inner(codes, q, out) }
    }
}

/// aarch64 builds (NEON is baseline there). One 16-byte load is one word of
/// two rows; `vcnt` counts bits per byte and `vpadal` folds the byte counts
/// into u16 lanes, one accumulator per query plane, so the shifts by plane
/// and the reduction to a row's sums happen once per block, not per word.
/// (The portable `count_ones` compiles to a `cnt` and a horizontal add per
/// u64 here.) Per lane a u16 gathers at most `16 words` counts, exact for
/// `dim < 2^16`; wider rows take the portable kernel.
#[cfg(target_arch = "aarch64")]
pub mod neon {
    use super::{CodeBlocks, Planes, BLOCK};
    use std::arch::aarch64::*;

    /// NEON bit-plane scan; same contract as [`super::plane_scan_portable`].
    pub fn plane_scan_neon(codes: CodeBlocks<'_>, q: Planes<'_>, out: &mut [u32]) {
        if codes.words * 64 >= 1 << 16 || q.bits > 8 {
            return super::plane_scan_portable(codes, q, out);
        }
        // SAFETY: NEON is in the baseline of every aarch64 target.
        unsafe { plane_scan_inner(codes, q, out) }
    }

    #[target_feature(enable = "neon")]
    fn plane_scan_inner(codes: CodeBlocks<'_>, q: Planes<'_>, out: &mut [u32]) {
        let words = codes.words;
        for (blk, o) in codes
            .blocks
            .chunks_exact(BLOCK * words)
            .zip(out.chunks_exact_mut(BLOCK * 2))
        {
            // Rows 2 pair and 2 pair + 1 of the block.
            for pair in 0..BLOCK / 2 {
                let mut pop = vdupq_n_u16(0);
                let mut acc = [vdupq_n_u16(0); 8];
                for w in 0..words {
                    // SAFETY: `w * BLOCK + 2 pair + 2 <= BLOCK * words`: two
                    // u64 of the block.
                    let c = unsafe { vld1q_u64(blk.as_ptr().add(w * BLOCK + 2 * pair)) };
                    pop = vpadalq_u8(pop, vcntq_u8(vreinterpretq_u8_u64(c)));
                    for (j, a) in acc.iter_mut().enumerate().take(q.bits) {
                        let p = vdupq_n_u64(q.planes[j * words + w]);
                        let hits = vcntq_u8(vreinterpretq_u8_u64(vandq_u64(c, p)));
                        *a = vpadalq_u8(*a, hits);
                    }
                }
                // Lanes 0..4 of a u16 accumulator are row 2 pair, 4..8 row
                // 2 pair + 1; widen to u64 per row, weigh plane j by 2^j.
                let row_sums = |v: uint16x8_t| vpaddlq_u32(vpaddlq_u16(v));
                let mut dot = vdupq_n_u64(0);
                for (j, a) in acc.iter().enumerate().take(q.bits) {
                    dot = vaddq_u64(dot, vshlq_u64(row_sums(*a), vdupq_n_s64(j as i64)));
                }
                let pop = row_sums(pop);
                for r in 0..2 {
                    let l = 2 * pair + r;
                    let (d, p) = if r == 0 {
                        (vgetq_lane_u64::<0>(dot), vgetq_lane_u64::<0>(pop))
                    } else {
                        (vgetq_lane_u64::<1>(dot), vgetq_lane_u64::<1>(pop))
                    };
                    o[2 * l] = d as u32;
                    o[2 * l + 1] = p as u32;
                }
            }
        }
    }
}
