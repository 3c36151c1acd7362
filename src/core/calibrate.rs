//! Recall calibration: part of every build. Queries are sampled from the
//! index's own rows and answered leave-one-out (the row itself is dropped
//! from both the exact and the approximate answer, as if it had been held
//! out), or given by the user (`engine.calibrate(queries)`); a grid of
//! search settings is run over them and, for each recall target of
//! `index::calibration::TARGETS`, the cheapest setting whose mean recall@10
//! reaches the target with 95% confidence is stored in the file.
//! Blueprint section 3.9 defines the grid, the confidence rule and the cost
//! model, and what calibrating on rows cannot know about real queries.
mod grid;

use std::time::Instant;

use self::grid::{CostModel, Grid};
use super::engine::Engine;
use super::exact::exact_top_stack;
use super::query::PreparedQuery;
use super::stack::Stack;
use super::view::View;
use crate::error::{Error, Result};
use crate::index::calibration::{Calibration, CalibrationPoint, TARGETS};
use crate::index::format::SectionKind;
use crate::index::kmeans::{sample_indices, Rng};

/// Calibration queries (rows of the index).
pub const QUERIES: usize = 300;
/// The `k` of the calibrated recall@k.
pub const CAL_K: usize = 10;

/// The calibration queries and their exact answers.
struct Queries {
    /// The stored row each query is (left out of its answers), `u32::MAX`
    /// for queries that are not rows.
    rows: Vec<u32>,
    vectors: Vec<f32>,
    truth: Vec<Vec<u32>>,
}

impl Queries {
    fn len(&self) -> usize {
        self.truth.len()
    }
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
    let mut grid = Grid::new(engine, queries, model, parts);
    let points = |grid: &mut Grid<'_>, progress: &mut dyn FnMut(f64) -> bool| {
        let chosen = grid.points(progress)?;
        let all = TARGETS.iter().zip(chosen);
        Ok::<_, Error>(
            all.map(|(&t, p)| p.unwrap_or_else(|| exact_point(t)))
                .collect(),
        )
    };
    // A file with spilled entries is measured twice: without them (for
    // queries that do not scan them, blueprint 3.4), then with them; the
    // settings whose plans scan none are the same in both passes, so the
    // second pass's lines stop where their plans stop scanning entries.
    // Each pass reports half the progress.
    let spilled = engine.file().entry(SectionKind::SpillRows).rows > 0;
    let mut unspilled = Vec::new();
    if spilled {
        grid.spill = false;
        unspilled = points(&mut grid, &mut |f| progress(f / 2.0))?;
        grid.spill = true;
        grid.spilled_lines = true;
    }
    let done = if spilled { 0.5 } else { 0.0 };
    let with = points(&mut grid, &mut |f| progress(done + f * (1.0 - done)))?;
    Ok(Calibration {
        k: CAL_K,
        queries: q,
        source: described,
        settings_tried: grid.tried(),
        seconds: t0.elapsed().as_secs_f64(),
        points: with,
        unspilled,
    })
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
