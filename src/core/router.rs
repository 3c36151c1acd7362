//! Routing scores for every partition, from an int8 copy of the centroids.
//!
//! Ranking the partitions reads all `L` centroids per query; in float32 that
//! is `4 L dim` bytes (376 KB for 245 x 384), which does not stay in cache
//! between queries and made routing memory-bound (over half the time of a
//! one-partition query). The router keeps a per-process int8 copy (a
//! quarter of the bytes, built at open; the file is unchanged) and only
//! ranks with it: the partitions finally probed get exact float32 scores.
use crate::math::Kernels;

/// Int8 centroids with one scale each: `c[p] ~= scale[p] * codes[p]`.
pub struct Router {
    dim: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
}

impl Router {
    /// Quantizes `centroids` (`L x dim`, row-major) symmetrically per row.
    pub fn new(centroids: &[f32], dim: usize) -> Self {
        let rows = centroids.len().checked_div(dim).unwrap_or(0);
        let mut codes = Vec::with_capacity(rows * dim);
        let mut scales = Vec::with_capacity(rows);
        for c in centroids.chunks_exact(dim.max(1)).take(rows) {
            let max = c.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let scale = if max > 0.0 && max.is_finite() {
                max / 127.0
            } else {
                1.0
            };
            codes.extend(
                c.iter()
                    .map(|&x| (x / scale).round().clamp(-127.0, 127.0) as i8),
            );
            scales.push(scale);
        }
        Router { dim, codes, scales }
    }

    /// Number of partitions.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    /// True for an index without partitions.
    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// Approximate `<q, c_p>`.
    #[inline]
    pub fn dot(&self, kernels: &Kernels, q: &[f32], p: usize) -> f32 {
        let c = &self.codes[p * self.dim..(p + 1) * self.dim];
        self.scales[p] * (kernels.dot_i8)(q, c)
    }
}
