//! Binary codes for documents and bit-plane codes for queries.

/// Number of `u64` words that hold a `dim`-bit code.
pub fn words_for(dim: usize) -> usize {
    dim.div_ceil(64)
}

/// Sets bit `i` of `code` where `v[i] > 0` (the sign code). `code` must be
/// zeroed and `words_for(v.len())` long.
pub fn sign_code(v: &[f32], code: &mut [u64]) {
    for (i, &x) in v.iter().enumerate() {
        if x > 0.0 {
            code[i / 64] |= 1u64 << (i % 64);
        }
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
    /// Per segment: sum of levels and number of dimensions.
    pub seg_sums: Vec<(u32, u32)>,
}

impl QueryPlanes {
    /// Quantizes `q` into `bits`-bit levels (round to nearest), with segment
    /// sums for segments of `seg_words` words. Reuses this value's buffers.
    pub fn encode(&mut self, q: &[f32], bits: usize, seg_words: usize) {
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
        self.seg_sums.clear();
        self.seg_sums
            .resize(words.div_ceil(seg_words.max(1)), (0, 0));
        // One word (64 dimensions) at a time, in loops without calls or
        // bounds checks (this encoding was a fifth of a small query's time
        // with a `round()` call and a bit-by-bit update per dimension).
        let mut levels = [0u32; 64];
        for (w, chunk) in q.chunks(64).enumerate() {
            levels.fill(0);
            for (l, &x) in levels.iter_mut().zip(chunk) {
                // Round to nearest (x >= lo, so +0.5 and truncation do it).
                *l = (((x - lo) * inv + 0.5) as u32).min(top);
            }
            let seg = &mut self.seg_sums[w / seg_words.max(1)];
            seg.0 += levels.iter().sum::<u32>();
            seg.1 += chunk.len() as u32;
            for j in 0..bits {
                let word = levels
                    .iter()
                    .enumerate()
                    .fold(0u64, |acc, (b, &l)| acc | (u64::from((l >> j) & 1) << b));
                self.planes[j * words + w] = word;
            }
        }
    }

    /// `<q, s>` for one segment, where `s[i] = +1` for set code bits and `-1`
    /// otherwise, from the scan's `(level_dot, popcount)` pair.
    #[inline]
    pub fn signed_dot(&self, seg: usize, level_dot: u32, pop: u32) -> f32 {
        let (level_sum, dims) = self.seg_sums[seg];
        let ones = self.lo * pop as f32 + self.delta * level_dot as f32;
        let all = self.lo * dims as f32 + self.delta * level_sum as f32;
        2.0 * ones - all
    }
}
