//! A 1-bit pre-pass over many centroids. Ranking `L` centroids in int8
//! reads `L dim` bytes per query: 768 KB at 2,000 x 384, which does not
//! stay in cache between queries (perf: 27% of a query at target 0.95 on
//! the clustered 1M set, one probe). Here every centroid is also coded as
//! the signs of `c_p - mu` (`mu` the centroids' mean), 48 bytes at 384-d,
//! with RaBitQ's factor, and scanned by the Tier1 kernel with the query's
//! own bit planes; only the best few by that estimate are scored exactly
//! (blueprint 3.2).
use super::super::query::PreparedQuery;
use super::super::topk::{Scored, TopK};
use crate::index::build::row_factors;
use crate::math::bits::{to_blocked, CodeBlocks, BLOCK};
use crate::math::estimate::{EstimateParams, RowFactors};
use crate::math::quantize::{sign_code, words_for};
use crate::math::Kernels;
use crate::metric::Metric;

/// Fewest partitions for which the pre-pass is built: below this the int8
/// copy (`L dim` bytes) stays in L2 between queries.
pub const MIN_PARTITIONS: usize = 1024;

/// Fewest dimensions: the sign estimate's error shrinks as `1 / sqrt(dim)`,
/// and at 96-d, where many centroids nearly tie, the nearest ranked as low
/// as 167th by it (session 28).
pub const MIN_DIM: usize = 256;

/// Centroids per kernel call (its outputs stay in L1).
const CHUNK: usize = 256;

/// Sign codes and factors of every centroid's offset from their mean.
pub struct SignPrepass {
    words: usize,
    /// Blocked sign codes of `c_p - mu` ([`to_blocked`]).
    blocks: Vec<u64>,
    /// `||c_p - mu||^2 / ||c_p - mu||_1`.
    scale: Vec<f32>,
    /// `-||c_p||^2`.
    bias: Vec<f32>,
    mu: Vec<f32>,
}

impl SignPrepass {
    /// The pre-pass of `centroids` (`L x dim`) with their squared norms.
    pub fn new(centroids: &[f32], dim: usize, norms: &[f32]) -> Self {
        let rows = norms.len();
        let words = words_for(dim);
        let mut mu = vec![0f64; dim];
        for c in centroids.chunks_exact(dim) {
            for (m, &x) in mu.iter_mut().zip(c) {
                *m += f64::from(x);
            }
        }
        let mu: Vec<f32> = mu
            .iter()
            .map(|&m| (m / rows.max(1) as f64) as f32)
            .collect();
        let mut codes = vec![0u64; rows * words];
        let mut scale = Vec::with_capacity(rows);
        let mut r = vec![0f32; dim];
        let zero = vec![0f32; dim];
        for (c, code) in centroids
            .chunks_exact(dim)
            .zip(codes.chunks_exact_mut(words))
        {
            for ((d, &x), &m) in r.iter_mut().zip(c).zip(&mu) {
                *d = x - m;
            }
            sign_code(&r, code);
            // The rows' own factor, `||r||^2 / ||r||_1` (the anchor and the
            // metric only move the bias, which is set here instead).
            scale.push(row_factors(&r, &zero, Metric::L2).0);
        }
        SignPrepass {
            words,
            blocks: to_blocked(&codes, words),
            scale,
            bias: norms.iter().map(|&n| -n).collect(),
            mu,
        }
    }

    /// The `keep` partitions with the best estimated routing score
    /// (`-||q - c_p||^2`, estimated through the signs) into `out`,
    /// unordered, their scores the estimates.
    pub fn candidates(
        &self,
        kernels: &Kernels,
        q: &PreparedQuery,
        keep: usize,
        out: &mut Vec<Scored>,
    ) {
        out.clear();
        let rows = self.scale.len();
        let mut top = TopK::default();
        top.reset_survivors(keep);
        // `-||q - c||^2 = 2 <q, mu> + 2 <q, c - mu> - ||c||^2 - ||q||^2`.
        let mut params = EstimateParams::for_query(&q.planes, 2.0);
        params.offset = 2.0 * (kernels.dot)(&q.q, &self.mu) - q.norm2;
        let (mut est, mut mask) = ([0f32; CHUNK], [0u8; CHUNK / BLOCK]);
        for r0 in (0..rows).step_by(CHUNK) {
            let r1 = (r0 + CHUNK).min(rows);
            let nb = (r1 - r0).div_ceil(BLOCK);
            params.threshold = top.threshold();
            (kernels.estimate_scan)(
                CodeBlocks {
                    blocks: &self.blocks[r0 * self.words..(r0 + nb * BLOCK) * self.words],
                    words: self.words,
                },
                q.planes.as_planes(),
                RowFactors {
                    scale: &self.scale[r0..r1],
                    bias: &self.bias[r0..r1],
                },
                &params,
                &mut est[..nb * BLOCK],
                &mut mask[..nb],
            );
            for (b, &m) in mask[..nb].iter().enumerate() {
                let mut m = m;
                while m != 0 {
                    let i = b * BLOCK + m.trailing_zeros() as usize;
                    m &= m - 1;
                    if est[i] > top.threshold() {
                        top.push(est[i], (r0 + i) as u32);
                    }
                }
            }
        }
        top.drain_sorted(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n x dim` values in [-1, 1) from a fixed generator.
    fn values(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n * dim)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn setup(rows: usize, dim: usize) -> (Vec<f32>, SignPrepass, Kernels) {
        let kernels = Kernels::detect();
        let c = values(rows, dim, 7);
        let norms: Vec<f32> = c.chunks_exact(dim).map(|x| (kernels.dot)(x, x)).collect();
        let pp = SignPrepass::new(&c, dim, &norms);
        (c, pp, kernels)
    }

    #[test]
    fn asked_for_every_partition_returns_each_once() {
        // 70 dims: a partial code word; 37 rows: a partial block and chunk.
        let (rows, dim) = (37, 70);
        let (_, pp, kernels) = setup(rows, dim);
        let mut q = PreparedQuery::default();
        q.prepare(&values(1, dim, 3), dim, Metric::L2, 4, &kernels)
            .unwrap();
        let mut out = Vec::new();
        pp.candidates(&kernels, &q, rows, &mut out);
        let mut seen: Vec<u32> = out.iter().map(|r| r.row).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..rows as u32).collect::<Vec<_>>());
        assert!(out.iter().all(|r| r.score.is_finite()));
    }

    #[test]
    fn a_query_beside_a_centroid_keeps_it_among_the_candidates() {
        // More rows than a kernel chunk, so the threshold carries across
        // chunks.
        let (rows, dim) = (1100, 64);
        let (c, pp, kernels) = setup(rows, dim);
        let noise = values(rows, dim, 11);
        let mut q = PreparedQuery::default();
        let mut out = Vec::new();
        for p in (0..rows).step_by(37) {
            let near: Vec<f32> = c[p * dim..(p + 1) * dim]
                .iter()
                .zip(&noise[p * dim..])
                .map(|(&x, &e)| x + 0.05 * e)
                .collect();
            q.prepare(&near, dim, Metric::L2, 4, &kernels).unwrap();
            pp.candidates(&kernels, &q, 16, &mut out);
            assert_eq!(out.len(), 16);
            assert!(
                out.iter().any(|r| r.row as usize == p),
                "centroid {p} not kept"
            );
        }
    }
}
