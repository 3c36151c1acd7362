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
        let (lo, hi) = q
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            });
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
        for (w, chunk) in q.chunks(64).enumerate() {
            levels.fill(0);
            for (l, &x) in levels.iter_mut().zip(chunk) {
                // Round to nearest (x >= lo, so +0.5 and truncation do it).
                *l = (((x - lo) * inv + 0.5) as u32).min(top) as u8;
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

/// Bit `j` of each of 64 levels, as one word (bit `i` = level `i`'s bit).
/// Eight levels at a time: their bits `j`, isolated in the low bit of each
/// byte, are gathered into the top byte by one multiplication (every
/// partial product is a distinct power of two, so nothing carries).
#[inline]
fn plane_word(levels: &[u8; 64], j: usize) -> u64 {
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
