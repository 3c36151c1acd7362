//! The per-query plan: every number the stages need, derived once from the
//! search knobs and the index's shape, so no stage re-reads the knobs. The
//! automatic rules for knobs left at 0 live here and nowhere else.
use super::mask::BlockRuns;
use super::params::SearchParams;
use crate::error::Result;
use crate::index::{Calibration, CalibrationPoint};
use crate::math::bits::BLOCK;
use crate::metric::Metric;

/// What one query will do.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPlan {
    /// Results to return: `min(k, n)`.
    pub k: usize,
    /// Brute force: score every row exactly, skip every other stage.
    pub exact: bool,
    /// Bits per query level in the Tier1 estimate.
    pub query_bits: u8,
    /// Partitions always probed.
    pub nprobe: usize,
    /// Most extra partitions centroid expansion may open (0 when it is off).
    pub extra_probes: usize,
    /// Expansion opens a partition if its squared centroid distance is
    /// within `(1 + expand_ratio)` of the nearest one's.
    pub expand_ratio: f32,
    /// Tier1 survivors handed to Tier2 (`k..=n`).
    pub candidates: usize,
    /// Weight of the estimated inner product in a Tier1 score.
    pub weight: f32,
    /// Rescoring skips a survivor whose estimate plus `bound_margin` times
    /// its error factor cannot reach the top-k; `None` rescores them all.
    pub bound_margin: Option<f32>,
    /// A scan of at least this many rows splits over the pool
    /// (`usize::MAX`: never).
    pub split_from_rows: usize,
    /// A filter masks rows: routing opens partitions until enough matching
    /// rows are seen ([`filter_need`]), and a query answers by brute force
    /// over the matching rows when that is cheaper ([`filter_exact`]).
    pub filtered: bool,
    /// Tier1 scans the spilled entries of the probed partitions (where the
    /// file has them; blueprint 3.4): not when the plan may probe more than
    /// one partition in [`SPILL_PROBE_SHARE`].
    pub spill: bool,
}

/// Whether a plan probing `nprobe` partitions and up to `extra_probes` more
/// of `parts` scans spilled entries.
pub fn spills(nprobe: usize, extra_probes: usize, parts: usize) -> bool {
    (nprobe + extra_probes).saturating_mul(SPILL_PROBE_SHARE) <= parts
}

/// A plan that may probe more than one partition in this many scans no
/// spilled entries. Where a query needs a large share of the partitions
/// the cells barely tell near from far, most rows are near a second
/// centroid, and the entries of the partitions it opens are as many again
/// for little more coverage: on 100k Gaussian rows (632 partitions,
/// 416-560 probed) scanning them took the calibrated targets 0.9 to 0.99
/// from 977-289 down to 733-229 QPS; on the hard synthetic 100k set (245
/// probed at 0.99) 1,985 down to 1,672. On debian-minilm-384 the
/// calibrated 0.99 probes 47 of 490 partitions, and the entries took it
/// from 9.1k to 11.4k QPS.
pub const SPILL_PROBE_SHARE: usize = 4;

impl QueryPlan {
    /// The plan for `params` on an index of `n` rows in `partitions`
    /// partitions. `split_from_rows` is where a single query's scans start
    /// to split over the pool (`usize::MAX` keeps them inline).
    ///
    /// Effort knobs left at 0 come from the index's `calibration` for the
    /// query's `target_recall` (the first calibrated target at or above
    /// it), else from the fixed rules below. A target above the highest
    /// calibrated one, or one no approximate setting reached at
    /// calibration, is answered exactly unless an effort knob is set.
    /// `spill` says whether the query may scan the index's spilled entries
    /// (it has some, and no sparse mask rules them out): the plan scans
    /// them if it probes few enough partitions ([`SPILL_PROBE_SHARE`]), and
    /// a query that may not takes the calibration's unspilled points.
    pub fn new(
        params: &SearchParams,
        n: usize,
        partitions: usize,
        metric: Metric,
        split_from_rows: usize,
        calibration: Option<&Calibration>,
        spill: bool,
    ) -> Result<Self> {
        params.validate()?;
        let parts = partitions.max(1);
        let target = params.target_recall;
        let point = calibration.and_then(|c| c.point_for(target, spill).map(|p| (p, c.k)));
        let explicit = params.nprobe != 0
            || params.candidates != 0
            || params.expand_probes != 0
            || params.expand_ratio != 0.0;
        // Beyond what calibration measured (or 1 on an uncalibrated index),
        // only brute force is known to deliver.
        let beyond = match calibration {
            Some(_) => point.is_none_or(|(p, _)| p.exact),
            None => target >= 1.0,
        };
        let exact = params.exact || (!explicit && beyond);
        // The calibrated point, when the plan takes anything from it.
        let cal: Option<&CalibrationPoint> = point.map(|(p, _)| p).filter(|p| !p.exact);
        let nprobe = match (params.nprobe, cal) {
            (0, Some(p)) => p.nprobe,
            (0, None) => auto_nprobe(parts),
            (m, _) => m,
        }
        .clamp(1, parts);
        let expand_ratio = match (params.expand_ratio, cal) {
            (r, _) if r != 0.0 => r,
            (_, Some(p)) => p.expand_ratio,
            _ => DEFAULT_EXPAND_RATIO,
        };
        // A calibrated cap goes with the calibrated `nprobe` only.
        let extra_probes = match (params.expansion, params.expand_probes, cal) {
            (false, _, _) => 0,
            (true, 0, Some(p)) if params.nprobe == 0 => p.expand_probes,
            (true, 0, _) => auto_expand_probes(nprobe),
            (true, e, _) => e,
        }
        .min(parts - nprobe);
        let candidates = match (params.candidates, point) {
            (0, Some((p, cal_k))) if !p.exact => scale_candidates(p.candidates, params.k, cal_k),
            (0, _) => auto_candidates(params.k),
            (c, _) => c,
        };
        let weight = metric.estimate_weight();
        // The calibrated bound goes with the calibrated settings only.
        let error_scale = match (explicit, cal) {
            (false, Some(p)) => p.error_scale,
            _ => 1.0,
        };
        Ok(QueryPlan {
            k: params.k.min(n),
            exact,
            query_bits: params.query_bits,
            nprobe,
            extra_probes,
            expand_ratio,
            candidates: candidates.max(params.k).min(n),
            weight,
            bound_margin: params
                .expansion
                .then_some(weight * params.epsilon * error_scale),
            split_from_rows,
            filtered: false,
            spill: spill && spills(nprobe, extra_probes, parts),
        })
    }

    /// This plan for a stack of files holding `growth` times the rows its
    /// calibration was measured on (a live collection's segments sharing
    /// one set of partitions; `n` rows in all may be returned): an
    /// automatic survivor count grows in proportion, since the same recall
    /// needs the same fraction of the probed rows. An explicit count is
    /// kept. On debian-minilm-384 (384-d) growing it changed nothing (the
    /// estimates rank the true neighbours high enough); on 16-d clustered
    /// rows, where 1-bit estimates are coarse, 25% more rows than
    /// calibrated cut recall at target 0.99 from 0.993 to 0.969 without it
    /// (0.9945 with 2.5x the survivors).
    pub fn grown(mut self, params: &SearchParams, growth: f64, n: usize) -> Self {
        if growth > 1.0 && params.candidates == 0 && !self.exact {
            let c = (self.candidates as f64 * growth).ceil() as usize;
            self.candidates = c.max(self.k).min(n);
        }
        self
    }

    /// Partitions routing may choose at most.
    pub fn max_probes(&self) -> usize {
        self.nprobe + self.extra_probes
    }

    /// Whether a scan over `rows` rows splits over the pool.
    pub fn splits(&self, rows: usize) -> bool {
        rows >= self.split_from_rows
    }
}

/// How many matching rows a filtered query's partitions must hold: the
/// rows the unfiltered plan would open (`rows`) times `selectivity^0.5`
/// (the fraction of rows the filter allows), at least `k`. The matching
/// rows form a sparser index of `selectivity * n` rows, and an IVF index
/// of `m` rows needs about `sqrt(m)` of them scanned for a fixed recall
/// (partitions grow as `sqrt(m)`); routing also takes at least as many
/// partitions with a match as the unfiltered plan, so a filter correlated
/// with the query (its matches are the query's neighbourhood) still opens
/// the neighbourhood. See blueprint section 11.
pub fn filter_need(rows: usize, selectivity: f64, k: usize) -> usize {
    ((rows as f64 * selectivity.clamp(0.0, 1.0).powf(FILTER_NEED_EXPONENT)).ceil() as usize).max(k)
}

/// How much wider a filtered query's plan gets (probes and survivors)
/// when the nearest partition holding a match lies `d2 / nearest` times
/// farther (squared distances) than the nearest partition: 1 when the
/// filter's rows are around the query, up to [`MAX_FAR_FACTOR`] when they
/// are far away. A query far from the rows it may return is an outlier to
/// them: many partitions lie at about the same distance, and 1-bit
/// estimates err in proportion to the query's distance from the partition
/// centroid (`rescore`'s bound). On clustered data with the filter the
/// half of the clusters farthest from the query, recall@10 was 0.58 at
/// the calibrated plan and 0.98 at 4x the probes and survivors.
pub fn far_factor(d2: f32, nearest: f32) -> f32 {
    if nearest > 0.0 && d2.is_finite() {
        (d2 / nearest).clamp(1.0, MAX_FAR_FACTOR)
    } else {
        1.0
    }
}

/// How much wider a filtered query's plan gets when its neighbourhood
/// holds a `local` share of matches against the filter's `selectivity`
/// overall: 1 at or above it (correlated or uncorrelated filters), up to
/// [`MAX_FAR_FACTOR`] when the neighbourhood holds none (the matches lie
/// elsewhere: an anti-correlated filter, whose nearest matching partition
/// may still border the query's, so [`far_factor`] does not see it).
pub fn sparse_factor(local: f64, selectivity: f64) -> f32 {
    if local >= selectivity {
        1.0
    } else if local <= 0.0 {
        MAX_FAR_FACTOR
    } else {
        ((selectivity / local) as f32).clamp(1.0, MAX_FAR_FACTOR)
    }
}

/// From this [`sparse_factor`] on, a routed filtered query wants as many
/// matching rows as the rows its (widened) probes hold, not
/// `selectivity^0.5` of them: its neighbourhood is short of matches beyond
/// chance (an uncorrelated filter's ~1,100 neighbouring rows at
/// selectivity 0.1 vary by about a tenth; requiring all of them there cost
/// 30% of those queries' speed), so the matches it needs lie elsewhere.
/// On debian with the half of the rows farthest from the query as the
/// filter, recall@10 went from 0.942 to 0.957 with it (probes widened by
/// the factor squared).
pub const SPARSE_CHANCE: f32 = 1.5;

/// The most [`far_factor`] widens a plan.
pub const MAX_FAR_FACTOR: f32 = 8.0;

/// The exponent of [`filter_need`].
pub const FILTER_NEED_EXPONENT: f64 = 0.5;

/// Rows of Tier1 codes that scoring one row exactly costs: `4 dim` bytes
/// read at random against `dim / 8` codes and 12 bytes of factors
/// streamed (25 at 384-d). On debian-minilm-384 an exact row took about
/// 100 ns (610 matching rows: 60 us of a 144 us query) where Tier1 streams
/// a row in about 4 ns.
pub fn exact_row_cost(dim: usize) -> usize {
    (32 * dim / (dim + 96)).max(4)
}

/// A filtered query may scan every code block holding a match (no
/// routing, so no match is missed) when that reads at most this many
/// times the rows the unfiltered plan would.
pub const FULL_SCAN_BUDGET: usize = 2;

/// How a filtered query is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilteredPath {
    /// Score every matching row exactly.
    Exact,
    /// Tier1 over every code block holding a match, in every partition.
    Scan,
    /// Route over the partitions holding a match (`Router::route_filtered`).
    Routed,
}

/// The cheapest way to answer a filtered query over `matching` rows in
/// the code blocks `blocks()` counts, when the unfiltered plan reads
/// `routed_rows()` rows (at most `most`) and keeps `candidates` survivors;
/// both counts are asked for only when a full scan might pay. Costs in
/// rows of Tier1 codes.
pub fn filtered_path(
    matching: usize,
    blocks: impl FnOnce() -> BlockRuns,
    routed_rows: impl FnOnce() -> usize,
    most: usize,
    candidates: usize,
    dim: usize,
) -> FilteredPath {
    if matching <= candidates {
        return FilteredPath::Exact;
    }
    // A block holds at most 8 matches: at least matching / 8 blocks.
    let least = matching.div_ceil(BLOCK) * BLOCK;
    if least <= FULL_SCAN_BUDGET.saturating_mul(most) {
        // Blocks first: counting them reads a byte per 8 rows, routing
        // ranks every partition.
        let blocks = blocks();
        let scanned = blocks.blocks.saturating_mul(BLOCK);
        if scanned <= FULL_SCAN_BUDGET.saturating_mul(most)
            && scanned <= FULL_SCAN_BUDGET.saturating_mul(routed_rows())
        {
            return exact_or_scan(matching, blocks, candidates, dim).0;
        }
    }
    FilteredPath::Routed
}

/// Brute force over `matching` rows, or Tier1 over the code blocks
/// holding them and rescoring `candidates` survivors (about half are
/// skipped by the bound), whichever costs less, with its cost in rows of
/// Tier1 codes. Each run of blocks is a jump to lines not in cache, which
/// costs about what scoring a row exactly does (as in [`tier1_cost`]):
/// costed by their rows alone, scattered matches (0.1% and 1% filters at
/// random on the hard synthetic 1M x 384 set, one or two matches per run)
/// were scanned at 2.1 and 1.4 times brute force's time.
fn exact_or_scan(
    matching: usize,
    blocks: BlockRuns,
    candidates: usize,
    dim: usize,
) -> (FilteredPath, usize) {
    let per_exact = exact_row_cost(dim);
    let exact = matching.saturating_mul(per_exact);
    let scan = blocks
        .blocks
        .saturating_mul(BLOCK)
        .saturating_add(blocks.runs.saturating_mul(per_exact))
        .saturating_add(candidates.saturating_mul(per_exact) / 2);
    if exact <= scan {
        (FilteredPath::Exact, exact)
    } else {
        (FilteredPath::Scan, scan)
    }
}

/// From this [`FilteredRoute::far_k`](crate::core::router::FilteredRoute)
/// on, a routed filtered query is *scattered*: fewer than `k` matches lie
/// around it, and the rest of its answer is somewhere among partitions at
/// about the same distance (on well-separated clusters, every other
/// cluster), which centroid distance alone cannot order. It is then routed
/// by where its matches are expected to be
/// (`Router::route_scattered`), [`SCATTERED_MATCHES`] per result.
pub const SCATTERED_FAR: f32 = 1.5;

/// Matches a scattered query's partitions hold at least, per result
/// asked for ([`scattered_need`]). On the clustered 1M x 384 set at 1%
/// uncorrelated filters, 30 per result gave recall@10 0.914, 100 gave
/// 0.962; reading every match (the rule before) gave 0.976 at 2.3 times
/// the time.
pub const SCATTERED_MATCHES: usize = 100;

/// Matches the partitions of a scattered query must hold: at least
/// [`SCATTERED_MATCHES`] per result, and at least the rows its plan's
/// probes widened by the route's `far` factor (squared, as
/// `Router::route_filtered` widens them) would open, at `per_partition`
/// rows each. A query far from every match (anti-correlated filters)
/// finds its answer spread over more partitions than the matches per
/// result reach: on the clustered 1M set at 1% anti-correlated, the
/// matches alone gave recall@10 0.81, the widened rows 0.956.
pub fn scattered_need(plan: &QueryPlan, far: f32, per_partition: usize) -> usize {
    let wide = (far * far).min(MAX_FAR_FACTOR);
    let rows = ((plan.nprobe as f32 * wide).ceil() as usize).saturating_mul(per_partition);
    SCATTERED_MATCHES.saturating_mul(plan.k).max(rows)
}

/// What a filtered route opens: `partitions` partitions of `rows` rows,
/// `matches` of them allowed.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    pub partitions: usize,
    pub rows: usize,
    pub matches: usize,
}

/// Whether a routed filtered query answers by brute force over its
/// `matching` rows rather than scanning what its route `opened` and
/// rescoring `candidates` survivors.
pub fn filter_exact(matching: usize, opened: Opened, candidates: usize, dim: usize) -> bool {
    let per_exact = exact_row_cost(dim);
    matching.saturating_mul(per_exact)
        <= tier1_cost(opened, dim).saturating_add(candidates.saturating_mul(per_exact) / 2)
}

/// What Tier1 over `opened` costs, in rows of codes streamed: the rows,
/// or, under a selective mask, one jump per match, which costs about what
/// scoring a row exactly does (the scan skips the blocks without a match,
/// and each block it reads is a new place in memory); plus, per
/// partition, its centroid's exact distance (a row's worth of floats).
/// On the clustered 1M set at 1% filters, Tier1 took about 170 ns per
/// block holding a match and brute force about 180 ns per row; counting
/// every row of the opened partitions sent one scattered query in six to
/// brute force, at 4 times its routed time; without the partitions, a
/// 0.1% filter's route over ~1,000 partitions holding a match or two each
/// was taken at 1.4 times brute force's time.
pub fn tier1_cost(opened: Opened, dim: usize) -> usize {
    let per_exact = exact_row_cost(dim);
    let scan = opened.rows.min(opened.matches.saturating_mul(per_exact));
    scan.saturating_add(opened.partitions.saturating_mul(per_exact))
}

/// Expansion ratio of an uncalibrated index (version 1 files, or builds
/// with `calibrate = false`).
pub const DEFAULT_EXPAND_RATIO: f32 = 0.7;

/// Calibrated survivors for `k` results: calibration ran at `cal_k`; more
/// results need proportionally more survivors, fewer keep the count.
pub fn scale_candidates(calibrated: usize, k: usize, cal_k: usize) -> usize {
    calibrated.saturating_mul(k.max(cal_k)) / cal_k.max(1)
}

/// Default Tier1 survivors of an uncalibrated index: `max(20 k, 200)`.
/// The error bound, not this cap, decides how many are rescored (about 60
/// for k = 10 on debian-minilm-384, where 100 would do and save ~15% of the
/// time); on harder data (overlapping clusters) every survivor gets
/// rescored and recall needs the larger cap.
pub fn auto_candidates(k: usize) -> usize {
    k.saturating_mul(20).max(200)
}

/// Default probes of an uncalibrated index before expansion: 1/10 of the
/// partitions, at least 8.
pub fn auto_nprobe(partitions: usize) -> usize {
    (partitions / 10).max(8)
}

/// Default cap on expansion: twice the base probes, so the slowest query
/// scans at most three times the rows of the fastest (flat p99). Uncapped
/// (up to half the partitions), queries far from every centroid opened
/// them all: p99/p50 2.9 on debian-minilm-384 and 40% of the rows of the
/// 1M synthetic set.
pub fn auto_expand_probes(nprobe: usize) -> usize {
    nprobe.saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(partitions: usize, rows: usize, matches: usize) -> Opened {
        Opened {
            partitions,
            rows,
            matches,
        }
    }

    #[test]
    fn tier1_costs_the_rows_or_one_jump_per_sparse_match() {
        let per = exact_row_cost(384);
        // A dense mask: the rows are streamed.
        assert_eq!(tier1_cost(opened(0, 10_000, 5_000), 384), 10_000);
        // A 1% mask: one jump per match.
        assert_eq!(tier1_cost(opened(0, 100_000, 1_000), 384), 1_000 * per);
        // Each partition adds its centroid's exact distance.
        assert_eq!(tier1_cost(opened(3, 10_000, 5_000), 384), 10_000 + 3 * per);
    }

    #[test]
    fn a_routed_query_opening_a_tenth_of_sparse_matches_is_not_brute_forced() {
        // 10k matches at 1% of 1M rows; the route opened 200 partitions,
        // 100k rows holding 1k of them: Tier1 reads 1k blocks, brute force
        // 10k rows.
        assert!(!filter_exact(10_000, opened(200, 100_000, 1_000), 100, 384));
        // The route holds every match: brute force reads the same rows
        // without the survivors' rescoring.
        assert!(filter_exact(
            10_000,
            opened(2_000, 1_000_000, 10_000),
            100,
            384
        ));
        // A rare filter's matches alone in their partitions: a partition
        // per match costs what brute force costs without them.
        assert!(filter_exact(1_000, opened(1_000, 500_000, 1_000), 100, 384));
    }

    fn runs(blocks: usize, runs: usize) -> impl FnOnce() -> BlockRuns {
        move || BlockRuns { blocks, runs }
    }

    #[test]
    fn a_full_scan_is_considered_only_within_the_budget() {
        let asked = std::cell::Cell::new(false);
        // Matches too many for twice the most rows routing could read:
        // the unfiltered route is never selected.
        let path = filtered_path(
            50_000,
            runs(10_000, 10),
            || {
                asked.set(true);
                1_000
            },
            20_000,
            100,
            384,
        );
        assert_eq!(path, FilteredPath::Routed);
        assert!(!asked.get());
        // Within it, the rows routing really reads decide.
        assert_eq!(
            filtered_path(6_000, runs(4_000, 10), || 13_000, 40_000, 100, 384),
            FilteredPath::Routed
        );
        assert_eq!(
            filtered_path(6_000, runs(1_500, 10), || 13_000, 40_000, 100, 384),
            FilteredPath::Scan
        );
    }

    #[test]
    fn scattered_blocks_cost_a_jump_each() {
        // 1,004 matches, one per block: as rows the scan looks cheaper
        // than scoring them (8k + 6k against 25k), as jumps it is not.
        assert_eq!(
            filtered_path(1_004, runs(1_004, 1_004), || 150_000, 150_000, 500, 384),
            FilteredPath::Exact
        );
        // The same blocks in a few runs (a compact filter) stream.
        assert_eq!(
            filtered_path(1_004, runs(1_004, 20), || 150_000, 150_000, 500, 384),
            FilteredPath::Scan
        );
    }
}
