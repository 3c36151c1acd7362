//! Integer dot products of int8 vectors, for ranking partitions: the router
//! keeps the centroids in int8 and quantizes each query to int8 once, so
//! ranking all `L` partitions is one integer kernel over `L dim` bytes.
//!
//! The centroids are interleaved in blocks of [`LANES`]: for each pair of
//! dimensions, the pair of every centroid of the block, widened to i16
//! (`[pair][lane][2]`, 64 bytes). One `madd_epi16` of such a row against
//! the query's pair broadcast to every lane adds two products to each of
//! 16 centroid sums, so a block needs no horizontal reduction. Ranking
//! with one dot product per centroid (a reduction and a call each) was a
//! quarter of a one-partition query on debian-minilm-384 (490 partitions).
//! Sums are exact in i32 for `dim < 2^17` (each product is at most 2^14).
//!
//! CPUs with AVX-512 VNNI read the centroids as int8 quads instead
//! (`[quad][lane][4]`, half the bytes): `vpdpbusd` multiplies unsigned by
//! signed bytes, so the query is biased by +128 into u8 and each centroid's
//! sum of codes times 128 is subtracted afterwards; the sums stay exact.

use super::quantize::min_max;

/// Centroids per interleaved block (one 512-bit register of i32 sums).
pub const LANES: usize = 16;

/// Quantizes `v` symmetrically to int8 into `out`: `v ~= scale * out`, with
/// `scale = max |v_j| / 127` (1 for an all-zero `v`). Returns the scale.
pub fn quantize_i8(v: &[f32], out: &mut Vec<i8>) -> f32 {
    let (lo, hi) = min_max(v);
    let max = hi.max(-lo).max(0.0);
    let scale = if max > 0.0 && max.is_finite() {
        max / 127.0
    } else {
        1.0
    };
    let inv = 1.0 / scale;
    out.clear();
    // Round half away from zero without a call per value (`f32::round` is a
    // libm call on baseline x86-64, a fifth of a small query's time).
    // `max`/`min` (not `clamp`) send NaN to a bound, so every value is in
    // range for the unchecked conversion, which compiles to one packed
    // instruction where a saturating `as i8` took a scalar conversion and
    // fix-ups per value (7% of a small query's time).
    #[allow(clippy::manual_clamp)] // `clamp` keeps NaN, which the conversion must not see
    out.extend(v.iter().map(|&x| {
        let y = (x * inv).max(-127.0).min(127.0);
        let y = y + 0.5f32.copysign(y);
        // SAFETY: `y` is finite and within -127.5..=127.5, so it fits an i32.
        (unsafe { y.to_int_unchecked::<i32>() }) as i8
    }));
    scale
}

/// Pairs of dimensions in a vector of `dim` (the last one padded with 0).
pub fn pairs(dim: usize) -> usize {
    dim.div_ceil(2)
}

/// Appends the interleaved block of `rows` (at most [`LANES`] int8 rows of
/// `dim` values, row-major) to `out`: `pairs(dim) * LANES * 2` values, the
/// missing lanes and the padding dimension zero.
pub fn interleave(rows: &[i8], dim: usize, out: &mut Vec<i16>) {
    let n = rows.len().checked_div(dim).unwrap_or(0);
    assert!(n <= LANES, "a block holds at most {LANES} rows");
    let at = |l: usize, d: usize| {
        if l < n && d < dim {
            i16::from(rows[l * dim + d])
        } else {
            0
        }
    };
    for j in 0..pairs(dim) {
        for l in 0..LANES {
            out.push(at(l, 2 * j));
            out.push(at(l, 2 * j + 1));
        }
    }
}

/// `q` widened to i16 and padded to a whole number of pairs, as the
/// block kernels read it.
pub fn widen_query(q: &[i8], out: &mut Vec<i16>) {
    out.clear();
    out.extend(q.iter().map(|&x| i16::from(x)));
    if !q.len().is_multiple_of(2) {
        out.push(0);
    }
}

/// Signature of the block kernels: `out[l] = <q, row l of block>`.
pub type DotBlockFn = fn(&[i16], &[i16], &mut [i32; LANES]);

/// Quads of dimensions in a vector of `dim` (the last one padded with 0).
pub fn quads(dim: usize) -> usize {
    dim.div_ceil(4)
}

/// Appends the quad-interleaved block of `rows` (at most [`LANES`] int8
/// rows of `dim`) to `out`: `quads(dim) * LANES * 4` bytes, missing lanes
/// and padding dimensions zero. Returns each lane's sum of codes.
pub fn interleave_quads(rows: &[i8], dim: usize, out: &mut Vec<i8>) -> [i32; LANES] {
    let n = rows.len().checked_div(dim).unwrap_or(0);
    assert!(n <= LANES, "a block holds at most {LANES} rows");
    let mut sums = [0i32; LANES];
    for j in 0..quads(dim) {
        for (l, sum) in sums.iter_mut().enumerate() {
            for d in 4 * j..4 * j + 4 {
                let c = if l < n && d < dim {
                    rows[l * dim + d]
                } else {
                    0
                };
                *sum += i32::from(c);
                out.push(c);
            }
        }
    }
    sums
}

/// `q` biased by +128 into u8 (as `vpdpbusd` wants its unsigned operand)
/// and padded to whole quads.
pub fn bias_query(q: &[i8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(q.iter().map(|&x| (i16::from(x) + 128) as u8));
    out.resize(quads(q.len()) * 4, 128);
}

/// Signature of the quad kernels: `out[l] = <q + 128, row l of block>`
/// (subtract `128 * sum of row l` for `<q, row l>`).
pub type DotQuadsFn = fn(&[i8], &[u8], &mut [i32; LANES]);

/// Portable quad kernel; `block` from [`interleave_quads`], `q` from [`bias_query`].
pub fn dot_quads_portable(block: &[i8], q: &[u8], out: &mut [i32; LANES]) {
    *out = [0; LANES];
    for (row, qq) in block.chunks_exact(4 * LANES).zip(q.chunks_exact(4)) {
        for (o, c) in out.iter_mut().zip(row.chunks_exact(4)) {
            *o += c
                .iter()
                .zip(qq)
                .map(|(&c, &q)| i32::from(c) * i32::from(q))
                .sum::<i32>();
        }
    }
}

/// Portable block kernel; `block` from [`interleave`], `q` from [`widen_query`].
pub fn dot_block_portable(block: &[i16], q: &[i16], out: &mut [i32; LANES]) {
    *out = [0; LANES];
    for (row, qp) in block.chunks_exact(2 * LANES).zip(q.chunks_exact(2)) {
        for (o, c) in out.iter_mut().zip(row.chunks_exact(2)) {
            *o += i32::from(c[0]) * i32::from(qp[0]) + i32::from(c[1]) * i32::from(qp[1]);
        }
    }
}

/// x86_64 builds: one pair row of a block is 64 bytes, one zmm (or two ymm).
#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use super::LANES;
    use std::arch::x86_64::*;

    /// `step(acc, j)` folded over rows `0..rows` into four named
    /// accumulators (they hide the multiply-add latency; an array of them
    /// was kept in memory by the compiler), then summed. A macro, not a
    /// function: the intrinsics need the caller's target features.
    macro_rules! sum_rows_x4 {
        ($rows:expr, $step:expr) => {{
            let (rows, step) = ($rows, $step);
            let z = _mm512_setzero_si512();
            let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
            let mut j = 0;
            while j + 4 <= rows {
                a0 = step(a0, j);
                a1 = step(a1, j + 1);
                a2 = step(a2, j + 2);
                a3 = step(a3, j + 3);
                j += 4;
            }
            while j < rows {
                a0 = step(a0, j);
                j += 1;
            }
            _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3))
        }};
    }

    /// The query's pairs as i32 (two i16 each), for broadcasts.
    #[inline(always)]
    fn pair(q: &[i16], j: usize) -> i32 {
        (i32::from(q[2 * j]) & 0xffff) | (i32::from(q[2 * j + 1]) << 16)
    }

    #[target_feature(enable = "avx2")]
    fn dot_block_avx2_inner(block: &[i16], q: &[i16], out: &mut [i32; LANES]) {
        let rows = (block.len() / (2 * LANES)).min(q.len() / 2);
        let p = block.as_ptr();
        let row = |j: usize| {
            // SAFETY: `j < rows`, so the 64 bytes of pair row j are in `block`.
            unsafe {
                let r = p.add(j * 2 * LANES);
                (
                    _mm256_loadu_si256(r.cast()),
                    _mm256_loadu_si256(r.add(LANES).cast()),
                )
            }
        };
        // Two accumulators per half (lanes 0-7, 8-15) hide the madd latency;
        // named registers, not an array the compiler may keep in memory.
        let (mut a0, mut a1, mut b0, mut b1) = (
            _mm256_setzero_si256(),
            _mm256_setzero_si256(),
            _mm256_setzero_si256(),
            _mm256_setzero_si256(),
        );
        let mut j = 0;
        while j + 2 <= rows {
            let (q0, q1) = (
                _mm256_set1_epi32(pair(q, j)),
                _mm256_set1_epi32(pair(q, j + 1)),
            );
            let ((l0, h0), (l1, h1)) = (row(j), row(j + 1));
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(l0, q0));
            b0 = _mm256_add_epi32(b0, _mm256_madd_epi16(h0, q0));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(l1, q1));
            b1 = _mm256_add_epi32(b1, _mm256_madd_epi16(h1, q1));
            j += 2;
        }
        if j < rows {
            let q0 = _mm256_set1_epi32(pair(q, j));
            let (l0, h0) = row(j);
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(l0, q0));
            b0 = _mm256_add_epi32(b0, _mm256_madd_epi16(h0, q0));
        }
        // SAFETY: `out` holds 16 i32: two 32-byte stores.
        unsafe {
            _mm256_storeu_si256(out.as_mut_ptr().cast(), _mm256_add_epi32(a0, a1));
            _mm256_storeu_si256(out.as_mut_ptr().add(8).cast(), _mm256_add_epi32(b0, b1));
        }
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    fn dot_block_avx512_inner(block: &[i16], q: &[i16], out: &mut [i32; LANES]) {
        let rows = (block.len() / (2 * LANES)).min(q.len() / 2);
        let p = block.as_ptr();
        let step = |acc: __m512i, j: usize| {
            // SAFETY: `j < rows`: the 64 bytes of pair row j are in `block`.
            let c = unsafe { _mm512_loadu_si512(p.add(j * 2 * LANES).cast()) };
            _mm512_add_epi32(acc, _mm512_madd_epi16(c, _mm512_set1_epi32(pair(q, j))))
        };
        let s = sum_rows_x4!(rows, step);
        // SAFETY: `out` holds 16 i32: one 64-byte store.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), s) };
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn dot_quads_vnni_inner(block: &[i8], q: &[u8], out: &mut [i32; LANES]) {
        let rows = (block.len() / (4 * LANES)).min(q.len() / 4);
        let p = block.as_ptr();
        let qp = q.as_ptr();
        let step = |acc: __m512i, j: usize| {
            // SAFETY: `j < rows`: the 64 bytes of quad row j are in `block`
            // and the query's 4 bytes of quad j are in `q` (one unaligned
            // load instead of four checked byte reads: a quarter of the
            // routing time went to assembling them).
            let (c, quad) = unsafe {
                (
                    _mm512_loadu_si512(p.add(j * 4 * LANES).cast()),
                    qp.add(4 * j).cast::<i32>().read_unaligned(),
                )
            };
            _mm512_dpbusd_epi32(acc, _mm512_set1_epi32(quad), c)
        };
        let s = sum_rows_x4!(rows, step);
        // SAFETY: `out` holds 16 i32: one 64-byte store.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), s) };
    }

    /// AVX-512 VNNI quad kernel; handed out only after run-time detection
    /// of avx512f, avx512bw and avx512vnni.
    pub fn dot_quads_vnni(block: &[i8], q: &[u8], out: &mut [i32; LANES]) {
        // SAFETY: `Kernels::detect` checked the three features.
        unsafe { dot_quads_vnni_inner(block, q, out) }
    }

    /// AVX2 block kernel; handed out only after run-time detection of avx2.
    pub fn dot_block_avx2(block: &[i16], q: &[i16], out: &mut [i32; LANES]) {
        // SAFETY: `Kernels::detect` checked avx2 before handing this out.
        unsafe { dot_block_avx2_inner(block, q, out) }
    }

    /// AVX-512BW block kernel; handed out only after run-time detection of
    /// avx512f and avx512bw.
    pub fn dot_block_avx512(block: &[i16], q: &[i16], out: &mut [i32; LANES]) {
        // SAFETY: `Kernels::detect` checked avx512f and avx512bw.
        unsafe { dot_block_avx512_inner(block, q, out) }
    }
}

/// aarch64 builds (NEON is baseline there). A pair row of a block is 32
/// i16: `vld2q` splits 8 lanes' pairs into their first and second
/// dimensions, and `vmlal_n` adds each times the query's value of that
/// dimension into 4-lane i32 sums; no horizontal reduction, as on x86.
#[cfg(target_arch = "aarch64")]
pub mod neon {
    use super::LANES;
    use std::arch::aarch64::*;

    #[target_feature(enable = "neon")]
    fn dot_block_inner(block: &[i16], q: &[i16], out: &mut [i32; LANES]) {
        let mut acc = [vdupq_n_s32(0); 4];
        for (row, qp) in block.chunks_exact(2 * LANES).zip(q.chunks_exact(2)) {
            let (q0, q1) = (qp[0], qp[1]);
            for half in 0..2 {
                // SAFETY: `row` holds 2 * LANES = 32 i16; this reads the 16
                // values of lanes 8 half .. 8 half + 8.
                let v = unsafe { vld2q_s16(row.as_ptr().add(16 * half)) };
                let (lo, hi) = (2 * half, 2 * half + 1);
                acc[lo] = vmlal_n_s16(acc[lo], vget_low_s16(v.0), q0);
                acc[lo] = vmlal_n_s16(acc[lo], vget_low_s16(v.1), q1);
                acc[hi] = vmlal_n_s16(acc[hi], vget_high_s16(v.0), q0);
                acc[hi] = vmlal_n_s16(acc[hi], vget_high_s16(v.1), q1);
            }
        }
        for (chunk, a) in out.chunks_exact_mut(4).zip(acc) {
            // SAFETY: `chunk` is 4 i32.
            unsafe { vst1q_s32(chunk.as_mut_ptr(), a) };
        }
    }

    /// NEON block kernel; `block` from [`super::interleave`], `q` from
    /// [`super::widen_query`].
    pub fn dot_block_neon(block: &[i16], q: &[i16], out: &mut [i32; LANES]) {
        // SAFETY: NEON is in the baseline of every aarch64 target.
        unsafe { dot_block_inner(block, q, out) }
    }
}
