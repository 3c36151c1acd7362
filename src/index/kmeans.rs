//! k-means (Lloyd) for the partitions: trained on a deterministic sample,
//! then every row is assigned to its nearest centroid by L2. All passes run
//! on the library's pool.
use rayon::prelude::*;

use crate::math::{gemm, Kernels};
use crate::pool;

/// Sample rows per centroid used for training. Training costs
/// `ITERATIONS * SAMPLE_PER_CENTROID * L^2 * dim`, and `L` grows as
/// `2 sqrt(n)`; on debian-minilm-384 (490 partitions) 32 rows and 6
/// iterations cover the true top-10 about as well per row scanned as 64
/// rows and 10 iterations (0.959 vs 0.960 with ~6.5k rows probed) at a
/// third of the training time.
pub const SAMPLE_PER_CENTROID: usize = 32;
/// Lloyd iterations.
pub const ITERATIONS: usize = 6;

/// A small deterministic generator (xorshift64*), so builds are reproducible.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03 | 1)
    }

    /// Next value in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

/// `n` distinct indices out of `0..total` (partial Fisher-Yates), sorted.
pub fn sample_indices(total: usize, n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut all: Vec<usize> = (0..total).collect();
    let n = n.min(total);
    for i in 0..n {
        let j = i + rng.below(total - i);
        all.swap(i, j);
    }
    all.truncate(n);
    all.sort_unstable();
    all
}

/// Index of the centroid nearest to `x` by L2, using
/// `argmax 2<x, c> - ||c||^2`.
#[inline]
pub fn nearest(x: &[f32], centroids: &[f32], norms: &[f32], kernels: &Kernels) -> usize {
    best_score(x, centroids, norms, kernels, None).0
}

/// The centroid with the highest `2<x, c> - ||c||^2` (nearest by L2),
/// leaving out `skip`, and that score.
#[inline]
fn best_score(
    x: &[f32],
    centroids: &[f32],
    norms: &[f32],
    kernels: &Kernels,
    skip: Option<usize>,
) -> (usize, f32) {
    /// Centroids scored per kernel call (the scores stay on the stack).
    const BLOCK: usize = 64;
    let dim = x.len().max(1);
    let mut dots = [0.0f32; BLOCK];
    let mut best = (f32::NEG_INFINITY, usize::from(skip == Some(0)));
    for (b, (block, block_norms)) in centroids
        .chunks(BLOCK * dim)
        .zip(norms.chunks(BLOCK))
        .enumerate()
    {
        let dots = &mut dots[..block_norms.len()];
        (kernels.dot_rows)(x, block, dots);
        for (i, (&d, &cn)) in dots.iter().zip(block_norms).enumerate() {
            let s = 2.0 * d - cn;
            if s > best.0 && skip != Some(b * BLOCK + i) {
                best = (s, b * BLOCK + i);
            }
        }
    }
    (best.1, best.0)
}

/// Rows scored against every centroid per matrix product in
/// [`nearest_all`] and the spill assignment. Each product packs all the
/// centroids, so fewer, larger blocks pack them less often: 64 -> 256 took
/// an uncalibrated 30k x 1536 build from 4.0/4.3 to 3.9/3.4 s and
/// debian-minilm-384's from 2.3/2.2 to 2.2/1.8 s (alternating runs). The
/// scores take `ROW_BLOCK x k` floats per thread (6.4 MB at 6,300
/// partitions, about 10M rows).
pub const ROW_BLOCK: usize = 256;

/// [`nearest`] for each row of `rows` (`m x dim`), `out` holding `m`:
/// a block of rows at a time against all centroids in one matrix product
/// ([`gemm::dots`]), `dots` its scratch.
pub fn nearest_all(
    rows: &[f32],
    centroids: &[f32],
    norms: &[f32],
    dots: &mut Vec<f32>,
    out: &mut [usize],
) {
    let k = norms.len();
    let dim = centroids.len() / k.max(1);
    if dim == 0 || k == 0 {
        out.fill(0);
        return;
    }
    for (block, out) in rows.chunks(ROW_BLOCK * dim).zip(out.chunks_mut(ROW_BLOCK)) {
        let m = block.len() / dim;
        dots.resize(m * k, 0.0);
        gemm::dots(block, centroids, dim, &mut dots[..m * k]);
        for (d, o) in dots[..m * k].chunks_exact(k).zip(out.iter_mut()) {
            *o = best_of(d, norms).0;
        }
    }
}

/// The centroid with the highest `2 dot - ||c||^2` given every centroid's
/// `dots` with one row, and that score.
#[inline]
fn best_of(dots: &[f32], norms: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, (&d, &cn)) in dots.iter().zip(norms).enumerate() {
        let s = 2.0 * d - cn;
        if s > best.1 {
            best = (i, s);
        }
    }
    best
}

/// [`nearest_all`] over `sample` on the pool.
fn nearest_pool(sample: &[f32], dim: usize, centroids: &[f32], norms: &[f32]) -> Vec<usize> {
    let m = sample.len() / dim.max(1);
    let mut assign = vec![0usize; m];
    pool::install(|| {
        sample
            .par_chunks(ROW_BLOCK * dim)
            .zip(assign.par_chunks_mut(ROW_BLOCK))
            .for_each_init(Vec::new, |dots, (rows, out)| {
                nearest_all(rows, centroids, norms, dots, out)
            });
    });
    assign
}

/// Squared norms of the centroids.
pub fn norms(centroids: &[f32], dim: usize, kernels: &Kernels) -> Vec<f32> {
    centroids
        .chunks_exact(dim)
        .map(|c| (kernels.dot)(c, c))
        .collect()
}

/// Trains `k` centroids on `sample` (`m x dim`, row-major).
pub fn train(sample: &[f32], dim: usize, k: usize, seed: u64, kernels: &Kernels) -> Vec<f32> {
    let m = sample.len() / dim;
    let mut rng = Rng::new(seed);
    let mut centroids: Vec<f32> = sample_indices(m, k, &mut rng)
        .iter()
        .flat_map(|&i| sample[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    for it in 0..ITERATIONS {
        let cn = norms(&centroids, dim, kernels);
        let assign = nearest_pool(sample, dim, &centroids, &cn);
        let (sums, counts) = accumulate(sample, dim, k, &assign);
        for (p, (c, &count)) in centroids.chunks_exact_mut(dim).zip(&counts).enumerate() {
            if count == 0 {
                // An empty cell takes a random sample row, so no partition is wasted.
                let i = rng.below(m);
                c.copy_from_slice(&sample[i * dim..(i + 1) * dim]);
            } else {
                for (x, s) in c.iter_mut().zip(&sums[p * dim..(p + 1) * dim]) {
                    *x = (s / count as f64) as f32;
                }
            }
        }
        if it + 1 < ITERATIONS {
            rebalance(sample, dim, &mut centroids, &counts, &assign, &mut rng);
        }
    }
    for _ in 0..SPLIT_PASSES {
        split_mixed(sample, dim, &mut centroids, &mut rng, kernels);
    }
    centroids
}

/// Passes of [`split_mixed`] after the last Lloyd step: on the clustered
/// 1M x 384 set's centroids (cells counted on 200k of its rows, scaled)
/// the largest cell went 4,365 -> 2,265 -> 1,760 rows in two passes (a
/// third changed nothing), the row-weighted p99 cell 3,635 -> 1,460.
const SPLIT_PASSES: usize = 2;

/// Lloyd steps of the local k-means that splits a cell.
const SPLIT_ITERATIONS: usize = 4;

/// Splits each cell still holding more than [`SPLIT_ABOVE`] times the mean
/// after the last Lloyd step into about one piece per mean's worth of its
/// rows, by k-means on its own rows; each extra piece takes the centroid of
/// the cheapest merge (Ward's `n_d n_e / (n_d + n_e) ||c_d - c_e||^2`, the
/// neighbour moved to the pair's mean, so the donor's rows keep a centroid
/// to go to), so the partition count stays. Such a cell mixes clusters left
/// without a centroid (their rows, about equally far from every centroid,
/// join the shortest one: blueprint 2). A row of one of its clusters is
/// nearer the piece holding its cluster than any other centroid, so the
/// pieces keep their rows in the final assignment.
fn split_mixed(
    sample: &[f32],
    dim: usize,
    centroids: &mut [f32],
    rng: &mut Rng,
    kernels: &Kernels,
) {
    let k = centroids.len() / dim;
    let m = sample.len() / dim;
    let cn = norms(centroids, dim, kernels);
    let assign = nearest_pool(sample, dim, centroids, &cn);
    let mut counts = vec![0usize; k];
    for &p in &assign {
        counts[p] += 1;
    }
    let mean = m as f64 / k.max(1) as f64;
    let big = oversized(&counts, mean);
    if big.is_empty() {
        return;
    }
    let mut used = vec![false; k];
    for &b in &big {
        used[b] = true;
    }
    let mut donors = cheapest_merges(centroids, dim, &counts, kernels)
        .into_iter()
        .filter(move |&(d, e)| {
            if used[d] || used[e] {
                return false;
            }
            (used[d], used[e]) = (true, true);
            true
        });
    for b in big {
        let rows: Vec<f32> = (0..m)
            .filter(|&i| assign[i] == b)
            .flat_map(|i| sample[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        let pieces = ((counts[b] as f64 / mean).round() as usize).max(2);
        let local = local_kmeans(&rows, dim, pieces, rng, kernels);
        let mut parts = local.chunks_exact(dim);
        if let Some(first) = parts.next() {
            centroids[b * dim..(b + 1) * dim].copy_from_slice(first);
        }
        for piece in parts {
            let Some((d, e)) = donors.next() else { return };
            let (nd, ne) = (counts[d] as f32, counts[e] as f32);
            if nd > 0.0 {
                let w = nd / (nd + ne);
                for j in 0..dim {
                    let (x, y) = (centroids[d * dim + j], centroids[e * dim + j]);
                    centroids[e * dim + j] = y + w * (x - y);
                }
            }
            centroids[d * dim..(d + 1) * dim].copy_from_slice(piece);
        }
    }
}

/// `pieces` centroids of `rows` by a few Lloyd steps from distinct rows
/// (an empty piece keeps its centroid).
fn local_kmeans(
    rows: &[f32],
    dim: usize,
    pieces: usize,
    rng: &mut Rng,
    kernels: &Kernels,
) -> Vec<f32> {
    let n = rows.len() / dim;
    let pieces = pieces.min(n);
    let mut c: Vec<f32> = sample_indices(n, pieces, rng)
        .iter()
        .flat_map(|&i| rows[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    for _ in 0..SPLIT_ITERATIONS {
        let cn = norms(&c, dim, kernels);
        let mut sums = vec![0.0f64; pieces * dim];
        let mut counts = vec![0usize; pieces];
        for x in rows.chunks_exact(dim) {
            let p = nearest(x, &c, &cn, kernels);
            counts[p] += 1;
            for (s, &v) in sums[p * dim..(p + 1) * dim].iter_mut().zip(x) {
                *s += f64::from(v);
            }
        }
        for (p, &count) in counts.iter().enumerate() {
            if count > 0 {
                for (x, s) in c[p * dim..(p + 1) * dim]
                    .iter_mut()
                    .zip(&sums[p * dim..(p + 1) * dim])
                {
                    *x = (s / count as f64) as f32;
                }
            }
        }
    }
    c
}

/// A cell holding more than this many times the mean row count is split.
pub const SPLIT_ABOVE: f64 = 3.0;

/// The cells holding more than [`SPLIT_ABOVE`] times `mean` rows, largest
/// first.
fn oversized(counts: &[usize], mean: f64) -> Vec<usize> {
    let mut big: Vec<usize> = (0..counts.len())
        .filter(|&p| counts[p] as f64 > SPLIT_ABOVE * mean)
        .collect();
    big.sort_unstable_by_key(|&p| std::cmp::Reverse(counts[p]));
    big
}

/// Moves the centroids of the smallest cells to random rows of the cells
/// holding more than [`SPLIT_ABOVE`] times the mean, one per extra mean's
/// worth of rows, so the next Lloyd step splits them. On well-separated
/// clusters a random start leaves some clusters without a centroid; their
/// rows, about equally far from every centroid, all join the cell whose
/// centroid is shortest, which grows into a mixture of many clusters
/// (centroid norms down to 0.18 on the clustered 1M x 384 set, where
/// unmixed cells have about 1) and Lloyd steps never take apart. A row of
/// such a cell lies in one of its clusters, so a centroid moved there takes
/// that cluster; the small cells it leaves are absorbed by their neighbours.
fn rebalance(
    sample: &[f32],
    dim: usize,
    centroids: &mut [f32],
    counts: &[usize],
    assign: &[usize],
    rng: &mut Rng,
) {
    let k = counts.len();
    let mean = assign.len() as f64 / k.max(1) as f64;
    let big = oversized(counts, mean);
    if big.is_empty() {
        return;
    }
    let mut small: Vec<usize> = (0..k).filter(|&p| (counts[p] as f64) < mean).collect();
    small.sort_unstable_by_key(|&p| counts[p]);
    let mut donors = small.into_iter();
    for b in big {
        let moves = (counts[b] as f64 / mean).floor() as usize - 1;
        let rows: Vec<usize> = (0..assign.len()).filter(|&i| assign[i] == b).collect();
        for _ in 0..moves {
            let Some(d) = donors.next() else { return };
            let i = rows[rng.below(rows.len())];
            centroids[d * dim..(d + 1) * dim].copy_from_slice(&sample[i * dim..(i + 1) * dim]);
        }
    }
}

/// Every cell paired with its nearest other centroid, cheapest merge
/// first by Ward's cost (an empty cell costs nothing); ties by cell, so a
/// build is deterministic.
fn cheapest_merges(
    centroids: &[f32],
    dim: usize,
    counts: &[usize],
    kernels: &Kernels,
) -> Vec<(usize, usize)> {
    let cn = norms(centroids, dim, kernels);
    let mut pairs: Vec<(f32, usize, usize)> = pool::install(|| {
        centroids
            .par_chunks_exact(dim)
            .enumerate()
            .map(|(d, c)| {
                let (e, dist) = nearest_other(c, d, centroids, &cn, kernels);
                let (nd, ne) = (counts[d] as f32, counts[e] as f32);
                let cost = if nd + ne > 0.0 {
                    nd * ne / (nd + ne) * dist
                } else {
                    0.0
                };
                (cost, d, e)
            })
            .collect()
    });
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    pairs.into_iter().map(|(_, d, e)| (d, e)).collect()
}

/// The centroid nearest to centroid `own` (`c`), other than itself, and
/// their squared distance.
fn nearest_other(
    c: &[f32],
    own: usize,
    centroids: &[f32],
    norms: &[f32],
    kernels: &Kernels,
) -> (usize, f32) {
    let (p, score) = best_score(c, centroids, norms, kernels, Some(own));
    (p, (norms[own] - score).max(0.0))
}

/// Per-cell sums (f64) and counts. The rows are grouped by cell (a
/// counting sort of their indices) and each cell summed by one task, in
/// row order: no per-task accumulator of every cell. A parallel fold with
/// one `k x dim` accumulator per split allocated, zeroed and added up
/// about as many as rayon made splits: on the 9k x 1536 ada stand-in
/// (190 cells of 1,536 f64) that was 41% of training, more than the
/// matrix products. Each cell's sum no longer depends on the splits.
fn accumulate(sample: &[f32], dim: usize, k: usize, assign: &[usize]) -> (Vec<f64>, Vec<usize>) {
    let mut counts = vec![0usize; k];
    for &p in assign {
        counts[p] += 1;
    }
    let mut start = Vec::with_capacity(k + 1);
    start.push(0usize);
    for &c in &counts {
        start.push(start[start.len() - 1] + c);
    }
    let mut next = start[..k].to_vec();
    let mut rows = vec![0usize; assign.len()];
    for (i, &p) in assign.iter().enumerate() {
        rows[next[p]] = i;
        next[p] += 1;
    }
    let mut sums = vec![0.0f64; k * dim];
    pool::install(|| {
        sums.par_chunks_mut(dim.max(1))
            .enumerate()
            .for_each(|(p, sum)| {
                for &i in &rows[start[p]..start[p + 1]] {
                    for (s, &v) in sum.iter_mut().zip(&sample[i * dim..(i + 1) * dim]) {
                        *s += f64::from(v);
                    }
                }
            });
    });
    (sums, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulate_sums_each_cell_in_row_order() {
        // 50 rows of 3 over 4 cells, cell 2 empty: the same sums, bit for
        // bit, as adding each row to its cell one after another.
        let (dim, k, m) = (3, 4, 50);
        let sample: Vec<f32> = (0..m * dim).map(|v| v as f32 * 0.37 - 5.0).collect();
        let assign: Vec<usize> = (0..m).map(|i| [0, 1, 3][(i * 7) % 3]).collect();
        let (sums, counts) = accumulate(&sample, dim, k, &assign);
        let (mut want, mut want_counts) = (vec![0.0f64; k * dim], vec![0usize; k]);
        for (i, &p) in assign.iter().enumerate() {
            want_counts[p] += 1;
            for j in 0..dim {
                want[p * dim + j] += f64::from(sample[i * dim + j]);
            }
        }
        assert_eq!(counts, want_counts);
        assert_eq!(counts[2], 0);
        assert_eq!(sums, want);
    }
}
