//! The search settings a calibration tries and how it picks among them
//! (blueprint 3.9): a coarse sweep over survivor counts, expansion ratios
//! and probe counts, each setting first screened on a prefix of the
//! queries; then, per target, the cheapest setting that reaches it on all
//! of them, `nprobe` bisected, the error bound tightened.
use super::{Queries, CAL_K};
use crate::core::engine::{Engine, SearchStats};
use crate::core::params::SearchParams;
use crate::core::plan::{spills, QueryPlan};
use crate::error::{Error, Result};
use crate::index::calibration::{CalibrationPoint, TARGETS};

/// One-sided z for the 95% lower confidence bound on the mean recall.
const Z: f64 = 1.645;
/// Expansion ratios tried.
const RATIOS: [f32; 2] = [0.3, 0.7];
/// Expansion may open up to this many times `nprobe` extra partitions.
const EXPAND_CAP: usize = 3;
/// Survivor counts tried, in multiples of `k`. Survivors cost more than
/// their rescored rows (the Tier1 rows that pass a lower threshold, the
/// selection, the sort, an error factor each): on debian-minilm-384 at
/// the probes of target 0.95, 50 instead of 100 took a query from 51 to
/// 39 us for recall 0.964 instead of 0.967 (blueprint 3.9).
const CANDIDATES: [usize; 6] = [5, 10, 20, 50, 200, 1000];
/// Error-bound scales tried at each target's setting, loosest first
/// ([`CalibrationPoint::error_scale`]): at the default `epsilon` of 3,
/// bounds of 2 and 1.5 standard deviations.
const ERROR_SCALES: [f32; 2] = [2.0 / 3.0, 0.5];
/// A line of the grid stops once `nprobe` growth adds less recall than
/// this twice in a row (it is limited by its survivor count).
const PLATEAU: f64 = 0.0005;
/// Queries every setting is first run on. The sweep only needs to know
/// roughly where each line stands; a setting is run on the other queries
/// only when it may be the one stored for a target (debian-minilm-384:
/// 2.2x fewer query runs than sweeping on all 300).
pub const SCREEN: usize = 100;
/// The least recall more survivors must add, where the line of fewer
/// stopped, for the sweep to walk their line: more survivors help most
/// where most rows are scanned.
const SURVIVORS_GAIN: f64 = 0.002;
/// The target the sweep's lines run to: the second-highest.
const SWEEP_TOP: f64 = TARGETS[TARGETS.len() - 2];

/// How a setting did on the queries it was run on.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    mean: f64,
    p10: f64,
    /// Lower 95% confidence bound of the mean.
    lcb: f64,
    /// Upper 95% confidence bound of the mean.
    ucb: f64,
    /// Standard deviation of the per-query recall.
    sd: f64,
    cost_us: f64,
}

impl Outcome {
    /// The stored rule: mean and lower bound both reach `target`.
    fn reaches(&self, target: f64) -> bool {
        self.lcb >= target && self.mean >= target
    }

    /// Whether the setting may still reach `target` on all `q` queries:
    /// its upper bound, from the queries it ran on, reaches the target plus
    /// the margin the lower bound takes on `q` queries. A setting this
    /// rules out reaches it only by a 5% chance, and then a setting a
    /// little dearer is stored instead.
    fn may_reach(&self, target: f64, q: usize) -> bool {
        self.ucb >= target + Z * self.sd / (q as f64).sqrt()
    }
}

/// Where a walk along a line of the grid stopped.
struct Walked {
    /// The last setting it ran, if any.
    last: Option<usize>,
    /// It stopped gaining: the line is limited by its survivors.
    limited: bool,
}

/// One evaluated setting of the grid.
#[derive(Debug, Clone)]
struct Setting {
    nprobe: usize,
    expand_ratio: f32,
    expand_probes: usize,
    candidates: usize,
    error_scale: f32,
    /// Whether its plan scans spilled entries.
    spill: bool,
    /// Recall@`CAL_K` of each query run so far (a prefix of the queries).
    recalls: Vec<f64>,
    /// Modelled microseconds of those queries, summed.
    cost_us: f64,
    outcome: Outcome,
}

/// Modelled microseconds of a query from what it did, with constants
/// fitted to measured query times (`benchmarks.studies.cost_model`,
/// blueprint 3.9: debian-minilm-384, the 9k x 1536 ada stand-in and a
/// clustered 200k set), scaled by `dim / 384` where the work is per
/// dimension. A model rather than a clock keeps the calibration the same
/// from run to run on a noisy machine.
pub struct CostModel {
    pub d: f64,
}

impl CostModel {
    fn query(&self, s: &SearchStats) -> f64 {
        0.8 * s.probed as f64
            + 0.0035 * self.d * s.scanned as f64
            + 0.06 * s.survivors as f64
            + 0.27 * self.d * s.rescored as f64
    }

    /// Brute force over `n` rows.
    pub fn exact(&self, n: usize) -> f64 {
        0.08 * self.d * n as f64
    }
}

/// The settings tried so far and what is needed to try more.
pub struct Grid<'a> {
    pub engine: &'a Engine,
    pub queries: Queries,
    pub model: CostModel,
    pub parts: usize,
    pub exact_cost: f64,
    /// Whether the plans may scan spilled entries. Settings whose plans
    /// scan none are shared between the passes with and without.
    pub spill: bool,
    /// Whether the lines stop where their plans stop scanning spilled
    /// entries: in the pass with them, once the pass without them has
    /// walked every line beyond (those settings are the same in both).
    pub spilled_lines: bool,
    tried: Vec<Setting>,
}

impl<'a> Grid<'a> {
    pub fn new(engine: &'a Engine, queries: Queries, model: CostModel, parts: usize) -> Self {
        let exact_cost = model.exact(engine.len());
        Grid {
            engine,
            queries,
            model,
            parts,
            exact_cost,
            spill: true,
            spilled_lines: false,
            tried: Vec::new(),
        }
    }

    /// Settings run so far, over both passes.
    pub fn tried(&self) -> usize {
        self.tried.len()
    }

    /// Sweeps, then one point per target of [`TARGETS`] (`None`: no
    /// setting reaches it for less than brute force).
    pub fn points(
        &mut self,
        progress: &mut dyn FnMut(f64) -> bool,
    ) -> Result<Vec<Option<CalibrationPoint>>> {
        self.sweep(progress)?;
        let mut points = Vec::with_capacity(TARGETS.len());
        let mut below = None;
        for &t in &TARGETS {
            if t > SWEEP_TOP {
                match below {
                    Some(i) => self.reach_top(i)?,
                    // Nothing reaches the target below for less than
                    // brute force: nor this one.
                    None => {
                        points.push(None);
                        continue;
                    }
                }
            }
            let chosen = match self.verified(t)? {
                Some(i) => {
                    let i = self.refine(i, t)?;
                    Some(self.tighten(i, t)?)
                }
                None => None,
            };
            below = chosen;
            points.push(chosen.map(|i| {
                let s = &self.tried[i];
                CalibrationPoint {
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
                }
            }));
        }
        envelope(&mut points);
        Ok(points)
    }

    /// Index of the setting, run on at least the first `depth` queries
    /// (repeats are looked up, and extended where they ran on fewer).
    fn eval(
        &mut self,
        nprobe: usize,
        expand_ratio: f32,
        candidates: usize,
        error_scale: f32,
        depth: usize,
    ) -> Result<usize> {
        let expand_probes = self.expand_probes(nprobe, expand_ratio);
        let spill = self.spill && spills(nprobe, expand_probes, self.parts);
        let key = (nprobe, expand_ratio, candidates, error_scale, spill);
        let same = |s: &Setting| {
            (
                s.nprobe,
                s.expand_ratio,
                s.candidates,
                s.error_scale,
                s.spill,
            ) == key
        };
        let i = match self.tried.iter().position(same) {
            Some(i) => i,
            None => {
                self.tried.push(Setting {
                    nprobe,
                    expand_ratio,
                    expand_probes,
                    candidates,
                    error_scale,
                    spill,
                    recalls: Vec::new(),
                    cost_us: 0.0,
                    outcome: summarize(&[], 0.0),
                });
                self.tried.len() - 1
            }
        };
        self.extend(i, depth)?;
        Ok(i)
    }

    /// Runs setting `i` on the queries up to `depth` it has not run on.
    fn extend(&mut self, i: usize, depth: usize) -> Result<()> {
        let depth = depth.min(self.queries.len());
        let s = &self.tried[i];
        let done = s.recalls.len();
        if done >= depth {
            return Ok(());
        }
        let mut plan = setting_plan(
            self.engine,
            s.nprobe,
            s.expand_ratio,
            s.expand_probes,
            s.candidates,
        )?;
        plan.spill = s.spill;
        if let Some(m) = plan.bound_margin.as_mut() {
            *m *= s.error_scale;
        }
        let (recalls, cost) =
            evaluate(self.engine, &self.queries, done..depth, &plan, &self.model)?;
        let s = &mut self.tried[i];
        s.recalls.extend(recalls);
        s.cost_us += cost;
        s.outcome = summarize(&s.recalls, s.cost_us);
        Ok(())
    }

    /// Whether setting `s` belongs to the current pass: its plan scans
    /// spilled entries exactly when this pass lets it.
    fn in_pass(&self, s: &Setting) -> bool {
        s.spill == (self.spill && spills(s.nprobe, s.expand_probes, self.parts))
    }

    /// The coarse sweep, on the screening queries: for each survivor count
    /// and expansion ratio, `nprobe` grows by about 1.5x until the line
    /// reaches the second-highest target, stops gaining (it is limited by
    /// its survivors), or costs more than brute force or than the cheapest
    /// setting already known to reach every target this line has not
    /// reached. The highest target is then sought along the line of the
    /// point below it only ([`Grid::reach_top`]).
    fn sweep(&mut self, progress: &mut dyn FnMut(f64) -> bool) -> Result<()> {
        let ratios: &[f32] = if self.parts == 1 { &[0.0] } else { &RATIOS };
        let counts = self.counts();
        let lines = (counts.len() * ratios.len()) as f64;
        for (ri, &ratio) in ratios.iter().enumerate() {
            let mut last = None;
            for (ci, &candidates) in counts.iter().enumerate() {
                let more = match last {
                    None => ci == 0,
                    Some(at) => self.survivors_gain(at, candidates)? >= SURVIVORS_GAIN,
                };
                if more {
                    last = self.walk(candidates, ratio, 1, SWEEP_TOP)?.last;
                }
                let done = if more {
                    ri * counts.len() + ci + 1
                } else {
                    (ri + 1) * counts.len()
                };
                if !progress(done as f64 / lines) {
                    return Err(Error::Cancelled);
                }
                if !more {
                    break;
                }
            }
        }
        Ok(())
    }

    /// How much more recall `candidates` survivors find than setting `at`
    /// at its `nprobe` and ratio, on the screening queries (the same
    /// queries, so the difference is paired).
    fn survivors_gain(&mut self, at: usize, candidates: usize) -> Result<f64> {
        let s = &self.tried[at];
        let (nprobe, ratio) = (s.nprobe, s.expand_ratio);
        let i = self.eval(nprobe, ratio, candidates, 1.0, SCREEN)?;
        let screened = |i: usize| {
            let r = &self.tried[i].recalls;
            let r = &r[..SCREEN.min(r.len())];
            r.iter().sum::<f64>() / r.len().max(1) as f64
        };
        Ok(screened(i) - screened(at))
    }

    /// The survivor counts of the lines.
    fn counts(&self) -> Vec<usize> {
        let n = self.engine.len();
        let mut counts: Vec<usize> = CANDIDATES.iter().map(|&c| (c * CAL_K).min(n)).collect();
        counts.dedup();
        counts
    }

    /// Extra partitions expansion may open at `nprobe` and `ratio`.
    fn expand_probes(&self, nprobe: usize, ratio: f32) -> usize {
        if ratio > 0.0 {
            (EXPAND_CAP * nprobe).min(self.parts - nprobe)
        } else {
            0
        }
    }

    /// Walks the line of `candidates` and `ratio` from `nprobe = from` up
    /// the probe series until a setting's lower bound reaches `top`, two
    /// steps in a row add less than [`PLATEAU`] (the line is limited by its
    /// survivors), or a setting costs more than brute force or than the
    /// cheapest known to reach every target it has not.
    fn walk(&mut self, candidates: usize, ratio: f32, from: usize, top: f64) -> Result<Walked> {
        let mut gains_small = 0;
        let mut mean = f64::NEG_INFINITY;
        let mut last = None;
        for nprobe in probe_series(self.parts).into_iter().filter(|&m| m >= from) {
            if self.spilled_lines && !spills(nprobe, self.expand_probes(nprobe, ratio), self.parts)
            {
                break;
            }
            let i = self.eval(nprobe, ratio, candidates, 1.0, SCREEN)?;
            last = Some(i);
            if self.improves(i) {
                self.extend(i, self.queries.len())?;
            }
            let o = self.tried[i].outcome;
            if o.lcb >= top || o.cost_us > self.exact_cost.min(self.bar(o.lcb, top)) {
                break;
            }
            gains_small = if o.mean - mean < PLATEAU {
                gains_small + 1
            } else {
                0
            };
            if gains_small >= 2 {
                return Ok(Walked {
                    last,
                    limited: true,
                });
            }
            mean = o.mean;
        }
        Ok(Walked {
            last,
            limited: false,
        })
    }

    /// Seeks the highest target along the line of `below`, the setting
    /// stored for the target under it, from its `nprobe` on; where that
    /// line is limited by its survivors, along the line of the next
    /// survivor count. Sweeping every line to the highest target ran each
    /// one to a third or more of debian-minilm-384's partitions; the point
    /// is on the line of the one below it there, and on every set measured
    /// (blueprint 3.9).
    fn reach_top(&mut self, below: usize) -> Result<()> {
        let s = &self.tried[below];
        let (ratio, from, least) = (s.expand_ratio, s.nprobe, s.candidates);
        let counts = self.counts();
        let top = TARGETS[TARGETS.len() - 1];
        for &candidates in counts.iter().filter(|&&c| c >= least) {
            if !self.walk(candidates, ratio, from, top)?.limited {
                break;
            }
        }
        Ok(())
    }

    /// The most a setting that has reached `lcb` may cost and still be
    /// worth growing towards `top`: the highest, over the targets above
    /// `lcb` up to `top`, of the cheapest cost known (on every query) to
    /// reach them (infinite while one is unreached).
    fn bar(&self, lcb: f64, top: f64) -> f64 {
        TARGETS
            .iter()
            .filter(|&&t| t > lcb && t <= top)
            .map(|&t| self.cheapest_cost(t))
            .fold(0.0, f64::max)
    }

    /// The cost of the cheapest setting known on every query to reach
    /// `target`, infinite if none.
    fn cheapest_cost(&self, target: f64) -> f64 {
        self.cheapest(target)
            .map_or(f64::INFINITY, |i| self.tried[i].outcome.cost_us)
    }

    /// Whether screened setting `i` reaches, on its screen, a target for
    /// less than the cheapest setting known on every query to reach it:
    /// then the sweep runs it on every query before deciding where its
    /// line stops. A line must not stop on a screen that over-reads
    /// (100 queries all at recall 1 bound nothing), and the lines after it
    /// must not stop on a bar it would set: on a 30k x 1536 ada-like set,
    /// stopping on the screen left target 0.995 to brute force where
    /// 9 probes reach it.
    fn improves(&self, i: usize) -> bool {
        let s = &self.tried[i];
        s.recalls.len() < self.queries.len()
            && s.outcome.cost_us < self.exact_cost
            && TARGETS
                .iter()
                .any(|&t| s.outcome.reaches(t) && s.outcome.cost_us < self.cheapest_cost(t))
    }

    /// The cheapest setting of this pass, run on every query at the full
    /// error bound, that reaches `target` for less than brute force.
    fn cheapest(&self, target: f64) -> Option<usize> {
        let q = self.queries.len();
        (0..self.tried.len())
            .filter(|&i| {
                let s = &self.tried[i];
                self.in_pass(s)
                    && s.error_scale == 1.0
                    && s.recalls.len() == q
                    && s.outcome.reaches(target)
                    && s.outcome.cost_us < self.exact_cost
            })
            .min_by(|&a, &b| {
                let cost = |i: usize| self.tried[i].outcome.cost_us;
                cost(a).total_cmp(&cost(b))
            })
    }

    /// The cheapest setting run on every query that reaches `target`:
    /// settings whose screening does not rule the target out
    /// ([`Outcome::may_reach`]) are run on every query, cheapest first, until one
    /// reaches it.
    fn verified(&mut self, target: f64) -> Result<Option<usize>> {
        let q = self.queries.len();
        let mut order: Vec<usize> = (0..self.tried.len())
            .filter(|&i| {
                let s = &self.tried[i];
                self.in_pass(s)
                    && s.error_scale == 1.0
                    && s.outcome.may_reach(target, q)
                    && s.outcome.cost_us < self.exact_cost
            })
            .collect();
        order.sort_by(|&a, &b| {
            let cost = |i: usize| self.tried[i].outcome.cost_us;
            cost(a).total_cmp(&cost(b))
        });
        for i in order {
            self.extend(i, q)?;
            if self.tried[i].outcome.reaches(target) {
                break;
            }
        }
        Ok(self.cheapest(target))
    }

    /// The cheapest setting for `target` after bisecting `nprobe` between
    /// `best`'s and the coarse sweep's point below it on its line, so the
    /// 1.5x steps cost at most a few percent. Each step is screened first.
    fn refine(&mut self, best: usize, target: f64) -> Result<usize> {
        let s = &self.tried[best];
        let (ratio, candidates) = (s.expand_ratio, s.candidates);
        let below = probe_series(self.parts)
            .into_iter()
            .filter(|&m| m < s.nprobe)
            .max()
            .unwrap_or(0);
        let q = self.queries.len();
        // A setting of the line already known to fall short (a bisection
        // of the other pass, whose settings beyond the spill limit are
        // these) narrows the interval: bisecting it again found debian's
        // 0.995 at 179 probes instead of 192, for a tenth of the
        // calibration's work.
        let short = self
            .tried
            .iter()
            .filter(|t| {
                self.in_pass(t)
                    && (t.expand_ratio, t.candidates, t.error_scale) == (ratio, candidates, 1.0)
                    && t.nprobe > below
                    && t.nprobe < s.nprobe
                    && (!t.outcome.may_reach(target, q)
                        || (t.recalls.len() == q && !t.outcome.reaches(target)))
            })
            .map(|t| t.nprobe)
            .max();
        let (mut lo, mut hi) = (short.unwrap_or(below), s.nprobe);
        while hi - lo > 1 && hi - lo > hi / 8 {
            let mid = (lo + hi) / 2;
            let i = self.eval(mid, ratio, candidates, 1.0, SCREEN)?;
            if self.tried[i].outcome.may_reach(target, q) {
                self.extend(i, q)?;
            }
            let s = &self.tried[i];
            if s.recalls.len() == q && s.outcome.reaches(target) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(self.cheapest(target).unwrap_or(best))
    }

    /// `best` (the cheapest setting for `target`) with the tightest error
    /// bound of [`ERROR_SCALES`] that still reaches the target for less:
    /// a tighter bound rescores fewer survivors (debian-minilm-384 at
    /// target 0.95: 56 -> 40 rows rescored, p50 45.2 -> 41.7 us, at 2
    /// standard deviations instead of 3), but how tight a bound keeps the
    /// recall depends on the data. Each is screened first.
    fn tighten(&mut self, best: usize, target: f64) -> Result<usize> {
        let s = &self.tried[best];
        let (nprobe, ratio, candidates) = (s.nprobe, s.expand_ratio, s.candidates);
        let (mut best, q) = (best, self.queries.len());
        for &scale in &ERROR_SCALES {
            let i = self.eval(nprobe, ratio, candidates, scale, SCREEN)?;
            if self.tried[i].outcome.may_reach(target, q) {
                self.extend(i, q)?;
            }
            let s = &self.tried[i];
            let o = s.outcome;
            let full = s.recalls.len() == q;
            if !full || !o.reaches(target) || o.cost_us > self.tried[best].outcome.cost_us {
                break;
            }
            best = i;
        }
        Ok(best)
    }
}

/// Gives each target the point of a higher one where that costs less: a
/// setting that reaches a target reaches every lower one, and each
/// target's own search (its bisection, its error scales) can end dearer
/// than the next one's (100k Gaussian rows: 0.97 at a modelled 1,626 us,
/// 0.98 at 1,081).
fn envelope(points: &mut [Option<CalibrationPoint>]) {
    for i in (0..points.len().saturating_sub(1)).rev() {
        let Some(above) = points[i + 1].clone() else {
            continue;
        };
        if points[i].as_ref().is_none_or(|p| above.cost_us < p.cost_us) {
            points[i] = Some(CalibrationPoint {
                target: TARGETS[i],
                ..above
            });
        }
    }
}

/// Mean, spread and confidence bounds of per-query `recalls`, and the
/// mean of their summed modelled `cost_us`.
fn summarize(recalls: &[f64], cost_us: f64) -> Outcome {
    let q = recalls.len().max(1) as f64;
    let mean = recalls.iter().sum::<f64>() / q;
    let var = recalls.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (q - 1.0).max(1.0);
    let mut sorted = recalls.to_vec();
    sorted.sort_by(f64::total_cmp);
    let p10 = sorted
        .get(((sorted.len() as f64 - 1.0) * 0.1) as usize)
        .copied()
        .unwrap_or(1.0);
    let margin = Z * (var / q).sqrt();
    Outcome {
        mean,
        p10,
        lcb: mean - margin,
        ucb: mean + margin,
        sd: var.sqrt(),
        cost_us: cost_us / q,
    }
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

/// Leave-one-out recall@`CAL_K` of queries `range` under `plan`, and their
/// summed modelled cost.
fn evaluate(
    engine: &Engine,
    queries: &Queries,
    range: std::ops::Range<usize>,
    plan: &QueryPlan,
    model: &CostModel,
) -> Result<(Vec<f64>, f64)> {
    let dim = engine.dim();
    let vectors = &queries.vectors[range.start * dim..range.end * dim];
    let results = engine.run_plan(vectors, plan)?;
    let mut recalls = Vec::with_capacity(results.len());
    let mut cost = 0.0;
    let asked = queries.rows[range.clone()]
        .iter()
        .zip(&queries.truth[range]);
    for ((rows, stats), (own, truth)) in results.iter().zip(asked) {
        let found = rows
            .iter()
            .filter(|&&r| r != *own)
            .take(CAL_K)
            .filter(|r| truth.contains(r))
            .count();
        recalls.push(found as f64 / truth.len().max(1) as f64);
        cost += model.query(stats);
    }
    Ok((recalls, cost))
}
