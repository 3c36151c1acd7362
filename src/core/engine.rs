//! The search engine: an immutable, `Arc`-shared view of one index file,
//! and the pipeline that runs a query through it. No locks anywhere: every
//! query reads the shared map and writes only its thread's scratch.
use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;

use super::expand::{exact_scan, rescore};
use super::params::{SearchParams, Tier1Mode};
use super::pool;
use super::query::{PreparedQuery, Probe};
use super::router::Router;
use super::scratch::{with_scratch, Scratch};
use super::tier1::{scan, segment_layout, ScanOut};
use super::topk::{best_first, Scored, TopK};
use super::vote::rescue;
use crate::error::{Error, Result};
use crate::index::format::SectionKind;
use crate::index::{IndexFile, LoadOptions, Metric};
use crate::math::Kernels;

/// Below this many rows a single query scans inline; above, its Tier1 and
/// exact scans are split over the pool (a pool hop costs ~10 us).
const PARALLEL_MIN_ROWS: usize = 1 << 18;

/// Typed slices into the mapped file, for one search.
pub struct View<'a> {
    pub(crate) codes: &'a [u64],
    pub(crate) scale: &'a [f32],
    pub(crate) bias: &'a [f32],
    pub(crate) error: &'a [f32],
    pub(crate) vectors: &'a [f32],
    pub(crate) ids: &'a [i64],
    pub(crate) centroids: &'a [f32],
    pub(crate) offsets: &'a [u64],
    pub(crate) zero: &'a [f32],
    pub(crate) centered: bool,
    pub(crate) anchor_norms: &'a [f32],
    pub(crate) router: &'a Router,
    pub(crate) dim: usize,
    pub(crate) words: usize,
    pub(crate) metric: Metric,
    pub(crate) kernels: &'a Kernels,
    /// Rows from which a single query's scan splits over the pool.
    pub(crate) parallel_min_rows: usize,
}

impl View<'_> {
    /// Number of partitions.
    pub(crate) fn partitions(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Stored rows `start..end` of partition `p`.
    pub(crate) fn rows_of(&self, p: usize) -> (usize, usize) {
        (self.offsets[p] as usize, self.offsets[p + 1] as usize)
    }

    /// The partition holding stored row `row`.
    pub(crate) fn partition_of(&self, row: usize) -> usize {
        self.offsets
            .partition_point(|&o| o <= row as u64)
            .saturating_sub(1)
    }

    /// What partition `p`'s codes are relative to: its centroid, or zero
    /// for indexes built without centring.
    pub(crate) fn anchor(&self, p: usize) -> &[f32] {
        if self.centered {
            &self.centroids[p * self.dim..(p + 1) * self.dim]
        } else {
            self.zero
        }
    }

    /// Routing score of partition `p` for vector `v` (higher is better):
    /// `<v, c_p>` for ip and cosine, `-||v - c_p||^2` for l2.
    pub(crate) fn route_score(&self, v: &[f32], p: usize) -> f32 {
        let c = &self.centroids[p * self.dim..(p + 1) * self.dim];
        match self.metric {
            Metric::Cosine | Metric::Ip => (self.kernels.dot)(v, c),
            Metric::L2 => -(self.kernels.l2sq)(v, c),
        }
    }

    /// Approximate routing score of partition `p` from the int8 router;
    /// ranks partitions only (probes use [`View::route_score`]).
    fn rank_score(&self, q: &PreparedQuery, p: usize) -> f32 {
        let dot = self.router.dot(self.kernels, &q.q, p);
        match self.metric {
            Metric::Cosine | Metric::Ip => dot,
            Metric::L2 => 2.0 * dot - self.anchor_norms[p] - q.norm2,
        }
    }

    /// `||q - c_p||^2` from the routing score of partition `p`.
    fn centroid_dist2(&self, q: &PreparedQuery, p: usize, score: f32) -> f32 {
        match self.metric {
            Metric::Cosine | Metric::Ip => q.norm2 - 2.0 * score + self.anchor_norms[p],
            Metric::L2 => -score,
        }
    }

    /// The probe of partition `route.row` for query `q`, from its routing
    /// score (`<q, c_p>` for ip and cosine, `-||q - c_p||^2` for l2), so a
    /// probe costs no second dot product.
    pub(crate) fn probe(&self, q: &PreparedQuery, route: &Scored) -> Probe {
        let p = route.row as usize;
        if !self.centered {
            return Probe::new(p, self.metric, 0.0, q.norm2, 0.0);
        }
        let a2 = self.anchor_norms[p];
        let q_dot_a = match self.metric {
            Metric::Cosine | Metric::Ip => route.score,
            Metric::L2 => 0.5 * (q.norm2 + a2 + route.score),
        };
        Probe::new(p, self.metric, q_dot_a, q.norm2, a2)
    }

    /// The probe of partition `p`, routing score computed here.
    pub(crate) fn probe_of(&self, q: &PreparedQuery, p: usize) -> Probe {
        let score = self.route_score(&q.q, p);
        self.probe(
            q,
            &Scored {
                score,
                row: p as u32,
            },
        )
    }
}

/// What one search did, for ablations and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Partitions whose codes Tier1 scanned (including expansion's).
    pub probed: usize,
    /// Rows whose codes Tier1 scanned.
    pub scanned: usize,
    /// Survivors of Tier1 (before voting).
    pub survivors: usize,
    /// Rows added by voting.
    pub rescued: usize,
    /// Rows scored exactly in float32.
    pub rescored: usize,
}

/// A loaded index, ready to answer queries. Cloning is cheap (`Arc`).
#[derive(Clone)]
pub struct Engine {
    file: Arc<IndexFile>,
    kernels: Kernels,
    zero: Arc<[f32]>,
    /// `||c_p||^2` of every partition centroid, computed once at open
    /// (used for routing distances and, when centred, for probes).
    anchor_norms: Arc<[f32]>,
    /// Int8 copy of the centroids for ranking partitions.
    router: Arc<Router>,
    /// A single query scanning at least this many rows splits over the pool.
    parallel_min_rows: usize,
}

/// Results of a batch: `rows x k` ids and scores, row-major.
pub struct BatchResult {
    /// Results per query (`min(k, n)`).
    pub k: usize,
    /// Document ids.
    pub ids: Vec<i64>,
    /// Scores (similarity for cosine/ip, squared distance for l2).
    pub scores: Vec<f32>,
}

impl Engine {
    /// Opens and validates the index at `path`.
    pub fn open(path: &Path, opts: LoadOptions) -> Result<Self> {
        Ok(Self::from_file(IndexFile::open(path, opts)?))
    }

    /// Wraps an already opened file.
    pub fn from_file(file: Arc<IndexFile>) -> Self {
        let kernels = Kernels::detect();
        let zero = vec![0.0; file.dim()].into();
        let centroids: &[f32] = file.section(SectionKind::Centroid);
        let anchor_norms = centroids
            .chunks_exact(file.dim())
            .map(|c| (kernels.dot)(c, c))
            .collect();
        let router = Arc::new(Router::new(centroids, file.dim()));
        Engine {
            file,
            kernels,
            zero,
            anchor_norms,
            router,
            parallel_min_rows: PARALLEL_MIN_ROWS,
        }
    }

    /// Splits single queries over the pool from `rows` scanned rows on
    /// (tests use 0 to run the split path on small indexes).
    pub fn with_parallel_min_rows(mut self, rows: usize) -> Self {
        self.parallel_min_rows = rows;
        self
    }

    /// Uses the given kernels instead of the detected ones (tests, benches).
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        self.kernels = kernels;
        self
    }

    /// The underlying file.
    pub fn file(&self) -> &Arc<IndexFile> {
        &self.file
    }

    /// Kernels in use.
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.file.len()
    }

    /// True if the index holds no vectors.
    pub fn is_empty(&self) -> bool {
        self.file.is_empty()
    }

    /// Dimensions per vector.
    pub fn dim(&self) -> usize {
        self.file.dim()
    }

    fn view(&self) -> View<'_> {
        let f = &*self.file;
        let n = f.len();
        let factors: &[f32] = f.section(SectionKind::Factors);
        View {
            codes: f.section(SectionKind::Codes),
            scale: &factors[..n],
            bias: &factors[n..2 * n],
            error: &factors[2 * n..],
            vectors: f.section(SectionKind::Vectors),
            ids: f.section(SectionKind::Ids),
            centroids: f.section(SectionKind::Centroid),
            offsets: f.offsets(),
            zero: &self.zero,
            centered: f.manifest().build.center,
            anchor_norms: &self.anchor_norms,
            router: &self.router,
            dim: f.dim(),
            words: f.words(),
            metric: f.metric(),
            kernels: &self.kernels,
            parallel_min_rows: self.parallel_min_rows,
        }
    }

    /// Top-k of one query: `(ids, scores)`, best first, `min(k, n)` long.
    pub fn search(&self, query: &[f32], params: &SearchParams) -> Result<(Vec<i64>, Vec<f32>)> {
        let (ids, scores, _) = self.search_with_stats(query, params)?;
        Ok((ids, scores))
    }

    /// [`Engine::search`] plus what each stage did.
    pub fn search_with_stats(
        &self,
        query: &[f32],
        params: &SearchParams,
    ) -> Result<(Vec<i64>, Vec<f32>, SearchStats)> {
        params.validate()?;
        let view = self.view();
        // With a one-thread pool a pool hop only adds latency.
        let parallel = self.len() >= self.parallel_min_rows && pool::configured_threads() > 1;
        with_scratch(|s| {
            let stats = run_query(&view, query, params, s, parallel)?;
            let (ids, scores) = finish(&view, &s.out);
            Ok((ids, scores, stats))
        })
    }

    /// Top-k of each row of `queries` (`b x dim`, row-major). Queries run in
    /// parallel on the library's pool; a single query runs inline.
    pub fn search_batch(&self, queries: &[f32], params: &SearchParams) -> Result<BatchResult> {
        params.validate()?;
        let dim = self.dim();
        if !queries.len().is_multiple_of(dim) {
            return Err(Error::DimensionMismatch {
                expected: dim,
                got: queries.len() % dim,
            });
        }
        let b = queries.len() / dim;
        let k = params.k.min(self.len());
        let mut ids = vec![0i64; b * k];
        let mut scores = vec![0f32; b * k];
        let view = self.view();
        let one = |(i, ((q, id), sc)): BatchItem<'_>| {
            with_scratch(|s| {
                run_query(&view, q, params, s, false).map_err(|e| row_error(e, i))?;
                let (qi, qs) = finish(&view, &s.out);
                id.copy_from_slice(&qi);
                sc.copy_from_slice(&qs);
                Ok::<(), Error>(())
            })
        };
        if b <= 1 {
            queries
                .chunks_exact(dim)
                .zip(ids.chunks_exact_mut(k))
                .zip(scores.chunks_exact_mut(k))
                .enumerate()
                .try_for_each(one)?;
        } else {
            pool::install(|| {
                queries
                    .par_chunks_exact(dim)
                    .zip(ids.par_chunks_exact_mut(k))
                    .zip(scores.par_chunks_exact_mut(k))
                    .enumerate()
                    .try_for_each(one)
            })?;
        }
        Ok(BatchResult { k, ids, scores })
    }
}

/// One query of a batch with its output slots.
type BatchItem<'a> = (usize, ((&'a [f32], &'a mut [i64]), &'a mut [f32]));

/// Puts the query's row number into errors that describe its values.
fn row_error(e: Error, row: usize) -> Error {
    match e {
        Error::NonFinite { what, col, .. } => Error::NonFinite { what, row, col },
        other => other,
    }
}

/// Runs the whole pipeline for one query; the exact top-k ends in `s.out`.
fn run_query(
    view: &View<'_>,
    query: &[f32],
    params: &SearchParams,
    s: &mut Scratch,
    parallel: bool,
) -> Result<SearchStats> {
    let n = view.scale.len();
    let (_, seg_words) = segment_layout(view.words, params.segments);
    s.query
        .prepare(query, view.dim, view.metric, params.query_bits, seg_words)?;
    s.best.reset(params.k.min(n));
    let mut stats = SearchStats::default();
    if params.exact {
        scan_rows(n, parallel, &mut s.best, |start, end, top| {
            exact_scan(view, &s.query.q, start, end, top);
        });
        s.best.drain_sorted(&mut s.out);
        stats.rescored = n;
        return Ok(stats);
    }
    let parts = view.partitions();
    s.probe_norms.clear();
    s.probe_norms.resize(parts, 0.0);
    s.probed.clear();
    s.probed.resize(parts, false);
    let nprobe = params.effective_nprobe(parts);
    let extra = if params.expansion {
        params.effective_expand_probes(parts)
    } else {
        0
    };
    route(
        view,
        &s.query,
        params,
        nprobe,
        extra,
        &s.probed,
        &mut s.route_order,
    );
    probe_and_rescore(view, params, s, parallel, &mut stats);
    s.best.drain_sorted(&mut s.out);
    if s.out.len() < params.k.min(n) {
        // Every query must get min(k, n) rows. Only estimates that are not
        // finite can leave Tier1 short; answer such a query exactly.
        s.best.reset(params.k.min(n));
        exact_scan(view, &s.query.q, 0, n, &mut s.best);
        s.best.drain_sorted(&mut s.out);
        stats.rescored += n;
    }
    Ok(stats)
}

/// Chooses the partitions to probe, best routing score first, into `order`
/// (`row` = partition, `score` = its exact routing score): the `nprobe`
/// best, plus, with `extra > 0` (centroid expansion), up to `extra` of the
/// next best whose squared centroid distance is within `(1 + expand_ratio)`
/// of the best one's. Ranking uses the int8 router; selection is linear;
/// only the chosen partitions get exact scores and are sorted.
fn route(
    view: &View<'_>,
    q: &PreparedQuery,
    params: &SearchParams,
    nprobe: usize,
    extra: usize,
    probed: &[bool],
    order: &mut Vec<Scored>,
) {
    order.clear();
    order.extend(
        probed
            .iter()
            .enumerate()
            .filter(|(_, &done)| !done)
            .map(|(p, _)| Scored {
                score: view.rank_score(q, p),
                row: p as u32,
            }),
    );
    select_best(order, nprobe + extra);
    if extra > 0 && order.len() > nprobe {
        // The `nprobe` best first (the rest stay behind them, unordered).
        order.select_nth_unstable_by(nprobe - 1, best_first);
        let d2 = |r: &Scored| view.centroid_dist2(q, r.row as usize, r.score);
        let first = order[..nprobe].iter().copied().min_by(best_first);
        let limit = first.map_or(0.0, |r| d2(&r)) * (1.0 + params.expand_ratio);
        let mut i = 0;
        order.retain(|r| {
            i += 1;
            i <= nprobe || d2(r) <= limit
        });
    }
    for r in order.iter_mut() {
        r.score = view.route_score(&q.q, r.row as usize);
    }
    order.sort_unstable_by(best_first);
}

/// Keeps the best `m` entries of `v` (in no particular order).
fn select_best(v: &mut Vec<Scored>, m: usize) {
    if m == 0 {
        v.clear();
    } else if v.len() > m {
        v.select_nth_unstable_by(m - 1, best_first);
        v.truncate(m);
    }
}

/// Tier1 over the partitions in `s.route_order`, then voting, then exact
/// rescoring of the survivors into `s.best`.
fn probe_and_rescore(
    view: &View<'_>,
    params: &SearchParams,
    s: &mut Scratch,
    parallel: bool,
    stats: &mut SearchStats,
) {
    let n = view.scale.len();
    let (nseg, _) = segment_layout(view.words, params.segments);
    let voting = nseg > 1;
    s.survivors.reset(params.effective_candidates(n));
    s.segment_top
        .resize_with(if voting { nseg } else { 0 }, TopK::default);
    for seg in &mut s.segment_top {
        seg.reset(params.vote_top.min(n));
    }
    let rows: usize = s
        .route_order
        .iter()
        .map(|r| {
            let (a, b) = view.rows_of(r.row as usize);
            b - a
        })
        .sum();
    let hamming = params.tier1 == Tier1Mode::Hamming;
    if parallel && !voting && !hamming && rows >= view.parallel_min_rows {
        let q = &s.query;
        let cap = s.survivors.capacity();
        // Each rayon split keeps one top-C and one set of buffers for all
        // the partitions it scans (not one per partition).
        let parts: Vec<TopK> = pool::install(|| {
            s.route_order
                .par_iter()
                .fold(
                    || {
                        let mut top = TopK::default();
                        top.reset(cap);
                        (top, Vec::new(), Vec::new(), Vec::new())
                    },
                    |(mut top, mut block, mut est, mut mask), r| {
                        let out = ScanOut {
                            block: &mut block,
                            est: &mut est,
                            mask: &mut mask,
                            survivors: &mut top,
                            segment_top: &mut [],
                        };
                        scan(view, q, &view.probe(q, r), params, out);
                        (top, block, est, mask)
                    },
                )
                .map(|(top, ..)| top)
                .collect()
        });
        for top in &parts {
            s.survivors.merge(top);
        }
        for r in &s.route_order {
            let probe = view.probe(q, r);
            s.probe_norms[probe.partition] = probe.centered_norm;
        }
    } else {
        for r in &s.route_order {
            let probe = view.probe(&s.query, r);
            s.probe_norms[probe.partition] = probe.centered_norm;
            if hamming {
                s.query.encode_sign(view.anchor(probe.partition));
            }
            let out = ScanOut {
                block: &mut s.block,
                est: &mut s.est,
                mask: &mut s.mask,
                survivors: &mut s.survivors,
                segment_top: &mut s.segment_top,
            };
            scan(view, &s.query, &probe, params, out);
        }
    }
    for r in &s.route_order {
        s.probed[r.row as usize] = true;
    }
    stats.probed += s.route_order.len();
    stats.scanned += rows;
    stats.survivors += s.survivors.len();
    s.survivors.drain_sorted(&mut s.ranked);
    if voting {
        stats.rescued += rescue(
            view,
            &s.query,
            params,
            &mut s.segment_top,
            &mut s.votes,
            &mut s.ranked,
            &mut s.out,
        );
    }
    stats.rescored += rescore(
        view,
        &s.query,
        params,
        &s.ranked,
        &s.probe_norms,
        &mut s.best,
    );
}

/// Scans `0..n` into `top`, split over the pool when `parallel`.
fn scan_rows(
    n: usize,
    parallel: bool,
    top: &mut TopK,
    work: impl Fn(usize, usize, &mut TopK) + Sync,
) {
    if !parallel {
        work(0, n, top);
        return;
    }
    let chunks = 4 * pool::current_threads();
    let step = n.div_ceil(chunks).max(1);
    let cap = top.capacity();
    let parts: Vec<TopK> = pool::install(|| {
        (0..n)
            .into_par_iter()
            .step_by(step)
            .map(|start| {
                let mut t = TopK::default();
                t.reset(cap);
                work(start, (start + step).min(n), &mut t);
                t
            })
            .collect()
    });
    for p in &parts {
        top.merge(p);
    }
}

/// Internal scores to user-facing `(ids, scores)`.
fn finish(view: &View<'_>, best: &[Scored]) -> (Vec<i64>, Vec<f32>) {
    let flip = view.metric == Metric::L2;
    best.iter()
        .map(|s| {
            let score = if flip { -s.score } else { s.score };
            (view.ids[s.row as usize], score)
        })
        .unzip()
}
