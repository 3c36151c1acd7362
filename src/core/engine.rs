//! The search engine: an immutable, `Arc`-shared index and the orchestration
//! of one query through the stages (plan, encode, route, Tier1, rescore).
//! No locks anywhere: every query reads the shared map and writes only its
//! thread's scratch.
use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;

use super::exact::exact_all;
use super::filter::Filter;
use super::filtered_route::{self, FilteredStep};
use super::mask::RowMask;
use super::params::SearchParams;
use super::plan::QueryPlan;
use super::router::{Centroids, Router};
use super::scratch::{with_scratch, Scratch};
use super::stack::Stack;
use super::tier1::{rows_in, Tier1};
use super::topk::Scored;
use super::view::View;
use crate::error::{Error, Result};
use crate::index::format::SectionKind;
use crate::index::{Calibration, IndexFile, LoadOptions};
use crate::math::Kernels;
use crate::pool;

/// Below this many rows a single query scans inline; above, its Tier1 and
/// exact scans are split over the pool (a pool hop costs ~10 us).
const PARALLEL_MIN_ROWS: usize = 1 << 18;

/// What one search did, for ablations and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Partitions whose codes Tier1 scanned (including expansion's).
    pub probed: usize,
    /// Rows whose codes Tier1 scanned.
    pub scanned: usize,
    /// Survivors of Tier1.
    pub survivors: usize,
    /// Rows scored exactly in float32.
    pub rescored: usize,
}

/// A loaded index, ready to answer queries. Cloning is cheap (`Arc`).
#[derive(Clone)]
pub struct Engine {
    file: Arc<IndexFile>,
    kernels: Kernels,
    /// The router's per-process centroid tables, built once at open.
    centroids: Arc<Centroids>,
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
        let centroids = Centroids::new(file.section(SectionKind::Centroid), file.dim(), &kernels);
        Engine {
            file,
            kernels,
            centroids: Arc::new(centroids),
            parallel_min_rows: PARALLEL_MIN_ROWS,
        }
    }

    /// Splits single queries over the pool from `rows` scanned rows on
    /// (tests use 0 to run the split path on small indexes).
    pub fn with_parallel_min_rows(mut self, rows: usize) -> Self {
        self.parallel_min_rows = rows;
        self
    }

    /// Uses the given kernels instead of the detected ones (tests, benches);
    /// the router's tables are rebuilt in those kernels' layout.
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        let f = &self.file;
        self.centroids = Arc::new(Centroids::new(
            f.section(SectionKind::Centroid),
            f.dim(),
            &kernels,
        ));
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

    /// The plan of one query over `allowed` returnable rows under
    /// `calibration`; `single` queries may split over the pool, `spill`
    /// ones may scan spilled entries.
    fn plan(
        &self,
        params: &SearchParams,
        allowed: usize,
        single: bool,
        calibration: Option<&Calibration>,
        spill: bool,
    ) -> Result<QueryPlan> {
        // With a one-thread pool a pool hop only adds latency.
        let split =
            single && self.len() >= self.parallel_min_rows && pool::configured_threads() > 1;
        let f = &self.file;
        let parts = f.offsets().len().saturating_sub(1);
        let split_from = if split {
            self.parallel_min_rows
        } else {
            usize::MAX
        };
        QueryPlan::new(
            params,
            allowed,
            parts,
            f.metric(),
            split_from,
            calibration,
            spill,
        )
    }

    /// Runs `plan` for each row of `queries` (`b x dim`) on the pool and
    /// returns each query's result rows (stored order, best first) and
    /// stats; for calibration, which builds its own plans.
    pub(crate) fn run_plan(
        &self,
        queries: &[f32],
        plan: &QueryPlan,
    ) -> Result<Vec<(Vec<u32>, SearchStats)>> {
        let stack = Stack::one(View::new(&self.file, &self.kernels));
        pool::install(|| {
            queries
                .par_chunks_exact(self.dim())
                .map(|q| {
                    with_scratch(|s| {
                        let stats = self.run_query(&stack, q, plan, s)?;
                        Ok((s.out.iter().map(|r| r.row).collect(), stats))
                    })
                })
                .collect()
        })
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
        self.search_masked(query, params, None)
    }

    /// [`Engine::search_with_stats`] returning only rows `mask` allows
    /// (`min(k, allowed)` of them).
    pub fn search_masked(
        &self,
        query: &[f32],
        params: &SearchParams,
        mask: Option<&RowMask>,
    ) -> Result<(Vec<i64>, Vec<f32>, SearchStats)> {
        let filtered = mask.is_some();
        search_parts(
            &[Part {
                engine: self,
                mask,
                filtered,
            }],
            query,
            params,
            None,
        )
    }

    /// The rows of this file `filter` matches (`None`: no filter).
    pub fn filter_mask(&self, filter: Option<&Filter>) -> Result<Option<RowMask>> {
        filter.map(|f| f.mask(&self.file)).transpose()
    }

    /// [`Engine::search_with_stats`] over the rows `filter` matches
    /// (`min(k, matching)` of them).
    pub fn search_filtered(
        &self,
        query: &[f32],
        params: &SearchParams,
        filter: Option<&Filter>,
    ) -> Result<(Vec<i64>, Vec<f32>, SearchStats)> {
        let mask = self.filter_mask(filter)?;
        self.search_masked(query, params, mask.as_ref())
    }

    /// [`Engine::search_batch`] over the rows `filter` matches (one filter,
    /// evaluated once, for the whole batch).
    pub fn search_batch_filtered(
        &self,
        queries: &[f32],
        params: &SearchParams,
        filter: Option<&Filter>,
    ) -> Result<BatchResult> {
        let mask = self.filter_mask(filter)?;
        self.search_batch_masked(queries, params, mask.as_ref())
    }

    /// Top-k of each row of `queries` (`b x dim`, row-major). Queries run in
    /// parallel on the library's pool; a single query runs inline.
    pub fn search_batch(&self, queries: &[f32], params: &SearchParams) -> Result<BatchResult> {
        self.search_batch_masked(queries, params, None)
    }

    /// [`Engine::search_batch`] returning only rows `mask` allows.
    pub fn search_batch_masked(
        &self,
        queries: &[f32],
        params: &SearchParams,
        mask: Option<&RowMask>,
    ) -> Result<BatchResult> {
        let filtered = mask.is_some();
        search_batch_parts(
            &[Part {
                engine: self,
                mask,
                filtered,
            }],
            queries,
            params,
            None,
        )
    }

    /// The plan of one query over `stack` (whose first file is this one):
    /// with the stack's own calibration when it has one (a collection's,
    /// measured on all its segments, with the rows it was measured on),
    /// else this file's; survivors grow with the rows added since
    /// ([`QueryPlan::grown`]).
    fn stack_plan(
        &self,
        stack: &Stack<'_>,
        params: &SearchParams,
        single: bool,
        calibration: Option<(&Calibration, usize)>,
    ) -> Result<QueryPlan> {
        let (cal, rows) = match calibration {
            Some((c, rows)) => (Some(c), rows),
            None => (self.file.calibration(), self.len()),
        };
        let allowed = stack.allowed();
        let spill = stack.spill(true).is_some();
        let plan = self.plan(params, allowed, single, cal, spill)?;
        Ok(plan.grown(params, stack.len() as f64 / rows.max(1) as f64, allowed))
    }

    /// Runs the whole pipeline for one query; the exact top-k ends in `s.out`.
    fn run_query(
        &self,
        stack: &Stack<'_>,
        query: &[f32],
        plan: &QueryPlan,
        s: &mut Scratch,
    ) -> Result<SearchStats> {
        let n = stack.len();
        let view = stack.first();
        s.query
            .prepare(query, view.dim, view.metric, plan.query_bits, view.kernels)?;
        s.best.reset(plan.k);
        let mut stats = SearchStats::default();
        if plan.k == 0 {
            // Every row is masked: nothing to return.
            s.out.clear();
            return Ok(stats);
        }
        let allowed = stack.allowed();
        let brute = |s: &mut Scratch, mut stats: SearchStats| {
            // Split by the rows scored: a filter's few matching rows
            // are not worth waking the pool for.
            exact_all(stack, &s.query.q, plan.splits(allowed), &mut s.best);
            s.best.drain_sorted(&mut s.out);
            stats.rescored = allowed;
            Ok(stats)
        };
        if plan.exact {
            return brute(s, stats);
        }
        let router = Router::new(stack, &self.centroids);
        let mut candidates = plan.candidates;
        // Rows the chosen partitions hold, when routing already counted them.
        let counted = if plan.filtered {
            match filtered_route::route(stack, &router, plan, s) {
                FilteredStep::Brute => return brute(s, stats),
                FilteredStep::Scan {
                    candidates: widened,
                    rows,
                } => {
                    candidates = widened;
                    rows
                }
            }
        } else {
            router.route(&s.query, plan, &mut s.route_order);
            None
        };
        let rows = counted.unwrap_or_else(|| rows_in(stack, plan, &s.route_order));
        s.probe_norms.clear();
        s.probe_norms.resize(view.partitions(), 0.0);
        s.survivors.reset_survivors(candidates);
        let tier1 = Tier1::new(stack, &router, &s.query, plan, &s.route_order);
        if plan.splits(rows) {
            tier1.scan_split(&s.route_order, &mut s.survivors, &mut s.probe_norms);
        } else {
            let order = &s.route_order;
            tier1.scan_inline(order, &mut s.scan, &mut s.survivors, &mut s.probe_norms);
        }
        stats.probed = s.route_order.len();
        stats.scanned = rows;
        stats.survivors = s.survivors.len();
        s.survivors.drain_sorted(&mut s.ranked);
        stats.rescored = super::rescore::rescore(
            stack,
            &s.query.q,
            plan,
            &s.ranked,
            &s.probe_norms,
            &mut s.best,
        );
        s.best.drain_sorted(&mut s.out);
        if s.out.len() < plan.k {
            // Every query must get min(k, allowed) rows. Routing probes at
            // least k allowed rows, so only estimates that are not finite
            // can leave Tier1 short; answer such a query exactly.
            s.best.reset(plan.k);
            exact_all(stack, &s.query.q, false, &mut s.best);
            s.best.drain_sorted(&mut s.out);
            stats.rescored += n;
        }
        Ok(stats)
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

/// Internal scores to user-facing `(ids, scores)`: distances come back
/// positive for l2.
fn finish(stack: &Stack<'_>, best: &[Scored]) -> (Vec<i64>, Vec<f32>) {
    let flip = stack.first().metric.is_distance();
    best.iter()
        .map(|s| {
            let score = if flip { -s.score } else { s.score };
            (stack.id(s.row as usize), score)
        })
        .unzip()
}

/// One file of a stacked search and the rows of it a query may return.
#[derive(Clone, Copy)]
pub struct Part<'a> {
    /// The file.
    pub engine: &'a Engine,
    /// Rows it may return (`None`: all).
    pub mask: Option<&'a RowMask>,
    /// Whether `mask` holds a filter (not only deletions): the query is
    /// planned as a filtered one ([`QueryPlan::filtered`]).
    pub filtered: bool,
}

/// The files of `parts` as one stack; the first one routes and plans.
pub(crate) fn stack_of<'a>(parts: &[Part<'a>]) -> Result<Stack<'a>> {
    let first = parts
        .first()
        .ok_or_else(|| Error::param("parts", "no files to search"))?;
    let (dim, metric) = (first.engine.dim(), first.engine.file().metric());
    let layout = |e: &Engine| (e.dim(), e.file().metric(), e.file().offsets().len());
    let mut total = 0usize;
    let views = parts
        .iter()
        .map(|p| {
            if layout(p.engine) != layout(first.engine) {
                return Err(Error::param(
                    "parts",
                    format!("files of one search must share dim {dim}, metric {metric:?} and partitions"),
                ));
            }
            total += p.engine.len();
            Ok(View::new(p.engine.file(), &first.engine.kernels).masked(p.mask))
        })
        .collect::<Result<Vec<_>>>()?;
    if total > u32::MAX as usize {
        return Err(Error::param(
            "parts",
            "more than 2^32 - 1 rows in one search",
        ));
    }
    Ok(Stack::new(views))
}

/// Top-k of one query over the rows of several files that share their
/// partitions (a live collection's segments, built on one set of
/// centroids): one routing, one Tier1 over every file's rows of each
/// probed partition, one rescoring. `min(k, allowed rows)` results.
/// `calibration` replaces the first file's (a collection's, measured on
/// the whole stack when it held the given number of rows).
pub fn search_parts(
    parts: &[Part<'_>],
    query: &[f32],
    params: &SearchParams,
    calibration: Option<(&Calibration, usize)>,
) -> Result<(Vec<i64>, Vec<f32>, SearchStats)> {
    let stack = stack_of(parts)?;
    let base = parts[0].engine;
    let mut plan = base.stack_plan(&stack, params, true, calibration)?;
    plan.filtered = parts.iter().any(|p| p.filtered);
    with_scratch(|s| {
        let stats = base.run_query(&stack, query, &plan, s)?;
        let (ids, scores) = finish(&stack, &s.out);
        Ok((ids, scores, stats))
    })
}

/// [`search_parts`] for each row of `queries` (`b x dim`), in parallel on
/// the pool (a single query runs inline).
pub fn search_batch_parts(
    parts: &[Part<'_>],
    queries: &[f32],
    params: &SearchParams,
    calibration: Option<(&Calibration, usize)>,
) -> Result<BatchResult> {
    let stack = stack_of(parts)?;
    let base = parts[0].engine;
    let mut plan = base.stack_plan(&stack, params, false, calibration)?;
    plan.filtered = parts.iter().any(|p| p.filtered);
    let dim = base.dim();
    if !queries.len().is_multiple_of(dim) {
        return Err(Error::DimensionMismatch {
            expected: dim,
            got: queries.len() % dim,
        });
    }
    let b = queries.len() / dim;
    let k = plan.k;
    let mut ids = vec![0i64; b * k];
    let mut scores = vec![0f32; b * k];
    let one = |(i, ((q, id), sc)): BatchItem<'_>| {
        with_scratch(|s| {
            base.run_query(&stack, q, &plan, s)
                .map_err(|e| row_error(e, i))?;
            let (qi, qs) = finish(&stack, &s.out);
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
