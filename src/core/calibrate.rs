//! Recall calibration: part of every build. Queries are sampled from the
//! index's own rows and answered leave-one-out (the row itself is dropped
//! from both the exact and the approximate answer, as if it had been held
//! out), or given by the user (`engine.calibrate(queries)`); a grid of
//! search settings is run over them and, for each recall target of
//! `index::calibration::TARGETS`, the cheapest setting whose mean recall@10
//! reaches the target with 95% confidence is stored in the file.
//! Blueprint section 3.9 defines the grid, the confidence rule and the cost
//! model, and what calibrating on rows cannot know about real queries.
use std::time::Instant;

use rayon::prelude::*;

use super::engine::{stack_of, Engine, Part, SearchStats};
use super::params::SearchParams;
use super::plan::{spills, QueryPlan};
use super::query::PreparedQuery;
use super::stack::Stack;
use super::topk::{Scored, TopK};
use super::view::View;
use crate::error::{Error, Result};
use crate::index::calibration::{Calibration, CalibrationPoint, TARGETS};
use crate::index::format::SectionKind;
use crate::index::kmeans::{sample_indices, Rng};
use crate::index::Metric;
use crate::pool;

/// Calibration queries (rows of the index).
pub const QUERIES: usize = 300;
/// The `k` of the calibrated recall@k.
pub const CAL_K: usize = 10;
/// One-sided z for the 95% lower confidence bound on the mean recall.
const Z: f64 = 1.645;
/// Expansion ratios tried.
const RATIOS: [f32; 2] = [0.3, 0.7];
/// Expansion may open up to this many times `nprobe` extra partitions.
const EXPAND_CAP: usize = 3;
/// Survivor counts tried, in multiples of `k`.
const CANDIDATES: [usize; 5] = [10, 20, 50, 200, 1000];
/// Error-bound scales tried at each target's setting, loosest first
/// ([`CalibrationPoint::error_scale`]): at the default `epsilon` of 3,
/// bounds of 2 and 1.5 standard deviations.
const ERROR_SCALES: [f32; 2] = [2.0 / 3.0, 0.5];
/// A line of the grid stops once `nprobe` growth adds less recall than
/// this twice in a row (it is limited by its survivor count).
const PLATEAU: f64 = 0.0005;

/// How a setting did on the calibration queries.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    mean: f64,
    p10: f64,
    /// Lower 95% confidence bound of the mean.
    lcb: f64,
    cost_us: f64,
}

/// One evaluated setting of the grid.
#[derive(Debug, Clone, Copy)]
struct Setting {
    nprobe: usize,
    expand_ratio: f32,
    expand_probes: usize,
    candidates: usize,
    error_scale: f32,
    outcome: Outcome,
}

/// Modelled microseconds of a query from what it did, with constants
/// measured on debian-minilm-384 (blueprint 3.8), scaled by `dim / 384`
/// where the work is per dimension. A model rather than a clock keeps the
/// calibration the same from run to run on a noisy machine.
struct CostModel {
    d: f64,
}

impl CostModel {
    fn query(&self, s: &SearchStats) -> f64 {
        0.35 * s.probed as f64
            + 0.0015 * self.d * s.scanned as f64
            + 0.01 * s.survivors as f64
            + 0.12 * self.d * s.rescored as f64
    }

    /// Brute force over `n` rows.
    fn exact(&self, n: usize) -> f64 {
        0.08 * self.d * n as f64
    }
}

/// The calibration queries and their exact answers.
struct Queries {
    /// The stored row each query is (left out of its answers), `u32::MAX`
    /// for queries that are not rows.
    rows: Vec<u32>,
    vectors: Vec<f32>,
    truth: Vec<Vec<u32>>,
}

/// Where the calibration queries come from.
#[derive(Debug, Clone, Copy)]
pub enum QuerySource<'a> {
    /// [`QUERIES`] rows of the index, sampled with this seed, leave-one-out.
    Rows {
        /// Seed of the sample (the build's).
        seed: u64,
    },
    /// The user's own queries (`b x dim`, row-major), e.g. a sample of a
    /// query log: closer to what the index will be asked than its rows.
    Given(&'a [f32]),
}

/// Fewest user queries a calibration accepts: below this, one query more or
/// less moves the mean recall by more than the margins between targets.
pub const MIN_GIVEN_QUERIES: usize = 50;

/// Calibrates `engine`'s index. `progress(f)` gets the fraction done and
/// returns `false` to cancel.
pub fn calibrate(
    engine: &Engine,
    source: QuerySource<'_>,
    progress: &mut dyn FnMut(f64) -> bool,
) -> Result<Calibration> {
    let t0 = Instant::now();
    let n = engine.len();
    let parts = engine.file().offsets().len().saturating_sub(1).max(1);
    let model = CostModel {
        d: engine.dim() as f64 / 384.0,
    };
    let exact_cost = model.exact(n);
    let exact_point = |target: f64| CalibrationPoint {
        target,
        exact: true,
        nprobe: parts,
        expand_ratio: 0.0,
        expand_probes: 0,
        candidates: n.max(1),
        recall: 1.0,
        recall_p10: 1.0,
        cost_us: exact_cost,
        error_scale: 1.0,
    };
    let queries = match source {
        QuerySource::Rows { seed } => sample_queries(engine, QUERIES.min(n), seed),
        QuerySource::Given(q) => given_queries(engine, q)?,
    };
    let q = queries.truth.len();
    let described = match source {
        QuerySource::Rows { .. } => "rows of the index, leave-one-out".to_owned(),
        QuerySource::Given(_) => format!("{q} queries given by the user"),
    };
    if n <= CAL_K + 1 {
        // Every search returns every row: nothing to calibrate.
        return Ok(Calibration {
            k: CAL_K,
            queries: 0,
            source: "none: the index holds at most k + 1 rows".into(),
            settings_tried: 0,
            seconds: t0.elapsed().as_secs_f64(),
            points: TARGETS.iter().map(|&t| exact_point(t)).collect(),
            unspilled: Vec::new(),
        });
    }
    let mut grid = Grid {
        engine,
        queries,
        model,
        parts,
        exact_cost,
        spill: true,
        tried: Vec::new(),
    };
    // A file with spilled entries is measured twice: with them, and
    // without them for queries that do not scan them (blueprint 3.4).
    // Each pass reports half the progress.
    let spilled = engine.file().entry(SectionKind::SpillRows).rows > 0;
    let passes = if spilled { 2.0 } else { 1.0 };
    let points = grid.points(&exact_point, &mut |f| progress(f / passes))?;
    let mut tried = grid.tried.len();
    let mut unspilled = Vec::new();
    if spilled {
        grid.spill = false;
        grid.tried.clear();
        unspilled = grid.points(&exact_point, &mut |f| progress(0.5 + f / 2.0))?;
        tried += grid.tried.len();
    }
    Ok(Calibration {
        k: CAL_K,
        queries: q,
        source: described,
        settings_tried: tried,
        seconds: t0.elapsed().as_secs_f64(),
        points,
        unspilled,
    })
}

/// The settings tried so far and what is needed to try more.
struct Grid<'a> {
    engine: &'a Engine,
    queries: Queries,
    model: CostModel,
    parts: usize,
    exact_cost: f64,
    /// Whether the plans may scan spilled entries.
    spill: bool,
    tried: Vec<Setting>,
}

impl Grid<'_> {
    /// Sweeps, then one point per target of [`TARGETS`].
    fn points(
        &mut self,
        exact_point: &dyn Fn(f64) -> CalibrationPoint,
        progress: &mut dyn FnMut(f64) -> bool,
    ) -> Result<Vec<CalibrationPoint>> {
        self.sweep(progress)?;
        let mut points = Vec::with_capacity(TARGETS.len());
        for &t in &TARGETS {
            let refined = match self.refine(t)? {
                Some(s) => Some(self.tighten(s, t)?),
                None => None,
            };
            points.push(match refined {
                Some(s) => CalibrationPoint {
                    target: t,
                    exact: false,
                    nprobe: s.nprobe,
                    expand_ratio: s.expand_ratio,
                    expand_probes: s.expand_probes,
                    candidates: s.candidates,
                    recall: s.outcome.mean,
                    recall_p10: s.outcome.p10,
                    cost_us: s.outcome.cost_us,
                    error_scale: s.error_scale,
                },
                None => exact_point(t),
            });
        }
        Ok(points)
    }

    /// Evaluates one setting at the full error bound (once: repeats are
    /// looked up).
    fn eval(&mut self, nprobe: usize, expand_ratio: f32, candidates: usize) -> Result<Setting> {
        self.eval_scaled(nprobe, expand_ratio, candidates, 1.0)
    }

    /// [`Grid::eval`] with the error bound scaled by `error_scale`.
    fn eval_scaled(
        &mut self,
        nprobe: usize,
        expand_ratio: f32,
        candidates: usize,
        error_scale: f32,
    ) -> Result<Setting> {
        let key = (nprobe, expand_ratio, candidates, error_scale);
        let same = |s: &&Setting| (s.nprobe, s.expand_ratio, s.candidates, s.error_scale) == key;
        if let Some(s) = self.tried.iter().find(same) {
            return Ok(*s);
        }
        let expand_probes = if expand_ratio > 0.0 {
            (EXPAND_CAP * nprobe).min(self.parts - nprobe)
        } else {
            0
        };
        let mut plan = setting_plan(self.engine, nprobe, expand_ratio, expand_probes, candidates)?;
        plan.spill = self.spill && spills(nprobe, expand_probes, self.parts);
        if let Some(m) = plan.bound_margin.as_mut() {
            *m *= error_scale;
        }
        let outcome = evaluate(self.engine, &self.queries, &plan, &self.model)?;
        let s = Setting {
            nprobe,
            expand_ratio,
            expand_probes,
            candidates,
            error_scale,
            outcome,
        };
        self.tried.push(s);
        Ok(s)
    }

    /// The coarse sweep: for each survivor count and expansion ratio,
    /// `nprobe` grows by about 1.5x until the line reaches the highest
    /// target, stops gaining (it is limited by its survivors), or costs
    /// more than brute force or than the cheapest setting already known
    /// to reach every target this line has not reached.
    fn sweep(&mut self, progress: &mut dyn FnMut(f64) -> bool) -> Result<()> {
        let n = self.engine.len();
        let top = TARGETS[TARGETS.len() - 1];
        let probes = probe_series(self.parts);
        let ratios: &[f32] = if self.parts == 1 { &[0.0] } else { &RATIOS };
        let mut counts: Vec<usize> = CANDIDATES.iter().map(|&c| (c * CAL_K).min(n)).collect();
        counts.dedup();
        let lines = counts.len() * ratios.len();
        for (ci, &candidates) in counts.iter().enumerate() {
            for (ri, &ratio) in ratios.iter().enumerate() {
                let mut gains_small = 0;
                let mut last = f64::NEG_INFINITY;
                for &nprobe in &probes {
                    let o = self.eval(nprobe, ratio, candidates)?.outcome;
                    if o.lcb >= top || o.cost_us > self.exact_cost.min(self.bar(o.lcb)) {
                        break;
                    }
                    gains_small = if o.mean - last < PLATEAU {
                        gains_small + 1
                    } else {
                        0
                    };
                    if gains_small >= 2 {
                        break;
                    }
                    last = o.mean;
                }
                if !progress((ci * ratios.len() + ri + 1) as f64 / lines as f64) {
                    return Err(Error::Cancelled);
                }
            }
        }
        Ok(())
    }

    /// The most a setting that has reached `lcb` may cost and still be
    /// worth growing: the highest, over the targets above `lcb`, of the
    /// cheapest cost known to reach them (infinite while one is unreached).
    fn bar(&self, lcb: f64) -> f64 {
        TARGETS
            .iter()
            .filter(|&&t| t > lcb)
            .map(|&t| {
                self.cheapest(t)
                    .map_or(f64::INFINITY, |s| s.outcome.cost_us)
            })
            .fold(0.0, f64::max)
    }

    /// The cheapest setting tried at the full error bound that reaches
    /// `target` (its mean and its lower confidence bound) for less than
    /// brute force.
    fn cheapest(&self, target: f64) -> Option<Setting> {
        self.tried
            .iter()
            .filter(|s| s.error_scale == 1.0)
            .filter(|s| s.outcome.lcb >= target && s.outcome.mean >= target)
            .filter(|s| s.outcome.cost_us < self.exact_cost)
            .min_by(|a, b| a.outcome.cost_us.total_cmp(&b.outcome.cost_us))
            .copied()
    }

    /// The cheapest setting for `target` after bisecting `nprobe` between
    /// the coarse sweep's winner and the point below it on its line, so
    /// the 1.5x steps cost at most a few percent.
    fn refine(&mut self, target: f64) -> Result<Option<Setting>> {
        let Some(best) = self.cheapest(target) else {
            return Ok(None);
        };
        let (ratio, candidates) = (best.expand_ratio, best.candidates);
        let below = probe_series(self.parts)
            .into_iter()
            .filter(|&m| m < best.nprobe)
            .max()
            .unwrap_or(0);
        let (mut lo, mut hi) = (below, best.nprobe);
        while hi - lo > 1 && hi - lo > hi / 8 {
            let mid = (lo + hi) / 2;
            let o = self.eval(mid, ratio, candidates)?.outcome;
            if o.lcb >= target && o.mean >= target {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(self.cheapest(target))
    }
}

impl Grid<'_> {
    /// `s` (the cheapest setting for `target`) with the tightest error
    /// bound of [`ERROR_SCALES`] that still reaches the target for less:
    /// a tighter bound rescores fewer survivors (debian-minilm-384 at
    /// target 0.95: 56 -> 40 rows rescored, p50 45.2 -> 41.7 us, at 2
    /// standard deviations instead of 3), but how tight a bound keeps the
    /// recall depends on the data.
    fn tighten(&mut self, s: Setting, target: f64) -> Result<Setting> {
        let mut best = s;
        for &scale in &ERROR_SCALES {
            let t = self.eval_scaled(s.nprobe, s.expand_ratio, s.candidates, scale)?;
            let o = t.outcome;
            if o.lcb < target || o.mean < target || o.cost_us > best.outcome.cost_us {
                break;
            }
            best = t;
        }
        Ok(best)
    }
}

/// `q` distinct rows chosen with `seed`, their vectors, and their exact
/// top `CAL_K` among the other rows.
fn sample_queries(engine: &Engine, q: usize, seed: u64) -> Queries {
    let view = View::new(engine.file(), engine.kernels());
    let mut rng = Rng::new(seed ^ 0x5eed_ca1b);
    let rows: Vec<u32> = sample_indices(view.len(), q, &mut rng)
        .into_iter()
        .map(|r| r as u32)
        .collect();
    let mut vectors = Vec::with_capacity(q * view.dim);
    for &r in &rows {
        vectors.extend_from_slice(view.vector(r as usize));
    }
    let mut truth = exact_top(&view, &vectors, CAL_K + 1);
    for (t, &r) in truth.iter_mut().zip(&rows) {
        t.retain(|&x| x != r);
        t.truncate(CAL_K);
    }
    Queries {
        rows,
        vectors,
        truth,
    }
}

/// The user's queries, checked and encoded as a search would (normalised
/// for cosine), and their exact top `CAL_K`.
fn given_queries(engine: &Engine, queries: &[f32]) -> Result<Queries> {
    let view = View::new(engine.file(), engine.kernels());
    let dim = view.dim;
    if !queries.len().is_multiple_of(dim) {
        return Err(Error::DimensionMismatch {
            expected: dim,
            got: queries.len() % dim,
        });
    }
    let b = queries.len() / dim;
    if b < MIN_GIVEN_QUERIES {
        return Err(Error::param(
            "queries",
            format!("calibration needs at least {MIN_GIVEN_QUERIES} queries, got {b}"),
        ));
    }
    let mut prepared = PreparedQuery::default();
    let mut vectors = Vec::with_capacity(queries.len());
    for (row, q) in queries.chunks_exact(dim).enumerate() {
        prepared.check(q, dim, view.metric).map_err(|e| match e {
            Error::NonFinite { what, col, .. } => Error::NonFinite { what, row, col },
            other => other,
        })?;
        vectors.extend_from_slice(&prepared.q);
    }
    let truth = exact_top(&view, &vectors, CAL_K);
    Ok(Queries {
        // No query is a row of the index: nothing to leave out.
        rows: vec![u32::MAX; b],
        vectors,
        truth,
    })
}

/// Exact top `k` rows of every query, by blocks of rows that stay in cache
/// while a group of queries is scored against them.
fn exact_top(view: &View<'_>, queries: &[f32], k: usize) -> Vec<Vec<u32>> {
    exact_top_stack(&Stack::one(*view), queries, k)
}

/// The exact top-`k` rows (numbered across the stack) of each query, over
/// the rows the stack's masks allow: blocks of rows scored against groups
/// of queries, so each block is read once per group, on the pool.
pub(crate) fn exact_top_stack(stack: &Stack<'_>, queries: &[f32], k: usize) -> Vec<Vec<u32>> {
    const BLOCK_ROWS: usize = 256;
    const GROUP: usize = 8;
    let first = stack.first();
    let (dim, kernels) = (first.dim, first.kernels);
    let distance = first.metric == Metric::L2;
    let norms: Vec<Vec<f32>> = stack
        .parts()
        .map(|(_, v)| match distance {
            true => (0..v.len())
                .map(|r| (kernels.dot)(v.vector(r), v.vector(r)))
                .collect(),
            false => Vec::new(),
        })
        .collect();
    pool::install(|| {
        queries
            .par_chunks(GROUP * dim)
            .flat_map_iter(|group| {
                let qs: Vec<&[f32]> = group.chunks_exact(dim).collect();
                let q2: Vec<f32> = qs.iter().map(|q| (kernels.dot)(q, q)).collect();
                let mut tops: Vec<TopK> = qs
                    .iter()
                    .map(|_| {
                        let mut t = TopK::default();
                        t.reset(k);
                        t
                    })
                    .collect();
                let mut dots = vec![0.0f32; BLOCK_ROWS];
                for ((start, view), norms) in stack.parts().zip(&norms) {
                    let n = view.len();
                    for r0 in (0..n).step_by(BLOCK_ROWS) {
                        let r1 = (r0 + BLOCK_ROWS).min(n);
                        let rows = &view.vectors[r0 * dim..r1 * dim];
                        for ((q, top), &qq) in qs.iter().zip(&mut tops).zip(&q2) {
                            let out = &mut dots[..r1 - r0];
                            (kernels.dot_rows)(q, rows, out);
                            for (j, &d) in out.iter().enumerate() {
                                let row = r0 + j;
                                if !view.allows(row) {
                                    continue;
                                }
                                let s = if distance {
                                    2.0 * d - norms[row] - qq
                                } else {
                                    d
                                };
                                top.push(s, (start + row) as u32);
                            }
                        }
                    }
                }
                tops.into_iter().map(|mut t| {
                    let mut out: Vec<Scored> = Vec::new();
                    t.drain_sorted(&mut out);
                    out.into_iter().map(|s| s.row).collect()
                })
            })
            .collect()
    })
}

/// The exact top-`k` document ids of each query (`b x dim`) over the rows
/// of `parts` (a collection's segments) that their masks allow, by the
/// blocked brute force calibration uses (several times faster than
/// `exact = true` searches, which read every row once per query).
pub fn exact_top_parts(parts: &[Part<'_>], queries: &[f32], k: usize) -> Result<Vec<Vec<i64>>> {
    let stack = stack_of(parts)?;
    Ok(exact_top_stack(&stack, queries, k)
        .into_iter()
        .map(|rows| rows.into_iter().map(|r| stack.id(r as usize)).collect())
        .collect())
}

/// Probe counts of the coarse sweep: 1, 2, 3, 4, 6, 9, ... growing by
/// about 1.5x, and `parts`.
fn probe_series(parts: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut m = 1;
    while m < parts {
        out.push(m);
        m = (m + 1).max((m as f64 * 1.5).round() as usize);
    }
    out.push(parts);
    out
}

/// The plan of one grid setting, answering `CAL_K + 1` results (the query's
/// own row is among them).
fn setting_plan(
    engine: &Engine,
    nprobe: usize,
    expand_ratio: f32,
    expand_probes: usize,
    candidates: usize,
) -> Result<QueryPlan> {
    let f = engine.file();
    let params = SearchParams {
        k: CAL_K + 1,
        nprobe,
        candidates,
        ..SearchParams::default()
    };
    let parts = f.offsets().len().saturating_sub(1);
    let mut plan = QueryPlan::new(&params, f.len(), parts, f.metric(), usize::MAX, None, true)?;
    plan.expand_ratio = expand_ratio;
    plan.extra_probes = expand_probes;
    Ok(plan)
}

/// Mean and spread of leave-one-out recall@`CAL_K` under `plan`.
fn evaluate(
    engine: &Engine,
    queries: &Queries,
    plan: &QueryPlan,
    model: &CostModel,
) -> Result<Outcome> {
    let results = engine.run_plan(&queries.vectors, plan)?;
    let mut recalls = Vec::with_capacity(results.len());
    let mut cost = 0.0;
    for ((rows, stats), (own, truth)) in results.iter().zip(queries.rows.iter().zip(&queries.truth))
    {
        let found = rows
            .iter()
            .filter(|&&r| r != *own)
            .take(CAL_K)
            .filter(|r| truth.contains(r))
            .count();
        recalls.push(found as f64 / truth.len().max(1) as f64);
        cost += model.query(stats);
    }
    let q = recalls.len().max(1) as f64;
    let mean = recalls.iter().sum::<f64>() / q;
    let var = recalls.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (q - 1.0).max(1.0);
    recalls.sort_by(f64::total_cmp);
    let p10 = recalls
        .get(((recalls.len() as f64 - 1.0) * 0.1) as usize)
        .copied()
        .unwrap_or(1.0);
    Ok(Outcome {
        mean,
        p10,
        lcb: mean - Z * (var / q).sqrt(),
        cost_us: cost / q,
    })
}
