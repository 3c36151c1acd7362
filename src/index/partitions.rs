//! The partitions of a build: k-means on a deterministic sample of the
//! rows as the index stores them (unit length for cosine), then every row
//! assigned to its nearest centroid by L2. Public so a sharded build
//! (`svve_core.distributed`) trains once for all its shards and sends each
//! row to the shard that will hold its partition, exactly as that shard's
//! own build assigns it.
use rayon::prelude::*;

use super::build::{check_input, partitions_for, Progress, CHUNK_ROWS};
use super::kmeans::{self, sample_indices, Rng, SAMPLE_PER_CENTROID};
use super::manifest::{BuildConfig, Metric};
use crate::error::{Error, Result};
use crate::limits::norm2_f64;
use crate::math::{gemm, Kernels};
use crate::pool;

/// The partitions (`L x dim`, row-major) a build of `vectors` with
/// `config` trains: `L` from [`partitions_for`], seeded by `config.seed`.
pub fn train_partitions(
    vectors: &[f32],
    dim: usize,
    metric: Metric,
    config: &BuildConfig,
) -> Result<Vec<f32>> {
    let n = check_input(vectors, dim, None)?;
    let scales = row_scales(vectors, dim, metric)?;
    let parts = partitions_for(n, config.partitions);
    Ok(train(
        vectors,
        dim,
        &scales,
        parts,
        config.seed,
        &Kernels::detect(),
    ))
}

/// The partition of every row of `vectors` among `centroids`, as a build
/// on those centroids assigns it.
pub fn assign_partitions(
    vectors: &[f32],
    dim: usize,
    metric: Metric,
    centroids: &[f32],
) -> Result<Vec<u32>> {
    let n = check_input(vectors, dim, None)?;
    if centroids.is_empty() || !centroids.len().is_multiple_of(dim) {
        return Err(Error::param("centroids", "not whole rows of the dimension"));
    }
    let scales = row_scales(vectors, dim, metric)?;
    let row = scaled_rows(vectors, dim, &scales);
    assign(n, dim, centroids, &row, &Kernels::detect(), &mut (), n)
}

/// Row `i` of `vectors` times its scale, written into a buffer.
pub(crate) fn scaled_rows<'a>(
    vectors: &'a [f32],
    dim: usize,
    scales: &'a [f64],
) -> impl Fn(usize, &mut [f32]) + Sync + 'a {
    move |i: usize, buf: &mut [f32]| {
        for (o, &x) in buf.iter_mut().zip(&vectors[i * dim..(i + 1) * dim]) {
            *o = (f64::from(x) * scales[i]) as f32;
        }
    }
}

/// `parts` centroids for the scaled rows: their mean for one partition,
/// else k-means on `parts * SAMPLE_PER_CENTROID` sampled rows.
pub(crate) fn train(
    vectors: &[f32],
    dim: usize,
    scales: &[f64],
    parts: usize,
    seed: u64,
    kernels: &Kernels,
) -> Vec<f32> {
    let n = scales.len();
    if parts <= 1 {
        return mean(vectors, dim, scales);
    }
    let row = scaled_rows(vectors, dim, scales);
    let mut rng = Rng::new(seed);
    let rows = sample_indices(n, parts * SAMPLE_PER_CENTROID, &mut rng);
    let mut sample = vec![0.0f32; rows.len() * dim];
    for (&i, out) in rows.iter().zip(sample.chunks_exact_mut(dim)) {
        row(i, out);
    }
    kmeans::train(&sample, dim, parts, seed, kernels)
}

/// Per-row multipliers: `1 / ||x||` for cosine, `1` otherwise.
/// In f64: a row of subnormal values has a norm whose f32 inverse is
/// infinite, which made its stored unit vector infinite.
pub(crate) fn row_scales(vectors: &[f32], dim: usize, metric: Metric) -> Result<Vec<f64>> {
    let n = vectors.len() / dim;
    if !metric.normalizes() {
        return Ok(vec![1.0; n]);
    }
    let scales: Vec<f64> = pool::install(|| {
        vectors
            .par_chunks(dim)
            .map(|r| {
                let s = norm2_f64(r).sqrt();
                if s > 0.0 {
                    1.0 / s
                } else {
                    0.0
                }
            })
            .collect()
    });
    if let Some(row) = scales.iter().position(|&s| s == 0.0) {
        return Err(Error::InvalidVector(format!(
            "row {row} is a zero vector, which has no cosine similarity"
        )));
    }
    Ok(scales)
}

/// Mean of the (scaled) rows, accumulated in f64.
fn mean(vectors: &[f32], dim: usize, scales: &[f64]) -> Vec<f32> {
    let n = scales.len();
    let sum = pool::install(|| {
        vectors
            .par_chunks(dim)
            .zip(scales.par_iter())
            .fold(
                || vec![0.0f64; dim],
                |mut acc, (r, &s)| {
                    for (a, &x) in acc.iter_mut().zip(r) {
                        *a += f64::from(x) * s;
                    }
                    acc
                },
            )
            .reduce(
                || vec![0.0f64; dim],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x += y;
                    }
                    a
                },
            )
    });
    sum.into_iter().map(|s| (s / n as f64) as f32).collect()
}

/// Partition of a row whose partition a build must find: see
/// [`assign_unknown`].
pub const UNKNOWN: u32 = u32::MAX;

/// The storage order of rows assigned to `parts` partitions (rows grouped
/// by partition, original order within one) and the partition offsets
/// into it.
pub(crate) fn partition_order(assign: &[u32], parts: usize) -> (Vec<u32>, Vec<u64>) {
    let mut offsets = vec![0u64; parts + 1];
    for &p in assign {
        offsets[p as usize + 1] += 1;
    }
    for p in 0..parts {
        offsets[p + 1] += offsets[p];
    }
    let mut next: Vec<u64> = offsets[..parts].to_vec();
    let mut order = vec![0u32; assign.len()];
    for (i, &p) in assign.iter().enumerate() {
        order[next[p as usize] as usize] = i as u32;
        next[p as usize] += 1;
    }
    (order, offsets)
}

/// [`assign`] where `known` gives rows' partitions already found on these
/// centroids (a merge of a collection's segments, which share them: the
/// nearest centroid of a row does not change): only the rows marked
/// [`UNKNOWN`] are compared with the centroids.
pub(crate) fn assign_unknown(
    known: &[u32],
    dim: usize,
    centroids: &[f32],
    row: &(dyn Fn(usize, &mut [f32]) + Sync),
    kernels: &Kernels,
    progress: &mut dyn Progress,
    total: usize,
) -> Result<Vec<u32>> {
    let parts = centroids.len() / dim;
    if known.iter().any(|&p| p != UNKNOWN && p as usize >= parts) {
        return Err(Error::param("known", "a partition is out of range"));
    }
    let unknown: Vec<usize> = (0..known.len()).filter(|&i| known[i] == UNKNOWN).collect();
    let sub = |j: usize, buf: &mut [f32]| row(unknown[j], buf);
    let found = assign(
        unknown.len(),
        dim,
        centroids,
        &sub,
        kernels,
        progress,
        total,
    )?;
    let mut all = known.to_vec();
    for (&i, p) in unknown.iter().zip(found) {
        all[i] = p;
    }
    Ok(all)
}

/// Rows `first..first + m` through `row`, into `rows` (`m x dim`).
fn fill_rows(
    row: &(dyn Fn(usize, &mut [f32]) + Sync),
    first: usize,
    m: usize,
    dim: usize,
    rows: &mut Vec<f32>,
) {
    rows.resize(m * dim, 0.0);
    for (j, buf) in rows.chunks_exact_mut(dim.max(1)).enumerate() {
        row(first + j, buf);
    }
}

/// The nearest centroid of each of the `n` rows, in chunks on the pool,
/// reporting `end` of `total` after each chunk.
pub(crate) fn assign(
    n: usize,
    dim: usize,
    centroids: &[f32],
    row: &(dyn Fn(usize, &mut [f32]) + Sync),
    kernels: &Kernels,
    progress: &mut dyn Progress,
    total: usize,
) -> Result<Vec<u32>> {
    let parts = centroids.len() / dim;
    let mut assign = vec![0u32; n];
    if parts == 1 && !progress.report(n, total) {
        return Err(Error::Cancelled);
    }
    if parts > 1 {
        let cn = kmeans::norms(centroids, dim, kernels);
        for start in (0..n).step_by(CHUNK_ROWS) {
            let end = (start + CHUNK_ROWS).min(n);
            pool::install(|| {
                assign[start..end]
                    .par_chunks_mut(kmeans::ROW_BLOCK)
                    .enumerate()
                    .for_each_init(
                        || (Vec::new(), Vec::new(), Vec::new()),
                        |(rows, dots, near), (b, out)| {
                            let first = start + b * kmeans::ROW_BLOCK;
                            fill_rows(row, first, out.len(), dim, rows);
                            near.resize(out.len(), 0);
                            kmeans::nearest_all(rows, centroids, &cn, dots, near);
                            for (a, &p) in out.iter_mut().zip(near.iter()) {
                                *a = p as u32;
                            }
                        },
                    );
            });
            if !progress.report(end, total) {
                return Err(Error::Cancelled);
            }
        }
    }
    Ok(assign)
}

/// SOAR's weight `lambda` on the spilled residual's component along the
/// primary one (blueprint 3.4). 1 is the paper's value; on
/// debian-minilm-384, 2 covered the true top-10 with about 5% fewer rows
/// and on the ada-like 9k x 1536 set 1 did, by as little (offline study,
/// `benchmarks/studies/spill.py`).
pub const SPILL_LAMBDA: f32 = 1.0;

/// A row gets a spilled entry only if its spill centroid is at most this
/// many times as far (squared) as its own. Deep inside a well-separated
/// cluster every other centroid is far, and a query near the row routes
/// to its own cell: on the clustered 1M x 384 set the median ratio is 4.4
/// (29% of rows under 2); on debian-minilm-384 and the ada-like 9k x 1536
/// set it is 1.2 and 1.3 (94% and 95% under 2).
pub const SPILL_MAX_RATIO: f32 = 2.0;

/// A partition takes at most this many times `max(its rows, the mean
/// partition's rows)` spilled entries, those of the rows nearest to it
/// (by the ratio above) first. SOAR sends the copies of rows that are far
/// from everything but their own centroid to the few centroids near the
/// middle of the data: uncapped, one partition of the clustered 1M set took
/// 543 mean partitions' worth, and a query probing it scanned 19k entries
/// instead of 1k. On debian-minilm-384 the cap changes the rows a probe
/// covers by under 0.003 of the top-10 (`benchmarks/studies/spill.py`).
pub const SPILL_CAP: f64 = 1.0;

/// Marks a row without a spilled entry in [`assign_spilled`]'s output.
pub const NO_SPILL: u32 = u32::MAX;

/// [`assign`] plus each row's spill partition ([`NO_SPILL`] for none): the
/// one, other than its own, that minimises SOAR's loss `||x - c||^2 +
/// lambda <r, x - c>^2 / ||r||^2` with `r = x - c_own`. A query whose
/// nearest neighbour's own partition was missed is most likely to lie
/// along `r` from it; the loss prefers a second centroid whose residual is
/// orthogonal to `r`, so the second copy is found exactly when the first
/// is not. One pass over the centroids gives both: `<r, c> = <x, c> -
/// <c_own, c>` from a table of centroid dot products. Rows too deep in
/// their own cell ([`SPILL_MAX_RATIO`]) and those over a partition's cap
/// ([`SPILL_CAP`]) get none.
pub(crate) fn assign_spilled(
    n: usize,
    dim: usize,
    centroids: &[f32],
    row: &(dyn Fn(usize, &mut [f32]) + Sync),
    kernels: &Kernels,
    progress: &mut dyn Progress,
    total: usize,
) -> Result<(Vec<u32>, Vec<u32>)> {
    /// Centroids scored per kernel call.
    const BLOCK: usize = 64;
    let parts = centroids.len() / dim;
    let cn = kmeans::norms(centroids, dim, kernels);
    let gram: Vec<f32> = pool::install(|| {
        let mut g = vec![0.0f32; parts * parts];
        g.par_chunks_mut(parts)
            .zip(centroids.par_chunks(dim))
            .for_each(|(out, c)| {
                for (o, block) in out.chunks_mut(BLOCK).zip(centroids.chunks(BLOCK * dim)) {
                    (kernels.dot_rows)(c, block, o);
                }
            });
        g
    });
    let mut own = vec![0u32; n];
    let mut spill = vec![0u32; n];
    let mut ratio = vec![0.0f32; n];
    for start in (0..n).step_by(CHUNK_ROWS) {
        let end = (start + CHUNK_ROWS).min(n);
        let block = kmeans::ROW_BLOCK;
        pool::install(|| {
            own[start..end]
                .par_chunks_mut(block)
                .zip(spill[start..end].par_chunks_mut(block))
                .zip(ratio[start..end].par_chunks_mut(block))
                .enumerate()
                .for_each_init(
                    || (Vec::new(), Vec::new()),
                    |(rows, dots), (b, ((a, s), r))| {
                        let m = a.len();
                        fill_rows(row, start + b * block, m, dim, rows);
                        dots.resize(m * parts, 0.0);
                        gemm::dots(rows, centroids, dim, dots);
                        let each = rows.chunks_exact(dim).zip(dots.chunks_exact(parts));
                        for (j, (x, d)) in each.enumerate() {
                            let pair = soar_pair(d, &cn, &gram, (kernels.dot)(x, x));
                            (a[j], s[j], r[j]) = (pair.own as u32, pair.spill as u32, pair.ratio);
                        }
                    },
                );
        });
        if !progress.report(end, total) {
            return Err(Error::Cancelled);
        }
    }
    cap_spill(&own, &mut spill, &ratio, parts);
    Ok((own, spill))
}

/// Applies [`SPILL_MAX_RATIO`] and [`SPILL_CAP`] to `spill`: rows that
/// lose their entry are marked [`NO_SPILL`].
fn cap_spill(own: &[u32], spill: &mut [u32], ratio: &[f32], parts: usize) {
    let mut sizes = vec![0usize; parts];
    for &p in own {
        sizes[p as usize] += 1;
    }
    let mean = own.len() as f64 / parts.max(1) as f64;
    let cap: Vec<usize> = sizes
        .iter()
        .map(|&s| (SPILL_CAP * (s as f64).max(mean)).ceil() as usize)
        .collect();
    // The nearest copies first (ties by row, so the build is deterministic).
    let mut by_ratio: Vec<u32> = (0..spill.len() as u32)
        .filter(|&r| ratio[r as usize] <= SPILL_MAX_RATIO)
        .collect();
    by_ratio.sort_by(|&a, &b| {
        ratio[a as usize]
            .total_cmp(&ratio[b as usize])
            .then(a.cmp(&b))
    });
    let mut taken = vec![0usize; parts];
    let mut keep = vec![false; spill.len()];
    for r in by_ratio {
        let p = spill[r as usize] as usize;
        if taken[p] < cap[p] {
            taken[p] += 1;
            keep[r as usize] = true;
        }
    }
    for (s, k) in spill.iter_mut().zip(keep) {
        if !k {
            *s = NO_SPILL;
        }
    }
}

/// A row's own partition, its spill partition and the ratio of their
/// squared distances (spill over own).
struct SoarPair {
    own: usize,
    spill: usize,
    ratio: f32,
}

/// The [`SoarPair`] of a row whose dot products with the centroids are
/// `dots` and squared norm `xn`.
fn soar_pair(dots: &[f32], cn: &[f32], gram: &[f32], xn: f32) -> SoarPair {
    let parts = dots.len();
    let mut p = 0;
    let mut best = f32::NEG_INFINITY;
    for (i, (&d, &c)) in dots.iter().zip(cn).enumerate() {
        let s = 2.0 * d - c;
        if s > best {
            (best, p) = (s, i);
        }
    }
    // `||r||^2` and `<r, x>` of the residual from the row's own centroid.
    let rn = (xn - 2.0 * dots[p] + cn[p]).max(0.0);
    let rx = xn - dots[p];
    let weight = if rn > 1e-20 { SPILL_LAMBDA / rn } else { 0.0 };
    let g = &gram[p * parts..(p + 1) * parts];
    let mut spill = if p == 0 { 1 } else { 0 };
    let mut low = f32::INFINITY;
    for (i, ((&d, &c), &gc)) in dots.iter().zip(cn).zip(g).enumerate() {
        // `<r, x - c> = <r, x> - <x, c> + <c_own, c>`.
        let along = rx - d + gc;
        let loss = c - 2.0 * d + weight * along * along;
        if i != p && loss < low {
            (low, spill) = (loss, i);
        }
    }
    let far = (xn - 2.0 * dots[spill] + cn[spill]).max(0.0);
    // A row on its centroid: any copy is as far as it gets.
    let ratio = if rn > 1e-20 { far / rn } else { f32::INFINITY };
    SoarPair {
        own: p,
        spill,
        ratio,
    }
}
