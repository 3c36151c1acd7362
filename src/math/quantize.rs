//! Binary codes for documents and bit-plane codes for queries.
use super::bits::Planes;

/// Number of `u64` words that hold a `dim`-bit code.
pub fn words_for(dim: usize) -> usize {
    dim.div_ceil(64)
}

/// Sets bit `i` of `code` where `v[i] > 0` (the sign code). `code` must be
/// zeroed and `words_for(v.len())` long.
pub fn sign_code(v: &[f32], code: &mut [u64]) {
    // Branch-free: the signs of a residual are a coin toss each, and a
    // branch per dimension mispredicts half the time.
    for (word, chunk) in code.iter_mut().zip(v.chunks(64)) {
        let mut bits = 0u64;
        for (i, &x) in chunk.iter().enumerate() {
            bits |= u64::from(x > 0.0) << i;
        }
        *word |= bits;
    }
}

/// A query quantized to `bits` unsigned levels per dimension:
/// `q[i] ~= lo + delta * level[i]`, stored as bit-planes, plane after plane.
#[derive(Debug, Clone, Default)]
pub struct QueryPlanes {
    /// Bits per level (1..=8).
    pub bits: usize,
    /// `planes[j * words + w]`: bit `j` of the levels of the dims in word `w`.
    pub planes: Vec<u64>,
    /// Value of level 0.
    pub lo: f32,
    /// Step between two levels.
    pub delta: f32,
    /// Sum of the levels of all dimensions.
    pub level_sum: u32,
    /// Number of dimensions.
    pub dims: u32,
}

impl QueryPlanes {
    /// Quantizes `q` into `bits`-bit levels (round to nearest). Reuses this
    /// value's buffers.
    pub fn encode(&mut self, q: &[f32], bits: usize) {
        let words = words_for(q.len());
        let (lo, hi) = min_max(q);
        let top = (1u32 << bits) - 1;
        let delta = if hi > lo { (hi - lo) / top as f32 } else { 0.0 };
        let inv = if delta > 0.0 { 1.0 / delta } else { 0.0 };
        self.bits = bits;
        self.lo = if q.is_empty() { 0.0 } else { lo };
        self.delta = delta;
        self.planes.clear();
        self.planes.resize(words * bits, 0);
        self.level_sum = 0;
        self.dims = q.len() as u32;
        // One word (64 dimensions) at a time, in loops without calls or
        // bounds checks (this encoding was a fifth of a small query's time
        // with a `round()` call and a bit-by-bit update per dimension).
        let mut levels = [0u8; 64];
        let top = top as f32;
        for (w, chunk) in q.chunks(64).enumerate() {
            levels.fill(0);
            for (l, &x) in levels.iter_mut().zip(chunk) {
                // Round to nearest (x >= lo, so +0.5 and truncation do it),
                // clamped in float (`max`/`min` send NaN to a bound) so the
                // conversion is one packed instruction: a saturating
                // `as u32` compiled to a scalar conversion and fix-ups per
                // value, a tenth of a small query's time.
                let y = ((x - lo) * inv + 0.5).max(0.0).min(top);
                // SAFETY: `y` is finite and within `0..=255`, so it fits an i32.
                *l = (unsafe { y.to_int_unchecked::<i32>() }) as u8;
            }
            self.level_sum += levels.iter().map(|&l| u32::from(l)).sum::<u32>();
            for j in 0..bits {
                self.planes[j * words + w] = plane_word(&levels, j);
            }
        }
    }

    /// The planes as the kernels take them.
    pub fn as_planes(&self) -> Planes<'_> {
        Planes {
            planes: &self.planes,
            bits: self.bits,
        }
    }
}

/// The least and the greatest of `v` (infinite for an empty `v`; NaN
/// values are skipped). A `(min, max)` fold compiled to a scalar loop of a
/// dozen instructions per value, two thirds of the query's encoding; on
/// x86_64 it runs eight values at a time in SSE2 (baseline).
pub fn min_max(v: &[f32]) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_max_ps, _mm_min_ps, _mm_set1_ps, _mm_storeu_ps};
        let chunks = v.chunks_exact(8);
        let tail = chunks.remainder();
        // SAFETY: SSE2 is part of the x86_64 baseline; each load reads 4 of
        // the 8 values of `c`, each store writes the 4 of an array. `minps`
        // returns its second operand when either is NaN, so a NaN value
        // never replaces a running bound.
        let (lo, hi) = unsafe {
            let (mut lo0, mut lo1) = (_mm_set1_ps(f32::INFINITY), _mm_set1_ps(f32::INFINITY));
            let (mut hi0, mut hi1) = (
                _mm_set1_ps(f32::NEG_INFINITY),
                _mm_set1_ps(f32::NEG_INFINITY),
            );
            for c in chunks {
                let a = _mm_loadu_ps(c.as_ptr());
                let b = _mm_loadu_ps(c.as_ptr().add(4));
                lo0 = _mm_min_ps(a, lo0);
                lo1 = _mm_min_ps(b, lo1);
                hi0 = _mm_max_ps(a, hi0);
                hi1 = _mm_max_ps(b, hi1);
            }
            let (mut lo, mut hi) = ([0.0f32; 4], [0.0f32; 4]);
            _mm_storeu_ps(lo.as_mut_ptr(), _mm_min_ps(lo0, lo1));
            _mm_storeu_ps(hi.as_mut_ptr(), _mm_max_ps(hi0, hi1));
            (lo, hi)
        };
        let (lo_tail, hi_tail) = min_max_scalar(tail);
        let (least, _) = min_max_scalar(&lo);
        let (_, greatest) = min_max_scalar(&hi);
        (least.min(lo_tail), greatest.max(hi_tail))
    }
    #[cfg(not(target_arch = "x86_64"))]
    min_max_scalar(v)
}

/// The least and greatest of `v`, one value at a time.
fn min_max_scalar(v: &[f32]) -> (f32, f32) {
    v.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
            (if x < l { x } else { l }, if x > h { x } else { h })
        })
}

/// Bit `j` of each of 64 levels, as one word (bit `i` = level `i`'s bit).
/// Sixteen levels at a time: shifted left by `7 - j` (in 16-bit lanes, so
/// each byte's top bit becomes its own bit `j`), their top bits are one
/// `movemask` (SSE2, baseline on x86_64): a fifth of the instructions of the
/// portable gather below.
#[cfg(target_arch = "x86_64")]
#[inline]
fn plane_word(levels: &[u8; 64], j: usize) -> u64 {
    use std::arch::x86_64::{_mm_cvtsi32_si128, _mm_loadu_si128, _mm_movemask_epi8, _mm_sll_epi16};
    let shift = 7 - j.min(7) as i32;
    let mut word = 0u64;
    for (g, chunk) in levels.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is part of the x86_64 baseline; `chunk` holds the 16
        // bytes read (an unaligned load).
        let bits = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            _mm_movemask_epi8(_mm_sll_epi16(v, _mm_cvtsi32_si128(shift)))
        };
        word |= u64::from(bits as u16) << (16 * g);
    }
    word
}

/// Bit `j` of each of 64 levels, portably.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn plane_word(levels: &[u8; 64], j: usize) -> u64 {
    plane_word_gather(levels, j)
}

/// Bit `j` of each of 64 levels, as one word (bit `i` = level `i`'s bit).
/// Eight levels at a time: their bits `j`, isolated in the low bit of each
/// byte, are gathered into the top byte by one multiplication (every
/// partial product is a distinct power of two, so nothing carries).
#[cfg(any(not(target_arch = "x86_64"), test))]
#[inline]
fn plane_word_gather(levels: &[u8; 64], j: usize) -> u64 {
    const LOW_BITS: u64 = 0x0101_0101_0101_0101;
    const GATHER: u64 = 0x0102_0408_1020_4080;
    let mut word = 0u64;
    for (g, chunk) in levels.chunks_exact(8).enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        let y = (u64::from_le_bytes(b) >> j) & LOW_BITS;
        word |= (y.wrapping_mul(GATHER) >> 56) << (8 * g);
    }
    word
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_max_skips_nan_and_handles_every_length() {
        for n in 0..40 {
            let v: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.5)
                .collect();
            let want = v
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
                    (l.min(x), h.max(x))
                });
            assert_eq!(min_max(&v), want, "n {n}");
            let mut w = v.clone();
            w.push(f32::NAN);
            w.insert(0, f32::NAN);
            assert_eq!(min_max(&w), want, "n {n} with NaN");
        }
    }

    #[test]
    fn plane_words_agree_with_the_bit_by_bit_definition() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..64 {
            let mut levels = [0u8; 64];
            for l in levels.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *l = x as u8;
            }
            for j in 0..8 {
                let want = (0..64).fold(0u64, |w, i| w | (u64::from(levels[i] >> j & 1) << i));
                assert_eq!(plane_word(&levels, j), want, "bit {j}");
                assert_eq!(plane_word_gather(&levels, j), want, "bit {j}");
            }
        }
    }
}
