//! The fused Tier1 kernel: bit-plane popcounts turned straight into score
//! estimates and a pass mask, so the scan never round-trips integer counts
//! through memory and the caller only looks at rows that can enter its top.
//!
//! For a row with level dot `dot`, popcount `pop`, and factors `scale`,
//! `bias`, the estimate is
//! `offset + bias + g * scale * (lo2 * pop + d2 * dot - all)`
//! (see the blueprint, "Tier1 estimate"; `lo2 = 2 lo`, `d2 = 2 delta`).
use super::bits::{plane_scan_portable, PlaneScanFn, BLOCK};

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

/// `(blocks, words, planes, bits, scale, bias, params, est, mask)`: see
/// [`estimate_scan_portable`].
pub type EstimateScanFn =
    fn(&[u64], usize, &[u64], usize, &[f32], &[f32], &EstimateParams, &mut [f32], &mut [u8]);

/// Estimates every row of the whole blocks in `blocks` into `est` (8 per
/// block) and sets bit `l` of `mask[b]` when row `8 b + l`'s estimate is
/// above `p.threshold`. `scale` and `bias` hold the factors of the first
/// `m = scale.len()` rows (`m <= 8 * blocks`); rows from `m` on get
/// `-inf` and a clear bit. `bits` is 1..=8.
#[allow(clippy::too_many_arguments)]
pub fn estimate_scan_portable(
    blocks: &[u64],
    words: usize,
    planes: &[u64],
    bits: usize,
    scale: &[f32],
    bias: &[f32],
    p: &EstimateParams,
    est: &mut [f32],
    mask: &mut [u8],
) {
    estimate_with(
        plane_scan_portable,
        blocks,
        words,
        planes,
        bits,
        scale,
        bias,
        p,
        est,
        mask,
    );
}

/// The fused kernel over any plane-scan kernel, one block at a time.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn estimate_with(
    plane_scan: PlaneScanFn,
    blocks: &[u64],
    words: usize,
    planes: &[u64],
    bits: usize,
    scale: &[f32],
    bias: &[f32],
    p: &EstimateParams,
    est: &mut [f32],
    mask: &mut [u8],
) {
    let mut pairs = [0u32; 2 * BLOCK];
    let blocks = blocks.chunks_exact((BLOCK * words).max(1));
    for (b, ((blk, e8), m)) in blocks
        .zip(est.chunks_exact_mut(BLOCK))
        .zip(mask.iter_mut())
        .enumerate()
    {
        plane_scan(blk, words, planes, bits, words, &mut pairs);
        let r0 = b * BLOCK;
        *m = 0;
        for (l, e) in e8.iter_mut().enumerate() {
            *e = match (scale.get(r0 + l), bias.get(r0 + l)) {
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
    use super::{EstimateParams, BLOCK};
    use crate::math::bits::x86::block_sums;
    use crate::math::prefetch::prefetch;

    #[target_feature(enable = "avx512f,avx512vpopcntdq,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn estimate_scan_avx512_inner(
        blocks: &[u64],
        words: usize,
        planes: &[u64],
        bits: usize,
        scale: &[f32],
        bias: &[f32],
        p: &EstimateParams,
        est: &mut [f32],
        mask: &mut [u8],
    ) {
        use std::arch::x86_64::*;
        const AHEAD: usize = 4;
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
            // and the wrapper checked `planes.len() >= bits * words`.
            let (dot, pop) = unsafe { block_sums(blk, words, planes, bits, 0, words) };
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
    #[allow(clippy::too_many_arguments)]
    pub fn estimate_scan_popcnt(
        blocks: &[u64],
        words: usize,
        planes: &[u64],
        bits: usize,
        scale: &[f32],
        bias: &[f32],
        p: &EstimateParams,
        est: &mut [f32],
        mask: &mut [u8],
    ) {
        super::estimate_with(
            crate::math::bits::x86::plane_scan_popcnt,
            blocks,
            words,
            planes,
            bits,
            scale,
            bias,
            p,
            est,
            mask,
        );
    }

    /// The fused kernel with AVX-512 VPOPCNTDQ; handed out by
    /// `Kernels::detect` only after run-time detection of `avx512f`,
    /// `avx512vpopcntdq`, `avx2` and `fma`.
    #[allow(clippy::too_many_arguments)]
    pub fn estimate_scan_avx512(
        blocks: &[u64],
        words: usize,
        planes: &[u64],
        bits: usize,
        scale: &[f32],
        bias: &[f32],
        p: &EstimateParams,
        est: &mut [f32],
        mask: &mut [u8],
    ) {
        if words == 0 || bits > 8 || planes.len() < bits * words {
            return super::estimate_scan_portable(
                blocks, words, planes, bits, scale, bias, p, est, mask,
            );
        }
        // SAFETY: `Kernels::detect` checked every feature; loads are bounded
        // by the block count computed from the slice lengths.
        unsafe {
            estimate_scan_avx512_inner(blocks, words, planes, bits, scale, bias, p, est, mask)
        }
    }
}
