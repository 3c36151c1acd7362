//! Recall calibration of a collection's segments as one stack. Every
//! segment shares the base segment's partitions, and the base was
//! calibrated on its own rows; the same probes reach more of the true
//! neighbours once other segments make the partitions denser (on
//! debian-minilm-384, 60k rows on a 30k base answered target 0.95 at
//! recall 0.976). So, as the stack grows, the writer measures the recall
//! each of the base's calibrated settings reaches on the whole stack (300
//! of its rows as queries, each left out of its own answer, truth by brute
//! force) and keeps, per target, the cheapest setting whose mean recall and
//! one-sided 95% lower bound reach it -- the rule of `core::calibrate`,
//! over the settings the base's calibration chose.
use std::time::Instant;

use super::state::State;
use crate::core::exact::exact_top_parts;
use crate::core::{search_batch_parts, SearchParams};
use crate::error::Result;
use crate::index::calibration::{Calibration, CalibrationPoint, TARGETS};

/// Calibration queries.
const QUERIES: usize = 300;

/// Stacks smaller than this keep the base's calibration: their queries
/// are cheap, and measuring them cost most of an ingest from empty
/// (debian in batches of 1,000 with a commit each: 3.9k rows/s with stack
/// calibrations from 2k rows on, against 6.6k without).
pub const MIN_ROWS: usize = 16_000;

/// One-sided 95% normal quantile, as `core::calibrate`'s.
const Z: f64 = 1.645;

/// The stack calibration of `state` (its segments; fresh rows are not
/// searched by the stack), or `None` without a calibrated base or with
/// too few rows to measure.
pub fn calibrate_stack(state: &State) -> Result<Option<Calibration>> {
    let started = Instant::now();
    let Some(base) = state.segments.first() else {
        return Ok(None);
    };
    let Some(cal) = base.engine.file().calibration() else {
        return Ok(None);
    };
    let live: usize = state.segments.iter().map(|s| s.live()).sum();
    if live < MIN_ROWS {
        return Ok(None);
    }
    let (queries, own) = sample(state, live);
    let parts = state.parts();
    let k = cal.k;
    let truth: Vec<Vec<i64>> = exact_top_parts(&parts, &queries, k + 1)?
        .into_iter()
        .zip(&own)
        .map(|(ids, me)| ids.into_iter().filter(|id| id != me).take(k).collect())
        .collect();
    // Targets share settings (and bisect through the same probes): each
    // setting is measured once.
    let seen = std::cell::RefCell::new(Vec::<Measured>::new());
    let measure = |p: &CalibrationPoint| -> Result<Measured> {
        let same = |m: &&Measured| {
            let q = &m.point;
            (q.nprobe, q.expand_probes, q.candidates) == (p.nprobe, p.expand_probes, p.candidates)
                && (q.expand_ratio, q.error_scale) == (p.expand_ratio, p.error_scale)
        };
        if let Some(m) = seen.borrow().iter().find(same) {
            return Ok(Measured {
                point: p.clone(),
                ..m.clone()
            });
        }
        let params = SearchParams {
            k: k + 1,
            nprobe: p.nprobe,
            candidates: p.candidates.saturating_mul(k + 1).div_ceil(k),
            expansion: p.expand_probes > 0,
            expand_probes: p.expand_probes,
            expand_ratio: p.expand_ratio,
            // Explicit settings take no calibrated bound: give the point's.
            epsilon: SearchParams::default().epsilon * p.error_scale,
            ..Default::default()
        };
        let found = answers(
            &search_batch_parts(&parts, &queries, &params, None)?,
            &own,
            k,
        );
        let m = Measured::of(p.clone(), &found, &truth);
        seen.borrow_mut().push(m.clone());
        Ok(m)
    };
    let mut measured = Vec::new();
    for p in cal.points.iter().filter(|p| !p.exact) {
        measured.push(measure(p)?);
    }
    let mut points = Vec::with_capacity(TARGETS.len());
    for (&t, own_point) in TARGETS.iter().zip(&cal.points) {
        let passes = |m: &Measured| m.mean >= t && m.lcb >= t;
        let Some(hi) = measured
            .iter()
            .filter(|m| passes(m))
            .min_by(|a, b| a.cost(b))
            .cloned()
        else {
            // None of the base's settings is measured to reach it on the
            // stack: keep the base's own.
            points.push(own_point.clone());
            continue;
        };
        // The stack is denser than the base: fewer probes than the
        // passing setting's may do. Bisect the probes (expansion capped
        // at 3 per probe, as calibration's grid) between the most probes
        // that failed and the passing setting.
        let below = measured
            .iter()
            .filter(|m| !passes(m) && m.point.nprobe < hi.point.nprobe)
            .map(|m| m.point.nprobe)
            .max()
            .unwrap_or(0);
        let hi_probes = hi.point.nprobe.max(1) as f64;
        let (mut lo, mut best) = (below, hi);
        // To within an eighth of the probes: the last steps of a full
        // bisection cost the most (many probes) and save the least.
        while best.point.nprobe > lo + (best.point.nprobe / 8).max(1) {
            let mid = (lo + best.point.nprobe) / 2;
            let p = CalibrationPoint {
                nprobe: mid,
                expand_probes: best.point.expand_probes.min(3 * mid),
                ..best.point.clone()
            };
            let m = measure(&p)?;
            if passes(&m) {
                best = m;
            } else {
                lo = mid;
            }
        }
        points.push(CalibrationPoint {
            target: t,
            recall: best.mean,
            recall_p10: best.p10,
            // The base's modelled cost of the passing setting, scaled by
            // the probes kept.
            cost_us: best.point.cost_us * best.point.nprobe as f64 / hi_probes,
            ..best.point.clone()
        });
    }
    let tried = seen.borrow().len();
    Ok(Some(Calibration {
        // Collections' segments have no spilled entries.
        unspilled: Vec::new(),
        k,
        queries: QUERIES,
        source: format!(
            "collection rows ({} segments, {live} live rows)",
            state.segments.len()
        ),
        settings_tried: tried,
        seconds: started.elapsed().as_secs_f64(),
        points,
    }))
}

/// [`QUERIES`] live rows spread evenly over the stack, and their ids.
fn sample(state: &State, live: usize) -> (Vec<f32>, Vec<i64>) {
    let dim = state.dim;
    let step = live / QUERIES;
    let (mut vectors, mut ids) = (
        Vec::with_capacity(QUERIES * dim),
        Vec::with_capacity(QUERIES),
    );
    let mut seen = 0usize;
    for s in &state.segments {
        let f = s.engine.file();
        let stored: &[i64] = f.section(crate::index::format::SectionKind::Ids);
        let rows: &[f32] = f.section(crate::index::format::SectionKind::Vectors);
        for (row, &id) in stored.iter().enumerate() {
            if !s.mask.as_ref().is_none_or(|m| m.get(row)) {
                continue;
            }
            if seen.is_multiple_of(step) && ids.len() < QUERIES {
                ids.push(id);
                vectors.extend_from_slice(&rows[row * dim..(row + 1) * dim]);
            }
            seen += 1;
        }
    }
    (vectors, ids)
}

/// Each query's first `k` answers other than the query's own row.
fn answers(r: &crate::core::engine::BatchResult, own: &[i64], k: usize) -> Vec<Vec<i64>> {
    own.iter()
        .enumerate()
        .map(|(i, me)| {
            r.ids[i * r.k..(i + 1) * r.k]
                .iter()
                .copied()
                .filter(|id| id != me)
                .take(k)
                .collect()
        })
        .collect()
}

/// One setting's recall on the stack.
#[derive(Clone)]
struct Measured {
    point: CalibrationPoint,
    mean: f64,
    lcb: f64,
    p10: f64,
}

impl Measured {
    fn of(point: CalibrationPoint, found: &[Vec<i64>], truth: &[Vec<i64>]) -> Self {
        let per: Vec<f64> = found
            .iter()
            .zip(truth)
            .map(|(f, t)| {
                f.iter().filter(|id| t.contains(id)).count() as f64 / t.len().max(1) as f64
            })
            .collect();
        let n = per.len() as f64;
        let mean = per.iter().sum::<f64>() / n;
        let var = per.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let mut sorted = per;
        sorted.sort_by(f64::total_cmp);
        Measured {
            point,
            mean,
            lcb: mean - Z * (var / n).sqrt(),
            p10: sorted[sorted.len() / 10],
        }
    }

    /// Order by the base calibration's modelled cost, then by probes.
    fn cost(&self, other: &Self) -> std::cmp::Ordering {
        self.point
            .cost_us
            .total_cmp(&other.point.cost_us)
            .then(self.point.nprobe.cmp(&other.point.nprobe))
    }
}
