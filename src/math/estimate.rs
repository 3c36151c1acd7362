//! The fused Tier1 kernel: bit-plane popcounts turned straight into score
//! estimates and a pass mask, so the scan never round-trips integer counts
//! through memory and the caller only looks at rows that can enter its top.
//!
//! For a row with level dot `dot`, popcount `pop`, and factors `scale`,
//! `bias`, the estimate is
//! `offset + bias + g * scale * (lo2 * pop + d2 * dot - all)`
//! (see the blueprint, "Tier1 estimate"; `lo2 = 2 lo`, `d2 = 2 delta`).
use super::bits::{plane_scan_portable, CodeBlocks, PlaneScanFn, Planes, BLOCK};
use super::quantize::QueryPlanes;

/// Per-call constants of the estimate, and the threshold for the mask.
#[derive(Debug, Clone, Copy)]
pub struct EstimateParams {
    /// Partition constant (`<q, anchor>` or `-||q - anchor||^2`).
    pub offset: f32,
    /// Weight of the estimated inner product (1 for ip/cosine, 2 for l2).
    pub g: f32,
    /// `2 * lo` of the query levels.
    pub lo2: f32,
    /// `2 * delta` of the query levels.
    pub d2: f32,
    /// `lo * dims + delta * level_sum`.
    pub all: f32,
    /// Mask bits are set for estimates strictly above this.
    pub threshold: f32,
}

impl EstimateParams {
    /// The constants of query `q` with weight `g`; offset 0 and no threshold
    /// (set both per partition and per chunk).
    pub fn for_query(q: &QueryPlanes, g: f32) -> Self {
        EstimateParams {
            offset: 0.0,
            g,
            lo2: 2.0 * q.lo,
            d2: 2.0 * q.delta,
            all: q.lo * q.dims as f32 + q.delta * q.level_sum as f32,
            threshold: f32::NEG_INFINITY,
        }
    }
}

/// The per-row factors of the rows being estimated (`scale.len() == bias.len()`).
#[derive(Debug, Clone, Copy)]
pub struct RowFactors<'a> {
    /// `||r||^2 / ||r||_1` of each row's residual.
    pub scale: &'a [f32],
    /// The row's constant term (anchor part folded in at build).
    pub bias: &'a [f32],
}

/// `(codes, planes, factors, params, est, mask)`: see [`estimate_scan_portable`].
pub type EstimateScanFn =
    fn(CodeBlocks<'_>, Planes<'_>, RowFactors<'_>, &EstimateParams, &mut [f32], &mut [u8]);

/// Estimates every row of the whole blocks in `codes` into `est` (8 per
/// block) and sets bit `l` of `mask[b]` when row `8 b + l`'s estimate is
/// above `p.threshold`. `rows` holds the factors of the first
/// `m = rows.scale.len()` rows (`m <= 8 * blocks`); rows from `m` on get
/// `-inf` and a clear bit. `q.bits` is 1..=8.
pub fn estimate_scan_portable(
    codes: CodeBlocks<'_>,
    q: Planes<'_>,
    rows: RowFactors<'_>,
    p: &EstimateParams,
    est: &mut [f32],
    mask: &mut [u8],
) {
    estimate_with(plane_scan_portable, codes, q, rows, p, est, mask);
}

/// The fused kernel over any plane-scan kernel, one block at a time.
#[inline(always)]
fn estimate_with(
    plane_scan: PlaneScanFn,
    codes: CodeBlocks<'_>,
    q: Planes<'_>,
    rows: RowFactors<'_>,
    p: &EstimateParams,
    est: &mut [f32],
    mask: &mut [u8],
) {
    let mut pairs = [0u32; 2 * BLOCK];
    let step = (BLOCK * codes.words).max(1);
    for (b, ((blk, e8), m)) in codes
        .blocks
        .chunks_exact(step)
        .zip(est.chunks_exact_mut(BLOCK))
        .zip(mask.iter_mut())
        .enumerate()
    {
        let one = CodeBlocks {
            blocks: blk,
            words: codes.words,
        };
        plane_scan(one, q, &mut pairs);
        let r0 = b * BLOCK;
        *m = 0;
        for (l, e) in e8.iter_mut().enumerate() {
            *e = match (rows.scale.get(r0 + l), rows.bias.get(r0 + l)) {
                (Some(&a), Some(&c)) => {
                    let t = p.lo2 * pairs[2 * l + 1] as f32 + p.d2 * pairs[2 * l] as f32 - p.all;
                    p.offset + c + p.g * a * t
                }
                _ => f32::NEG_INFINITY,
            };
            *m |= u8::from(*e > p.threshold) << l;
        }
    }
}

/// x86_64 builds of the fused kernel.
#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use super::{CodeBlocks, EstimateParams, Planes, RowFactors, BLOCK};
    use crate::math::bits::x86::{block_sums, by_bits, fits};
    use crate::math::prefetch::prefetch;

    #[target_feature(enable = "avx512f,avx512vpopcntdq,avx2,fma")]
    unsafe fn estimate_scan_avx512_inner<const B: usize>(
        codes: CodeBlocks<'_>,
        q: Planes<'_>,
        rows: RowFactors<'_>,
        p: &EstimateParams,
        est: &mut [f32],
        mask: &mut [u8],
    ) {
        use std::arch::x86_64::*;
        const AHEAD: usize = 4;
        let (blocks, words) = (codes.blocks, codes.words);
        let (scale, bias) = (rows.scale, rows.bias);
        let step = BLOCK * words;
        let nblocks = (blocks.len() / step).min(mask.len()).min(est.len() / BLOCK);
        let (lo2, d2) = (_mm256_set1_ps(p.lo2), _mm256_set1_ps(p.d2));
        let (all, offset) = (_mm256_set1_ps(p.all), _mm256_set1_ps(p.offset));
        let (g, thr) = (_mm256_set1_ps(p.g), _mm256_set1_ps(p.threshold));
        let (mut pad_a, mut pad_b) = ([0f32; BLOCK], [0f32; BLOCK]);
        for b in 0..nblocks {
            let blk = &blocks[b * step..(b + 1) * step];
            // Stream ahead: every line of the block AHEAD blocks on. (One
            // line of the block two on, as before, left the scan of codes
            // out of cache at 48% of the u64-sum bandwidth; this gives 86%.)
            if let Some(next) = blocks.get((b + AHEAD) * step..(b + AHEAD + 1) * step) {
                prefetch(next);
            }
            // SAFETY: features enabled on this function; `blk` is one block
            // and the wrapper checked `fits(codes, q)`.
            let (dot, pop) = unsafe { block_sums::<B>(blk, words, q.planes) };
            let dot = _mm256_cvtepi32_ps(_mm512_cvtepi64_epi32(dot));
            let pop = _mm256_cvtepi32_ps(_mm512_cvtepi64_epi32(pop));
            let t = _mm256_sub_ps(_mm256_fmadd_ps(lo2, pop, _mm256_mul_ps(d2, dot)), all);
            let r0 = b * BLOCK;
            let full = r0 + BLOCK <= scale.len().min(bias.len());
            let (a, c) = if full {
                // SAFETY: rows r0..r0+8 are inside both slices.
                unsafe {
                    (
                        _mm256_loadu_ps(scale.as_ptr().add(r0)),
                        _mm256_loadu_ps(bias.as_ptr().add(r0)),
                    )
                }
            } else {
                // Last, partial block: rows past the factors score -inf.
                for l in 0..BLOCK {
                    pad_a[l] = scale.get(r0 + l).copied().unwrap_or(0.0);
                    pad_b[l] = bias.get(r0 + l).copied().unwrap_or(f32::NEG_INFINITY);
                }
                // SAFETY: both pads are 8 f32.
                unsafe {
                    (
                        _mm256_loadu_ps(pad_a.as_ptr()),
                        _mm256_loadu_ps(pad_b.as_ptr()),
                    )
                }
            };
            let e = _mm256_fmadd_ps(_mm256_mul_ps(g, a), t, _mm256_add_ps(offset, c));
            // SAFETY: `est` has at least `nblocks * 8` values.
            unsafe { _mm256_storeu_ps(est.as_mut_ptr().add(r0), e) };
            mask[b] = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(e, thr)) as u8;
        }
    }

    /// The fused kernel over the `popcnt` plane scan; handed out only after
    /// run-time detection of `popcnt`.
    pub fn estimate_scan_popcnt(
        codes: CodeBlocks<'_>,
        q: Planes<'_>,
        rows: RowFactors<'_>,
        p: &EstimateParams,
        est: &mut [f32],
        mask: &mut [u8],
    ) {
        let scan = crate::math::bits::x86::plane_scan_popcnt;
        super::estimate_with(scan, codes, q, rows, p, est, mask);
    }

    /// The fused kernel with AVX-512 VPOPCNTDQ; handed out by
    /// `Kernels::detect` only after run-time detection of `avx512f`,
    /// `avx512vpopcntdq`, `avx2` and `fma`.
    pub fn estimate_scan_avx512(
        codes: CodeBlocks<'_>,
        q: Planes<'_>,
        rows: RowFactors<'_>,
        p: &EstimateParams,
        est: &mut [f32],
        mask: &mut [u8],
    ) {
        if !fits(codes, q) {
            return super::estimate_scan_portable(codes, q, rows, p, est, mask);
        }
        // SAFETY: `Kernels::detect` checked every feature; loads are bounded
        // by the block count computed from the slice lengths.
        unsafe {
            by_bits!(
                q.bits,
                estimate_scan_avx512_inner,
                (codes, q, rows, p, est, mask)
            )
        }
    }
}

/// aarch64 builds: the fused kernel over the NEON plane scan.
#[cfg(target_arch = "aarch64")]
pub mod neon {
    use super::{estimate_with, CodeBlocks, EstimateParams, Planes, RowFactors};
    use crate::math::bits::neon::plane_scan_neon;

    /// Same contract as [`super::estimate_scan_portable`].
    pub fn estimate_scan_neon(
        codes: CodeBlocks<'_>,
        q: Planes<'_>,
        rows: RowFactors<'_>,
        p: &EstimateParams,
        est: &mut [f32],
        mask: &mut [u8],
    ) {
        estimate_with(plane_scan_neon, codes, q, rows, p, est, mask);
    }
}
