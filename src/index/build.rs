//! Building an index: validate, centre, sign-encode, compute the per-row
//! Tier1 factors, and stream everything into one file. All row work runs on
//! the library's rayon pool, in chunks, so progress can be reported and the
//! build can be cancelled between chunks.
use std::path::Path;

use rayon::prelude::*;

use super::attributes::{self, AttributesInput};
use super::calibration::{Calibration, SLOT_BYTES};
use super::format::{version_for, SectionKind};
use super::manifest::{BuildConfig, Manifest, Metric};
use super::partitions::{
    assign, assign_spilled, assign_unknown, partition_order, row_scales, scaled_rows, train,
    NO_SPILL,
};
use super::writer::{write_pending, Pending, SectionPlan, SectionSink};
use crate::error::{Error, Result};
use crate::limits::{norm2_f64, MAX_NORM2};
use crate::math::bits::{to_blocked, BLOCK};
use crate::math::quantize::{sign_code, words_for};
use crate::math::Kernels;
use crate::pool;

/// Rows below which an index is one flat partition (a scan of fewer rows
/// costs a few microseconds).
pub const MIN_PARTITIONED_ROWS: usize = 4_000;

/// Partitions used for `n` rows: the configured count (at most `n`), or
/// `round(2 sqrt(n))` from [`MIN_PARTITIONED_ROWS`] on. Twice `sqrt(n)`
/// was measured against `sqrt(n)` (best single-query QPS over a probe
/// sweep, blueprint section 2): on par at recall 0.95 and 1.26x at 0.99 on
/// debian-minilm-384 (60k), 1.34x at 0.95 on the synthetic 100k set (which
/// only reached 0.99 with it), and on 9k-row sets, which were one flat
/// partition before, 1.8x (384-d) and 3x (1536-d) at 0.95.
pub fn partitions_for(n: usize, configured: usize) -> usize {
    let auto = if n < MIN_PARTITIONED_ROWS {
        1
    } else {
        (2.0 * (n as f64).sqrt()).round() as usize
    };
    let p = if configured == 0 { auto } else { configured };
    p.clamp(1, n.max(1))
}

/// Build progress sink. `report` returns `false` to cancel the build.
pub trait Progress {
    /// `done` of `total` work units are finished.
    fn report(&mut self, done: usize, total: usize) -> bool;
}

impl Progress for () {
    fn report(&mut self, _: usize, _: usize) -> bool {
        true
    }
}

/// Rows per chunk: large enough to amortise a pool hop, small enough for
/// timely progress reports and cancellation.
pub(crate) const CHUNK_ROWS: usize = 16_384;

/// Progress units of a build of `n` rows: assignment to partitions,
/// encoding and writing, `n` rows each, and `n` more for the calibration
/// (`core::calibrate`) when the build calibrates.
pub fn work_units(n: usize, calibrate: bool) -> usize {
    if calibrate {
        4 * n
    } else {
        3 * n
    }
}

/// Checks `vectors` (`n` rows of `dim`, `n >= 1`) as a build does and
/// returns them as an index stores them: unit length for cosine. Live
/// collections keep rows in this form until they go into a segment.
pub fn prepare_rows(vectors: &[f32], dim: usize, metric: Metric) -> Result<Vec<f32>> {
    check_input(vectors, dim, None)?;
    let scales = row_scales(vectors, dim, metric)?;
    let mut out = vectors.to_vec();
    for (row, &s) in out.chunks_exact_mut(dim).zip(&scales) {
        if s != 1.0 {
            row.iter_mut().for_each(|x| *x = (f64::from(*x) * s) as f32);
        }
    }
    Ok(out)
}

/// Per-row Tier1 factors: see the blueprint, stage "Tier1 estimate".
struct Factors {
    scale: Vec<f32>,
    bias: Vec<f32>,
    error: Vec<f32>,
}

/// Validates `vectors` (`n` rows of `dim`) and `ids`, then writes the index
/// to `path` atomically, without a calibration (`core::calibrate` builds
/// calibrated files). Returns the manifest that was written.
pub fn build_index(
    path: &Path,
    vectors: &[f32],
    dim: usize,
    ids: Option<&[i64]>,
    metric: Metric,
    config: &BuildConfig,
    progress: &mut dyn Progress,
) -> Result<Manifest> {
    let (manifest, pending) = build_pending(path, vectors, dim, ids, metric, config, progress)?;
    pending.commit()?;
    Ok(manifest)
}

/// [`build_index`] up to the rename: the complete file, its calibration
/// section a placeholder, under a temporary name.
pub fn build_pending(
    path: &Path,
    vectors: &[f32],
    dim: usize,
    ids: Option<&[i64]>,
    metric: Metric,
    config: &BuildConfig,
    progress: &mut dyn Progress,
) -> Result<(Manifest, Pending)> {
    let input = BuildInput::new(vectors, dim).ids(ids);
    build_file(path, input, metric, config, None, progress)
}

/// What a build indexes: `n` rows of `dim` floats, their ids (`0..n` when
/// `None`) and their attributes, all in the same (input) row order.
#[derive(Debug, Clone, Copy)]
pub struct BuildInput<'a> {
    /// `n x dim`, row-major.
    pub vectors: &'a [f32],
    /// Dimensions per row.
    pub dim: usize,
    /// One id per row.
    pub ids: Option<&'a [i64]>,
    /// Columns for filters.
    pub attributes: Option<&'a AttributesInput>,
    /// Given partitions (`L x dim`): build on these instead of training
    /// (a shard of a sharded index, a collection's segment).
    pub centroids: Option<&'a [f32]>,
    /// With given partitions: each row's partition where already known,
    /// `partitions::UNKNOWN` where not (rows of segments being merged keep
    /// theirs; only new rows are compared with the centroids).
    pub known: Option<&'a [u32]>,
}

impl<'a> BuildInput<'a> {
    /// Rows without ids or attributes.
    pub fn new(vectors: &'a [f32], dim: usize) -> Self {
        BuildInput {
            vectors,
            dim,
            ids: None,
            attributes: None,
            centroids: None,
            known: None,
        }
    }

    /// With these ids.
    pub fn ids(self, ids: Option<&'a [i64]>) -> Self {
        BuildInput { ids, ..self }
    }

    /// With these attributes (none or no columns: a file without an
    /// attribute section).
    pub fn attributes(self, attributes: Option<&'a AttributesInput>) -> Self {
        let attributes = attributes.filter(|a| !a.columns.is_empty());
        BuildInput { attributes, ..self }
    }

    /// On these partitions (`L x dim`) instead of trained ones.
    pub fn centroids(self, centroids: Option<&'a [f32]>) -> Self {
        BuildInput { centroids, ..self }
    }

    /// With the partitions of rows already placed on the given ones (one per
    /// row; `partitions::UNKNOWN` for a row to place).
    pub fn known(self, known: Option<&'a [u32]>) -> Self {
        BuildInput { known, ..self }
    }
}

/// [`build_pending`] of a [`BuildInput`] (on its given partitions, if any).
pub fn build_pending_input(
    path: &Path,
    input: BuildInput<'_>,
    metric: Metric,
    config: &BuildConfig,
    progress: &mut dyn Progress,
) -> Result<(Manifest, Pending)> {
    match input.centroids {
        Some(c) => {
            let config = on_partitions(config, c, input.dim)?;
            build_file(path, input, metric, &config, Some(c), progress)
        }
        None => build_file(path, input, metric, config, None, progress),
    }
}

/// `config` for a build on `centroids`: their count as the partitions.
fn on_partitions(config: &BuildConfig, centroids: &[f32], dim: usize) -> Result<BuildConfig> {
    if centroids.is_empty() || !centroids.len().is_multiple_of(dim.max(1)) {
        return Err(Error::param("centroids", "not whole rows of the dimension"));
    }
    if centroids.iter().any(|x| !x.is_finite()) {
        return Err(Error::param("centroids", "must be finite"));
    }
    Ok(BuildConfig {
        partitions: centroids.len() / dim.max(1),
        ..config.clone()
    })
}

/// Builds an index file at `path` on the given partitions (`centroids`,
/// `L x dim`, e.g. another file's), without training or calibrating: a
/// live collection's segments share one set of partitions, so a query
/// routes once for all of them (`core::stack`).
pub fn build_on_partitions(
    path: &Path,
    input: BuildInput<'_>,
    metric: Metric,
    config: &BuildConfig,
    centroids: &[f32],
) -> Result<Manifest> {
    // A collection's query reads all its segments as one stack, which
    // scans no spilled entries (blueprint 10.3): spilling them would only
    // cost the merges time.
    let config = BuildConfig {
        calibrate: false,
        spill: false,
        ..on_partitions(config, centroids, input.dim)?
    };
    let (manifest, pending) = build_file(path, input, metric, &config, Some(centroids), &mut ())?;
    pending.commit()?;
    Ok(manifest)
}

/// [`build_pending`] on trained partitions, or on `given` ones.
fn build_file(
    path: &Path,
    input: BuildInput<'_>,
    metric: Metric,
    config: &BuildConfig,
    given: Option<&[f32]>,
    progress: &mut dyn Progress,
) -> Result<(Manifest, Pending)> {
    let BuildInput {
        vectors, dim, ids, ..
    } = input;
    let n = check_input(vectors, dim, ids)?;
    // Known partitions only mean something on the given centroids.
    let known = input.known.filter(|_| given.is_some());
    if known.is_some_and(|k| k.len() != n) {
        return Err(Error::param("known", "one partition per row"));
    }
    if let Some(a) = input.attributes {
        attributes::check_input(a, n).map_err(|r| Error::param("attributes", r))?;
    }
    let total = work_units(n, config.calibrate);
    let norms = row_scales(vectors, dim, metric)?;
    let row = scaled_rows(vectors, dim, &norms);
    let kernels = Kernels::detect();
    let centroids = match given {
        Some(c) => c.to_vec(),
        None => {
            let parts = partitions_for(n, config.partitions);
            train(vectors, dim, &norms, parts, config.seed, &kernels)
        }
    };
    let parts = centroids.len() / dim;
    let (assigned, spilled) = match known {
        None if spills(config, n, parts) => {
            let (own, spill) =
                assign_spilled(n, dim, &centroids, &row, &kernels, &mut *progress, total)?;
            (own, Some(spill))
        }
        None => (
            assign(n, dim, &centroids, &row, &kernels, &mut *progress, total)?,
            None,
        ),
        Some(k) => (
            assign_unknown(k, dim, &centroids, &row, &kernels, &mut *progress, total)?,
            None,
        ),
    };
    let (order, offsets) = partition_order(&assigned, parts);
    let anchors = if config.center {
        centroids.clone()
    } else {
        vec![0.0; parts * dim]
    };
    let words = words_for(dim);
    let mut codes = vec![0u64; n * words];
    let mut f = Factors {
        scale: vec![0.0; n],
        bias: vec![0.0; n],
        error: vec![0.0; n],
    };
    let enc = Encoder {
        dim,
        metric,
        anchors: &anchors,
        offsets: &offsets,
        order: &order,
        row: &row,
    };
    for start in (0..n).step_by(CHUNK_ROWS) {
        let end = (start + CHUNK_ROWS).min(n);
        enc.encode(start, end, &mut codes, &mut f);
        if !progress.report(n + end, total) {
            return Err(Error::Cancelled);
        }
    }
    // No row near enough to another partition: no spill sections at all.
    let spill = spilled
        .map(|s| Spill::encode(&s, &order, &enc, parts))
        .filter(|s| !s.rows.is_empty());

    let attr_bytes = match input.attributes {
        Some(a) => Some(attributes::encode(a, &order).map_err(|r| Error::param("attributes", r))?),
        None => None,
    };
    let mut manifest = Manifest::new(n, dim, parts, metric, config.clone());
    // Every kind but the optional ones the build leaves out.
    let kinds = SectionKind::ALL.into_iter().filter(|k| match k {
        SectionKind::Attributes => attr_bytes.is_some(),
        k if SectionKind::SPILL.contains(k) => spill.is_some(),
        _ => true,
    });
    manifest.format_version = version_for(kinds);
    let manifest_json =
        serde_json::to_vec(&manifest).map_err(|e| Error::param("manifest", e.to_string()))?;
    let mut plans = vec![
        plan(SectionKind::Manifest, manifest_json.len(), 1),
        plan(SectionKind::Centroid, parts, dim),
        plan(SectionKind::Offsets, parts + 1, 1),
        plan(SectionKind::Codes, n.div_ceil(BLOCK), BLOCK * words),
        plan(SectionKind::Factors, 3, n),
        plan(SectionKind::Vectors, n, dim),
        plan(SectionKind::Ids, n, 1),
        plan(SectionKind::Calibration, SLOT_BYTES, 1),
    ];
    if let Some(a) = &attr_bytes {
        plans.push(plan(SectionKind::Attributes, a.len(), 1));
    }
    if let Some(s) = &spill {
        let entries = s.rows.len();
        plans.extend([
            plan(SectionKind::SpillOffsets, parts + 1, 1),
            plan(
                SectionKind::SpillCodes,
                entries.div_ceil(BLOCK),
                BLOCK * words,
            ),
            plan(SectionKind::SpillFactors, 3, entries),
            plan(SectionKind::SpillRows, entries, 1),
        ]);
    }
    let placeholder = Calibration::encode_slot(None).map_err(|e| Error::param("calibration", e))?;
    let default_ids: Vec<i64>;
    let ids = match ids {
        Some(ids) => ids,
        None => {
            default_ids = (0..n as i64).collect();
            &default_ids
        }
    };
    let pending = write_pending(path, &plans, |kind, sink| match kind {
        SectionKind::Manifest => sink.write(&manifest_json),
        SectionKind::Centroid => sink.write_pod(&centroids),
        SectionKind::Offsets => sink.write_pod(&offsets),
        SectionKind::Codes => sink.write_pod(&to_blocked(&codes, words)),
        SectionKind::Factors => {
            sink.write_pod(&f.scale)?;
            sink.write_pod(&f.bias)?;
            sink.write_pod(&f.error)
        }
        SectionKind::Vectors => {
            let mut buf = vec![0.0f32; CHUNK_ROWS.min(n.max(1)) * dim];
            for start in (0..n).step_by(CHUNK_ROWS) {
                let end = (start + CHUNK_ROWS).min(n);
                let out = &mut buf[..(end - start) * dim];
                pool::install(|| {
                    out.par_chunks_mut(dim)
                        .enumerate()
                        .for_each(|(j, o)| row(order[start + j] as usize, o));
                });
                sink.write_pod(out)?;
                if !progress.report(2 * n + end, total) {
                    return Err(Error::Cancelled);
                }
            }
            Ok(())
        }
        SectionKind::Ids => {
            let stored: Vec<i64> = order.iter().map(|&r| ids[r as usize]).collect();
            sink.write_pod(&stored)
        }
        SectionKind::Calibration => sink.write(&placeholder),
        SectionKind::Attributes => sink.write(attr_bytes.as_deref().unwrap_or_default()),
        SectionKind::SpillOffsets
        | SectionKind::SpillCodes
        | SectionKind::SpillFactors
        | SectionKind::SpillRows => match &spill {
            Some(s) => s.write(kind, words, sink),
            None => Ok(()),
        },
    })?;
    Ok((manifest, pending))
}

/// Whether a build of `n` rows on `parts` partitions with `config`
/// spills: not with one partition (nowhere to spill to), nor where row
/// and entry numbers together would not fit in `u32` (Tier1 numbers a
/// spilled survivor `n + entry`).
fn spills(config: &BuildConfig, n: usize, parts: usize) -> bool {
    config.spill && parts > 1 && 2 * n <= u32::MAX as usize
}

/// Spilled entries (blueprint 3.4): a row's code a second time, as a
/// residual from its spill partition, grouped by that partition.
struct Spill {
    offsets: Vec<u64>,
    codes: Vec<u64>,
    factors: Factors,
    /// The stored row of each entry.
    rows: Vec<u32>,
}

impl Spill {
    /// Encodes every row with a spill partition (`spill[row]`, or
    /// `NO_SPILL`); `order` is the stored order of the rows, `enc` their
    /// primary encoder.
    fn encode(spill: &[u32], order: &[u32], enc: &Encoder<'_>, parts: usize) -> Self {
        let spilled: Vec<u32> = (0..spill.len() as u32)
            .filter(|&r| spill[r as usize] != NO_SPILL)
            .collect();
        let into: Vec<u32> = spilled.iter().map(|&r| spill[r as usize]).collect();
        let n = spilled.len();
        // Entries grouped by partition, as input rows.
        let (by_part, offsets) = partition_order(&into, parts);
        let spill_order: Vec<u32> = by_part.iter().map(|&i| spilled[i as usize]).collect();
        let mut stored = vec![0u32; spill.len()];
        for (pos, &r) in order.iter().enumerate() {
            stored[r as usize] = pos as u32;
        }
        let rows = spill_order.iter().map(|&r| stored[r as usize]).collect();
        let enc = Encoder {
            offsets: &offsets,
            order: &spill_order,
            ..*enc
        };
        let mut codes = vec![0u64; n * words_for(enc.dim)];
        let mut factors = Factors {
            scale: vec![0.0; n],
            bias: vec![0.0; n],
            error: vec![0.0; n],
        };
        for start in (0..n).step_by(CHUNK_ROWS) {
            enc.encode(start, (start + CHUNK_ROWS).min(n), &mut codes, &mut factors);
        }
        Spill {
            offsets,
            codes,
            factors,
            rows,
        }
    }

    /// Writes the payload of spill section `kind`.
    fn write(&self, kind: SectionKind, words: usize, sink: &mut SectionSink<'_>) -> Result<()> {
        match kind {
            SectionKind::SpillOffsets => sink.write_pod(&self.offsets),
            SectionKind::SpillCodes => sink.write_pod(&to_blocked(&self.codes, words)),
            SectionKind::SpillFactors => {
                sink.write_pod(&self.factors.scale)?;
                sink.write_pod(&self.factors.bias)?;
                sink.write_pod(&self.factors.error)
            }
            _ => sink.write_pod(&self.rows),
        }
    }
}

fn plan(kind: SectionKind, rows: usize, cols: usize) -> SectionPlan {
    SectionPlan {
        kind,
        rows: rows as u64,
        cols: cols as u64,
    }
}

/// Checks shapes, finiteness, magnitude and id uniqueness; returns `n`.
pub(crate) fn check_input(vectors: &[f32], dim: usize, ids: Option<&[i64]>) -> Result<usize> {
    if dim == 0 || dim > u32::MAX as usize {
        return Err(Error::InvalidVector(format!(
            "dimension {dim} is out of range"
        )));
    }
    if !vectors.len().is_multiple_of(dim) {
        return Err(Error::InvalidVector(format!(
            "{} values do not form rows of {dim}",
            vectors.len()
        )));
    }
    let n = vectors.len() / dim;
    if n == 0 {
        return Err(Error::param(
            "vectors",
            "cannot build an index from 0 vectors",
        ));
    }
    if n > u32::MAX as usize {
        return Err(Error::param(
            "vectors",
            format!("{n} rows exceed the 2^32-1 row limit"),
        ));
    }
    let bad = pool::install(|| vectors.par_iter().position_first(|x| !x.is_finite()));
    if let Some(p) = bad {
        return Err(Error::NonFinite {
            what: "vectors",
            row: p / dim,
            col: p % dim,
        });
    }
    let big = pool::install(|| {
        vectors
            .par_chunks(dim)
            .position_first(|r| norm2_f64(r) > MAX_NORM2)
    });
    if let Some(row) = big {
        return Err(Error::InvalidVector(format!(
            "row {row} has a squared norm above 2^100: float32 scores of values this large \
             overflow to infinity, and such a row could never be found"
        )));
    }
    if let Some(ids) = ids {
        if ids.len() != n {
            return Err(Error::param(
                "ids",
                format!("{} ids for {n} vectors", ids.len()),
            ));
        }
        let mut seen = hashbrown::HashSet::with_capacity(n);
        if let Some(dup) = ids.iter().find(|id| !seen.insert(**id)) {
            return Err(Error::param(
                "ids",
                format!("id {dup} appears more than once"),
            ));
        }
    }
    Ok(n)
}

/// Encodes stored positions: the sign code of `x - anchor` and its factors,
/// where the anchor is the row's partition centroid (or 0 without centring).
#[derive(Clone, Copy)]
struct Encoder<'a> {
    dim: usize,
    metric: Metric,
    anchors: &'a [f32],
    offsets: &'a [u64],
    order: &'a [u32],
    row: &'a (dyn Fn(usize, &mut [f32]) + Sync),
}

impl Encoder<'_> {
    fn encode(&self, start: usize, end: usize, codes: &mut [u64], f: &mut Factors) {
        let (dim, words) = (self.dim, words_for(self.dim));
        let codes = &mut codes[start * words..end * words];
        let (scale, bias, error) = (
            &mut f.scale[start..end],
            &mut f.bias[start..end],
            &mut f.error[start..end],
        );
        pool::install(|| {
            codes
                .par_chunks_mut(words)
                .zip(scale.par_iter_mut())
                .zip(bias.par_iter_mut())
                .zip(error.par_iter_mut())
                .enumerate()
                .for_each_init(
                    || vec![0.0f32; dim],
                    |r, (j, (((code, a), b), e))| {
                        let pos = start + j;
                        let p = self.offsets.partition_point(|&o| o <= pos as u64) - 1;
                        let anchor = &self.anchors[p * dim..(p + 1) * dim];
                        (self.row)(self.order[pos] as usize, r);
                        for (x, m) in r.iter_mut().zip(anchor) {
                            *x -= m;
                        }
                        sign_code(r, code);
                        (*a, *b, *e) = row_factors(r, anchor, self.metric);
                    },
                );
        });
    }
}

/// `||r||^2` of the residual whose factors [`row_factors`] gave `scale`
/// and `error` in `dim` dimensions: the two factors are `||r|| / (f sqrt(d))`
/// and `||r|| sqrt(1 - f^2) / (f sqrt(d - 1))`, which solve for `f^2` and
/// then `||r||^2 = scale^2 f^2 d`. Lets a reader know how spread a
/// partition's rows are without reading their float32 vectors.
pub fn residual_norm2(scale: f32, error: f32, dim: usize) -> f32 {
    let d = dim.max(2) as f64;
    let s = f64::from(scale);
    if s <= 0.0 {
        return 0.0;
    }
    let ratio = f64::from(error) / s;
    let f2 = (1.0 - ratio * ratio * (d - 1.0) / d).clamp(1e-12, 1.0);
    (s * s * f2 * d) as f32
}

/// The sums [`row_factors`] needs from a residual `r` and its anchor `mu`.
struct ResidualSums {
    /// `||r||^2`.
    l2: f64,
    /// `||r||_1`.
    l1: f64,
    /// `<mu, sign(r)>` (a zero counts as negative, as in the sign code).
    mu_dot_s: f64,
    /// `<mu, r>`.
    mu_dot_r: f64,
}

/// [`ResidualSums`] in one pass, in f64, over `LANES` running sums each,
/// which the compiler keeps in vector registers: one running sum is a
/// chain of dependent adds. With the branch-free sign code, debian-
/// minilm-384's encoding of its rows and spilled entries went from
/// 0.47-0.54 to 0.33-0.42 s (2 threads).
fn residual_sums(r: &[f32], mu: &[f32]) -> ResidualSums {
    const LANES: usize = 8;
    let (mut l2, mut l1, mut ms, mut mr) = (
        [0.0f64; LANES],
        [0.0f64; LANES],
        [0.0f64; LANES],
        [0.0f64; LANES],
    );
    let mut add = |j: usize, x: f32, m: f32| {
        let (x, m) = (f64::from(x), f64::from(m));
        l2[j] += x * x;
        l1[j] += x.abs();
        ms[j] += if x > 0.0 { m } else { -m };
        mr[j] += x * m;
    };
    let (rc, mc) = (r.chunks_exact(LANES), mu.chunks_exact(LANES));
    let (rt, mt) = (rc.remainder(), mc.remainder());
    for (xs, mus) in rc.zip(mc) {
        for j in 0..LANES {
            add(j, xs[j], mus[j]);
        }
    }
    for (j, (&x, &m)) in rt.iter().zip(mt).enumerate() {
        add(j, x, m);
    }
    let sum = |a: [f64; LANES]| a.iter().sum::<f64>();
    ResidualSums {
        l2: sum(l2),
        l1: sum(l1),
        mu_dot_s: sum(ms),
        mu_dot_r: sum(mr),
    }
}

/// `(scale, bias, error)` of a residual `r = x - mu`; see the blueprint.
pub fn row_factors(r: &[f32], mu: &[f32], metric: Metric) -> (f32, f32, f32) {
    let d = r.len() as f64;
    let sums = residual_sums(r, mu);
    let (l2, l1) = (sums.l2, sums.l1);
    let norm = l2.sqrt();
    let scale = if l1 > 0.0 { l2 / l1 } else { 0.0 };
    // Tier1 scores every partition with one encoding of q, as <q, s>; the
    // estimate needs <q - mu, s> = <q, s> - <mu, s>, so -<mu, s> (times the
    // metric's weight and the scale) is folded in here.
    let mu_dot_s = sums.mu_dot_s;
    // The row's own part of its score: `<x - mu, mu>` (ip, cosine), or
    // `-||x - mu||^2` (l2); the metric weighs the estimated part.
    let base = if metric.is_distance() {
        -l2
    } else {
        sums.mu_dot_r
    };
    let weight = f64::from(metric.estimate_weight());
    let bias = base - weight * scale * mu_dot_s;
    // f = <o, sign(o)/sqrt(d)>: how well the sign code aligns with the row.
    let error = if norm > 0.0 {
        let f = (l1 / (norm * d.sqrt())).clamp(1e-6, 1.0);
        norm * (1.0 - f * f).sqrt() / f / (d - 1.0).max(1.0).sqrt()
    } else {
        0.0
    };
    (scale as f32, bias as f32, error as f32)
}
