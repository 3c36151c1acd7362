//! Routing for filtered queries: [`Router::route_filtered`] and
//! [`Router::route_matching`] choose among the partitions that hold a
//! matching row (counted exactly from the stack's mask).
use std::sync::OnceLock;

use super::Router;
use crate::core::plan::{
    far_factor, filter_need, sparse_factor, QueryPlan, MAX_FAR_FACTOR, SCATTERED_FAR, SPARSE_CHANCE,
};
use crate::core::query::PreparedQuery;
use crate::core::topk::{best_first, Scored};

/// Partitions, best first, in which [`Router::route_filtered`] looks for
/// the first `k` matches of a scattered query before sorting more.
const SCATTERED_PREFIX: usize = 64;

/// A non-scattered filtered query takes the partitions beyond its probes
/// by where matches are expected ([`Router::take_expected`]) when its
/// probes hold less than `1 / NEAR_SHARE` of the matches it needs. On the
/// clustered 1M set at 1% uncorrelated filters, taking them by centroid
/// distance gave recall@10 0.943 (42 of 200 queries are not scattered;
/// some found their matches in cells mixing clusters and reached 0.3 to
/// 0.9), by expected distance 0.967 at 6% more time; at 10% and 50% the
/// probes hold enough (unchanged), and debian-minilm-384's cells were
/// unchanged in recall and time within noise.
const NEAR_SHARE: usize = 4;

/// What [`Router::take_filtered`] took.
struct Taken {
    /// Whether the partitions taken hold the matches the plan needs.
    done: bool,
    route: FilteredRoute,
    /// The first `probes` partitions taken are the plan's probes (the
    /// rest were taken for their matches).
    probes: usize,
    /// Matches in the probes.
    near: usize,
    /// Matches the plan needs.
    need: usize,
}

/// What routing a filtered query found out about where its matches lie.
#[derive(Debug, Clone, Copy)]
pub struct FilteredRoute {
    /// [`far_factor`] of the nearest partition holding a match (the
    /// larger [`sparse_factor`] when its neighbourhood is short of them).
    pub far: f32,
    /// [`far_factor`] of the partition, in routing order, that brings the
    /// matches to `k` (infinite when all of them together hold fewer). Far
    /// above 1, the query's own neighbourhood holds fewer than `k` matches
    /// and the rest of its answer lies away from it, where the distance to
    /// a centroid no longer tells which partitions hold it.
    pub far_k: f32,
    /// Whether the query is scattered (`far_k` above [`SCATTERED_FAR`]):
    /// it is routed again by `Router::route_scattered`, and the route
    /// `Router::route_filtered` left may be empty.
    pub scattered: bool,
}

impl Router<'_> {
    /// [`Router::route`] for a filtered query: partitions best first,
    /// skipping those without a matching row, until they are at least as
    /// many as the plan's probes and expansion choose among the partitions
    /// holding a match and hold at least [`filter_need`] matching rows.
    /// Matches are counted exactly (a range popcount of the mask per
    /// partition). The ranking is sorted in growing prefixes, so a query
    /// that finds its rows near the top does not sort every partition.
    ///
    /// The partitions are left in ranking order with ranking scores:
    /// [`Router::finish`] gives them their exact ones. Those taken for
    /// their matches beyond the probes come by expected distance instead
    /// when the probes hold few of them (`NEAR_SHARE`). A query found
    /// scattered in the first `SCATTERED_PREFIX` partitions returns at
    /// once, its route left to [`Router::route_scattered`].
    ///
    /// Returns how much farther the nearest matching partition lies than
    /// the nearest partition ([`far_factor`]): a query far from every
    /// matching row (a filter anti-correlated with it) is an outlier to
    /// the matching rows, and takes that many times the probes here and
    /// the survivors in Tier1; and the same factor for the partition that
    /// brings the matches to `k` ([`FilteredRoute::far_k`]).
    pub fn route_filtered(
        &self,
        q: &PreparedQuery,
        plan: &QueryPlan,
        ranked: &mut Vec<Scored>,
        order: &mut Vec<Scored>,
    ) -> FilteredRoute {
        let total = self.centroids.len();
        ranked.clear();
        self.centroids.rank_all(self.view.kernels, q, ranked);
        let nearest = ranked
            .iter()
            .map(|r| -r.score)
            .fold(f32::INFINITY, f32::min);
        let mut sorted = (4 * plan.max_probes()).max(64).min(total);
        // A scattered query shows in the first few partitions: look there
        // before sorting the prefix the plan takes from (or sort that
        // prefix at once when it is every partition).
        let first = if sorted == total {
            total
        } else {
            SCATTERED_PREFIX.min(total)
        };
        sort_prefix(ranked, first);
        let prefix = &ranked[..first.min(SCATTERED_PREFIX)];
        if let Some(r) = self.scattered(prefix, plan, nearest) {
            // Routed again by `route_scattered`: no plan to take here.
            return r;
        }
        let mut taken;
        loop {
            if sorted > first {
                sort_prefix(ranked, sorted);
            }
            taken = self.take_filtered(&ranked[..sorted], plan, nearest, order);
            if taken.done || sorted == total {
                break;
            }
            sorted = (4 * sorted).min(total);
        }
        if !taken.route.scattered {
            // The matches the plan needs beyond its probes' are looked
            // for where they are expected (as for a scattered query), when
            // they are most of them: the probes' neighbours by centroid
            // distance can be cells that mix clusters (short centroids,
            // near every query), whose rows are no nearer than anyone's.
            if taken.near.saturating_mul(NEAR_SHARE) < taken.need {
                order.truncate(taken.probes);
                self.take_expected(ranked, taken.need, order);
            }
        }
        taken.route
    }

    /// The route of a query whose first `k` matches, in the partitions of
    /// `prefix` (best first), end in a partition more than
    /// [`SCATTERED_FAR`] times farther than the nearest one (at squared
    /// distance `nearest`): a scattered query, which `route_scattered`
    /// routes again whatever this route would take. `None` when the
    /// prefix shows it is not one (or holds fewer than `k` matches).
    fn scattered(
        &self,
        prefix: &[Scored],
        plan: &QueryPlan,
        nearest: f32,
    ) -> Option<FilteredRoute> {
        let mut have = 0;
        let mut far = None;
        for r in prefix {
            let a = self.matches_in(r.row as usize);
            if a == 0 {
                continue;
            }
            let d2 = -r.score;
            let f = *far.get_or_insert_with(|| far_factor(d2, nearest));
            have += a;
            if have >= plan.k {
                let far_k = far_factor(d2, nearest);
                if far_k <= SCATTERED_FAR {
                    return None;
                }
                let far = f.max(self.sparse(prefix, plan));
                return Some(FilteredRoute {
                    far,
                    far_k,
                    scattered: true,
                });
            }
        }
        None
    }

    /// [`sparse_factor`] of the query's own neighbourhood: the first
    /// `nprobe` partitions of `ranked` (best first).
    fn sparse(&self, ranked: &[Scored], plan: &QueryPlan) -> f32 {
        let selectivity = self.stack.allowed() as f64 / self.stack.len().max(1) as f64;
        // The share of matches in the query's own neighbourhood (the
        // partitions the unfiltered plan probes first): far below the
        // filter's share, the matches lie away from the query.
        let near = &ranked[..plan.nprobe.min(ranked.len())];
        let (near_allowed, near_rows) = near.iter().fold((0, 0), |(a, r), p| {
            let p = p.row as usize;
            (a + self.matches_in(p), r + self.stack.rows_in_partition(p))
        });
        sparse_factor(near_allowed as f64 / near_rows.max(1) as f64, selectivity)
    }

    /// The route of a scattered query ([`FilteredRoute::far_k`] above
    /// [`SCATTERED_FAR`]): the partitions
    /// holding a match, by the expected squared distance of their nearest
    /// match (`nearest_match_d2`), until they hold `need` matches,
    /// unscored and unsorted ([`Router::finish`] does both). `ranked` is
    /// every partition with its routing score, as
    /// [`Router::route_filtered`] left it (ranking again was a tenth of
    /// such a query).
    /// Centroid distance alone ranks badly here: every partition is far,
    /// and a far centroid that is short (a cell spread over several
    /// clusters) is near the query while its rows are not. On the clustered
    /// 1M x 384 set (2000 partitions), with 100 matches per result,
    /// uncorrelated 1% filters reached recall@10 0.80 by centroid distance
    /// and 0.96 by this ranking.
    pub fn route_scattered(&self, ranked: &[Scored], need: usize, order: &mut Vec<Scored>) {
        order.clear();
        self.take_expected(ranked, need, order);
    }

    /// Appends to `order` the partitions of `ranked` holding a match that
    /// `order` lacks, by the expected squared distance of their nearest
    /// match ([`nearest_match_d2`]), until `order` holds `need` matches;
    /// the appended ones unscored and unsorted.
    fn take_expected(&self, ranked: &[Scored], need: usize, order: &mut Vec<Scored>) {
        // Every partition's matches are asked for below.
        self.count_all_matches();
        let spread = self.spread();
        let dim = self.view.dim;
        let start = order.len();
        let have: usize = order.iter().map(|r| self.matches_in(r.row as usize)).sum();
        if have >= need {
            return;
        }
        for r in ranked {
            let p = r.row as usize;
            let m = self.matches_in(p);
            if m > 0 && !order[..start].iter().any(|o| o.row == r.row) {
                let d2 = nearest_match_d2(-r.score, spread[p], m, dim);
                order.push(Scored {
                    score: -d2,
                    row: r.row,
                });
            }
        }
        let rest = &mut order[start..];
        // Best first in growing prefixes, until the prefix holds `need`.
        let mut sorted = 64.min(rest.len());
        let taken = loop {
            sort_prefix(rest, sorted);
            let mut more = have;
            let enough = rest[..sorted].iter().position(|r| {
                more += self.matches_in(r.row as usize);
                more >= need
            });
            match enough {
                Some(i) => break i + 1,
                None if sorted == rest.len() => break sorted,
                None => sorted = (4 * sorted).min(rest.len()),
            }
        };
        order.truncate(start + taken);
    }

    /// Every partition holding a match, in partition order: what a full
    /// filtered scan (`FilteredPath::Scan`) reads. Returns the
    /// [`far_factor`] of the nearest of them, which widens the survivors
    /// as for a routed query.
    pub fn route_matching(&self, q: &PreparedQuery, order: &mut Vec<Scored>) -> f32 {
        order.clear();
        self.count_all_matches();
        let mut nearest = f32::INFINITY;
        self.centroids.rank(self.view.kernels, q, |p, score| {
            nearest = nearest.min(-score);
            if self.matches_in(p as usize) > 0 {
                order.push(Scored { score, row: p });
            }
        });
        let first = order.iter().map(|r| -r.score).fold(f32::INFINITY, f32::min);
        // Every one is scanned: no order needed (sorting 300 partitions
        // was 5% of a query at selectivity 0.01 on debian-minilm-384).
        for r in order.iter_mut() {
            r.score = self.route_score(&q.q, r.row as usize);
        }
        far_factor(first, nearest)
    }

    /// Takes partitions of `ranked` (best first) into `order` as
    /// [`Router::route_filtered`] says; returns whether they sufficed and
    /// the far factor. The plan's probes and expansion apply to the
    /// partitions holding a match, as if they were the index (expansion
    /// measures from the nearest of them).
    fn take_filtered(
        &self,
        ranked: &[Scored],
        plan: &QueryPlan,
        nearest: f32,
        order: &mut Vec<Scored>,
    ) -> Taken {
        order.clear();
        let selectivity = self.stack.allowed() as f64 / self.stack.len().max(1) as f64;
        let sparse = self.sparse(ranked, plan);
        let (mut rows, mut have, mut need) = (0, 0, usize::MAX);
        let (mut probed, mut near, mut done) = (0, 0, false);
        let (mut limit, mut far) = (f32::INFINITY, 1.0f32);
        let mut far_k = f32::INFINITY;
        let (mut nprobe, mut max_probes) = (plan.nprobe, plan.max_probes());
        for r in ranked {
            let p = r.row as usize;
            let a = self.matches_in(p);
            if a == 0 {
                continue;
            }
            // Routing scores are negated squared distances.
            let d2 = -r.score;
            let taken = order.len();
            if taken == 0 {
                limit = d2 * (1.0 + plan.expand_ratio);
                far = far_factor(d2, nearest).max(sparse);
                let wide = (far * far).min(MAX_FAR_FACTOR);
                nprobe = (nprobe as f32 * wide).ceil() as usize;
                max_probes = (max_probes as f32 * wide).ceil() as usize;
            }
            let probes = taken < nprobe || (taken < max_probes && d2 <= limit);
            if !probes {
                // What the plan opens is decided: enough matches?
                if need == usize::MAX {
                    let share = if sparse >= SPARSE_CHANCE {
                        1.0
                    } else {
                        selectivity
                    };
                    need = filter_need(rows, share, plan.k);
                }
                if have >= need {
                    done = true;
                    break;
                }
            }
            order.push(*r);
            if have < plan.k && have + a >= plan.k {
                far_k = far_factor(d2, nearest);
            }
            have += a;
            if probes {
                rows += self.stack.rows_in_partition(p);
                probed += 1;
                near += a;
            }
        }
        if !done {
            // Every partition taken: what they hold may have to do.
            need = need.min(filter_need(rows, selectivity, plan.k));
            done = have >= need;
        }
        Taken {
            done,
            route: FilteredRoute {
                far,
                far_k,
                scattered: far_k > SCATTERED_FAR,
            },
            probes: probed,
            near,
            need,
        }
    }
}

/// Expected squared distance from a query to the nearest of `matches` rows
/// of a partition whose centroid lies `d2` away (squared) and whose rows
/// lie `spread` from it on average (squared). A row `x = c + r` is
/// `d2 + ||r||^2 - 2 <q - c, r>` away; far from the query the residuals are
/// about orthogonal to `q - c`, so the cross term is noise of standard
/// deviation about `2 sqrt(d2 spread / dim)`, and the nearest of `m` rows
/// gains about `sqrt(2 ln m)` of it. Without that gain a partition with one
/// match ranked with one holding fifty: on the clustered 1M set,
/// anti-correlated 1% filters gave recall@10 0.937 without it, 0.976 with.
pub fn nearest_match_d2(d2: f32, spread: f32, matches: usize, dim: usize) -> f32 {
    let d2 = d2.max(0.0);
    let z = gain(matches);
    d2 + spread - z * 2.0 * (d2 * spread / dim.max(1) as f32).sqrt()
}

/// `sqrt(2 ln m)`, the nearest of `m` rows' gain in standard deviations,
/// from a table for the counts a partition usually holds (the logarithm
/// per partition was a fifth of routing a scattered query).
fn gain(m: usize) -> f32 {
    const TABLE: usize = 1024;
    static GAIN: OnceLock<Vec<f32>> = OnceLock::new();
    let z = |m: usize| {
        if m > 1 {
            (2.0 * (m as f32).ln()).sqrt()
        } else {
            0.0
        }
    };
    match GAIN.get_or_init(|| (0..TABLE).map(z).collect()).get(m) {
        Some(&g) => g,
        None => z(m),
    }
}

/// Puts the best `len` of `ranked` first, best first.
fn sort_prefix(ranked: &mut [Scored], len: usize) {
    if len < ranked.len() {
        ranked.select_nth_unstable_by(len - 1, best_first);
    }
    ranked[..len].sort_unstable_by(best_first);
}
