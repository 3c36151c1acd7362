//! Routing: which partitions a query probes, and the two numbers each probe
//! needs. Ranking all `L` partitions reads every centroid per query; in
//! float32 that is `4 L dim` bytes (376 KB for 245 x 384), which does not
//! stay in cache between queries and made routing memory-bound (over half
//! the time of a one-partition query). So [`Centroids`] keeps a per-process
//! int8 copy (a quarter of the bytes, built at open; the file is unchanged)
//! that only ranks, against the query quantized to int8 once, with an
//! integer kernel; the partitions finally probed get exact float32 scores.
//!
//! Routing for filtered queries (partitions that hold a match) is in
//! `filtered`.
mod filtered;
mod prepass;

pub use filtered::FilteredRoute;
use prepass::SignPrepass;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use super::plan::QueryPlan;
use super::query::PreparedQuery;
use super::stack::Stack;
use super::topk::{best_first, Scored, TopK};
use super::view::View;
use crate::index::build::residual_norm2;
use crate::math::int8::{
    interleave, interleave_quads, pairs, quads, quantize_i8, DotQuadsFn, LANES,
};
use crate::math::Kernels;

/// How many times the partitions it keeps routing's selection buffers
/// before cutting back ([`TopK`]).
const RANK_BUFFER: usize = 4;

/// The 1-bit pre-pass keeps `max(4 m, m + PREPASS_EXTRA)` candidates for
/// the `m` partitions a query opens, scored exactly; it runs only while
/// those are at most `1 / PREPASS_SHARE` of the partitions. Past that the
/// exact scores cost what the int8 ranking saves: on the hard synthetic 1M
/// set (2,000 partitions) 160 candidates for 40 probes made queries 6.5%
/// slower (blueprint 3.2).
const PREPASS_EXTRA: usize = 16;
const PREPASS_SHARE: usize = 32;

/// What the router keeps per process: int8 centroids with one scale each
/// (`c[p] ~= scale[p] * codes[p]`), interleaved in blocks of [`LANES`] for
/// the block kernel (as i16 pairs, or as int8 quads with their code sums
/// where the CPU has AVX-512 VNNI), and `||c_p||^2` of each exact centroid.
pub struct Centroids {
    dim: usize,
    layout: Layout,
    scales: Vec<f32>,
    norms: Vec<f32>,
    /// Mean `||x - c_p||^2` over each partition's rows, from their Tier1
    /// factors, computed the first time a scattered query asks (it reads
    /// 8 bytes per row).
    spread: OnceLock<Vec<f32>>,
    /// The 1-bit pre-pass, from [`prepass::MIN_PARTITIONS`] partitions and
    /// [`prepass::MIN_DIM`] dimensions on.
    prepass: Option<SignPrepass>,
}

/// The interleaved int8 centroids, in the layout of the kernel that reads them.
enum Layout {
    Pairs(Vec<i16>),
    Quads {
        blocks: Vec<i8>,
        /// Sum of each centroid's codes (undoes the query's +128 bias).
        sums: Vec<i32>,
        kernel: DotQuadsFn,
    },
}

impl Centroids {
    /// Quantizes `centroids` (`L x dim`, row-major) symmetrically per row.
    pub fn new(centroids: &[f32], dim: usize, kernels: &Kernels) -> Self {
        let rows = centroids.len().checked_div(dim).unwrap_or(0);
        let mut codes = Vec::with_capacity(rows * dim);
        let mut scales = Vec::with_capacity(rows);
        let mut norms = Vec::with_capacity(rows);
        let mut row = Vec::with_capacity(dim);
        for c in centroids.chunks_exact(dim.max(1)).take(rows) {
            scales.push(quantize_i8(c, &mut row));
            codes.extend_from_slice(&row);
            norms.push((kernels.dot)(c, c));
        }
        let blocks = codes.chunks(LANES * dim.max(1));
        let layout = match kernels.dot_i8_quads {
            Some(kernel) => {
                let mut out = Vec::with_capacity(rows.div_ceil(LANES) * LANES * (dim + 3));
                let mut sums = Vec::with_capacity(rows.div_ceil(LANES) * LANES);
                for block in blocks {
                    sums.extend(interleave_quads(block, dim, &mut out));
                }
                Layout::Quads {
                    blocks: out,
                    sums,
                    kernel,
                }
            }
            None => {
                let mut out = Vec::with_capacity(rows.div_ceil(LANES) * LANES * (dim + 1));
                for block in blocks {
                    interleave(block, dim, &mut out);
                }
                Layout::Pairs(out)
            }
        };
        let prepass = (rows >= prepass::MIN_PARTITIONS && dim >= prepass::MIN_DIM)
            .then(|| SignPrepass::new(&centroids[..rows * dim], dim, &norms));
        Centroids {
            dim,
            layout,
            scales,
            norms,
            spread: OnceLock::new(),
            prepass,
        }
    }

    /// Number of partitions.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    /// True for an index without partitions.
    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// Calls `f(first, dots)` for each block of [`LANES`] centroids from
    /// `first` on, with the exact integer `<q8, code_p>` of each.
    fn each_block(&self, kernels: &Kernels, q: &PreparedQuery, mut f: impl FnMut(usize, &[i32])) {
        let mut dots = [0i32; LANES];
        match &self.layout {
            Layout::Pairs(blocks) => {
                let step = pairs(self.dim) * LANES * 2;
                for (b, block) in blocks.chunks_exact(step.max(1)).enumerate() {
                    (kernels.dot_i8_block)(block, &q.q16, &mut dots);
                    f(b * LANES, &dots);
                }
            }
            Layout::Quads {
                blocks,
                sums,
                kernel,
            } => {
                let step = quads(self.dim) * LANES * 4;
                for (b, block) in blocks.chunks_exact(step.max(1)).enumerate() {
                    kernel(block, &q.qu8, &mut dots);
                    for (d, s) in dots.iter_mut().zip(&sums[b * LANES..]) {
                        *d -= 128 * s;
                    }
                    f(b * LANES, &dots);
                }
            }
        }
    }

    /// The approximate routing score of each partition, `2 <q, c_p> -
    /// ||c_p||^2 - ||q||^2` (the negated squared distance with `<q, c_p>`
    /// from the int8 copies), offered to `keep(partition, score)`.
    fn rank(&self, kernels: &Kernels, q: &PreparedQuery, mut keep: impl FnMut(u32, f32)) {
        self.each_scores(kernels, q, |first, scores| {
            for (p, &score) in (first..).zip(scores) {
                keep(p as u32, score);
            }
        });
    }

    /// Calls `f(first, scores)` for each block of [`LANES`] centroids from
    /// `first` on (the last one shorter), with their approximate routing
    /// scores, computed for the whole block in one loop the compiler
    /// vectorizes (per centroid, with a call to the caller's closure each,
    /// it was 6% of a query on the 2,000 partitions of the clustered 1M set).
    fn each_scores(&self, kernels: &Kernels, q: &PreparedQuery, mut f: impl FnMut(usize, &[f32])) {
        let len = self.len();
        let mut scores = [0f32; LANES];
        self.each_block(kernels, q, |first, dots| {
            let n = LANES.min(len - first);
            let (scales, norms) = (
                &self.scales[first..first + n],
                &self.norms[first..first + n],
            );
            for (((s, &d), &scale), &norm) in scores.iter_mut().zip(dots).zip(scales).zip(norms) {
                *s = 2.0 * (scale * q.q8_scale * d as f32) - norm - q.norm2;
            }
            f(first, &scores[..n]);
        });
    }

    /// Appends the approximate routing score of every partition to `out`.
    fn rank_all(&self, kernels: &Kernels, q: &PreparedQuery, out: &mut Vec<Scored>) {
        self.rank(kernels, q, |row, score| out.push(Scored { score, row }));
    }

    /// The `m` best partitions by approximate routing score into `out`
    /// (best first), without keeping the others: a buffered selection
    /// ([`TopK`], a buffer of [`RANK_BUFFER`] times `m`) drops scores below
    /// the `m`-th best seen so far on arrival. Ranking 2000 partitions and
    /// selecting among all of them was 7% of a query on the 1M x 384 set;
    /// a buffer of `2 m` `Scored` pairs compared by closure took 14
    /// selections and 11k instructions per debian query at target 0.95.
    fn rank_top(&self, kernels: &Kernels, q: &PreparedQuery, m: usize, out: &mut Vec<Scored>) {
        out.clear();
        if m == 0 {
            return;
        }
        let mut top = TopK::default();
        top.reset_buffered(m, RANK_BUFFER);
        self.each_scores(kernels, q, |first, scores| {
            for (row, &score) in (first as u32..).zip(scores) {
                // Most centroids fall below the threshold once it is set:
                // a branch predicted not taken, inside `push`.
                top.push(score, row);
            }
        });
        top.drain_sorted(out);
    }
}

/// What Tier1 and rescoring need to know about one probed partition.
#[derive(Debug, Clone, Copy, Default)]
pub struct Probe {
    /// The partition.
    pub partition: usize,
    /// Constant part of its estimates: `<q, anchor>` (ip) or
    /// `-||q - anchor||^2` (l2).
    pub offset: f32,
    /// `||q - anchor||`, which scales the error bound.
    pub centered_norm: f32,
}

/// The router of one search: the mapped centroids and the per-process tables.
pub struct Router<'a> {
    /// The first file of the stack: its centroids are every file's.
    view: &'a View<'a>,
    stack: &'a Stack<'a>,
    centroids: &'a Centroids,
    /// Allowed rows of each partition in the stack, counted (a range
    /// popcount) the first time a filtered route asks, once per query: a
    /// rare filter on 2,000 partitions asked for most of them several
    /// times (11% of such a query). `u32::MAX` until counted.
    matches: OnceLock<Vec<AtomicU32>>,
}

impl<'a> Router<'a> {
    /// Routes over the partitions of `stack` with the tables built for its
    /// first file.
    pub fn new(stack: &'a Stack<'a>, centroids: &'a Centroids) -> Self {
        Router {
            view: stack.first(),
            stack,
            centroids,
            matches: OnceLock::new(),
        }
    }

    /// Mean squared distance of each partition's rows (in the first file)
    /// to its centroid; zeros when the codes are not residuals from it.
    fn spread(&self) -> &[f32] {
        self.centroids.spread.get_or_init(|| {
            let v = self.view;
            (0..v.partitions())
                .map(|p| {
                    let (a, b) = v.rows_of(p);
                    if a == b || !v.centered {
                        return 0.0;
                    }
                    let sum: f64 = (a..b)
                        .map(|r| f64::from(residual_norm2(v.scale[r], v.error[r], v.dim)))
                        .sum();
                    (sum / (b - a) as f64) as f32
                })
                .collect()
        })
    }

    /// Rows of partition `p` a query may return, in every file (counted
    /// once per query).
    pub fn matches_in(&self, p: usize) -> usize {
        let counts = self.match_counts();
        let known = counts[p].load(Ordering::Relaxed);
        if known != u32::MAX {
            return known as usize;
        }
        let n = self.stack.allowed_in(p);
        counts[p].store(n as u32, Ordering::Relaxed);
        n
    }

    /// Counts the matches of every partition at once (one pass over the
    /// mask), for routes that ask about all of them.
    pub fn count_all_matches(&self) {
        let all = self.stack.allowed_per_partition();
        for (c, n) in self.match_counts().iter().zip(all) {
            c.store(n, Ordering::Relaxed);
        }
    }

    /// The per-query cache of [`Router::matches_in`].
    fn match_counts(&self) -> &[AtomicU32] {
        self.matches.get_or_init(|| {
            (0..self.view.partitions())
                .map(|_| AtomicU32::new(u32::MAX))
                .collect()
        })
    }

    /// Exact routing score of partition `p`: `-||q - c_p||^2`, whatever
    /// the index's metric. Partitions are the L2 cells of k-means (every row
    /// went to its L2-nearest centroid), so a query's neighbours lie in the
    /// cells of its L2-nearest centroids. Routing cosine and ip indexes by
    /// `<q, c_p>` instead favoured long centroids over near ones: on a
    /// well-clustered 1M x 384 set (2000 partitions, centroid norms from
    /// 0.18 to 1) the top 100 partitions by `<q, c_p>` held 0.956 of the
    /// true top ten, the top 10 by distance all of it.
    fn route_score(&self, q: &[f32], p: usize) -> f32 {
        -(self.view.kernels.l2sq)(q, self.view.centroid(p))
    }

    /// Chooses the partitions to probe, best routing score first, into
    /// `order` (`row` = partition, `score` = its exact routing score): the
    /// plan's `nprobe` best, plus up to `extra_probes` of the next best
    /// whose squared centroid distance is within `(1 + expand_ratio)` of
    /// the best one's (centroid expansion), plus, if those hold fewer than
    /// `k` rows, the next best until they hold `k` (so a query never comes
    /// back short). Ranking uses the int8 copy; selection is linear; only
    /// the chosen partitions get exact scores and are sorted.
    pub fn route(&self, q: &PreparedQuery, plan: &QueryPlan, order: &mut Vec<Scored>) {
        self.select(q, plan, order);
        self.top_up(q, order, plan.k);
        self.finish(q, order);
    }

    /// The partitions the unfiltered `plan` probes (the `nprobe` best and
    /// the expansion's), unscored and unsorted: [`Router::route`] without
    /// its top-up, which a filtered query's planner asks to count the rows
    /// the unfiltered query reads (calibrated plans with many expansion
    /// probes open a third of them on debian-minilm-384, where a guess of
    /// half let full scans of 10% filters pass at 1.5 times the cost).
    pub fn select(&self, q: &PreparedQuery, plan: &QueryPlan, order: &mut Vec<Scored>) {
        let m = plan.max_probes().min(self.centroids.len());
        let wide = (4 * m).max(m + PREPASS_EXTRA);
        match &self.centroids.prepass {
            // The best `m` of the pre-pass's best `wide`, by exact score.
            Some(pp) if wide.saturating_mul(PREPASS_SHARE) <= self.centroids.len() => {
                pp.candidates(self.view.kernels, q, wide, order);
                for r in order.iter_mut() {
                    r.score = self.route_score(&q.q, r.row as usize);
                }
                if order.len() > m {
                    order.select_nth_unstable_by(m - 1, best_first);
                    order.truncate(m);
                }
            }
            _ => self.centroids.rank_top(self.view.kernels, q, m, order),
        }
        let nprobe = plan.nprobe;
        if plan.extra_probes > 0 && order.len() > nprobe {
            // The `nprobe` best first (the rest stay behind them, unordered).
            order.select_nth_unstable_by(nprobe - 1, best_first);
            // Routing scores are negated squared distances.
            let d2 = |r: &Scored| -r.score;
            let first = order[..nprobe].iter().copied().min_by(best_first);
            let limit = first.map_or(0.0, |r| d2(&r)) * (1.0 + plan.expand_ratio);
            let mut i = 0;
            order.retain(|r| {
                i += 1;
                i <= nprobe || d2(r) <= limit
            });
        }
    }

    /// Gives the partitions chosen into `order` their exact routing scores
    /// (each probe derives its constants from it) and sorts them best
    /// first. Filtered routes leave this to the caller, which skips it
    /// when the query goes to brute force instead (a rare scattered
    /// filter on 2,000 partitions scored about 1,000 centroids twice).
    pub fn finish(&self, q: &PreparedQuery, order: &mut [Scored]) {
        for r in order.iter_mut() {
            r.score = self.route_score(&q.q, r.row as usize);
        }
        order.sort_unstable_by(best_first);
    }

    /// Adds the next best partitions (by the int8 ranking) to `order` until
    /// it holds at least `k` rows the query may return. Small partitions exist (k-means cells are
    /// uneven): without this, a query probing a few of them came back with
    /// fewer than `k` survivors and fell back to brute force over the whole
    /// index (at one probe on debian-minilm-384: p50 33 us, mean 139 us).
    /// Rare, so the ranking of the others is recomputed here rather than
    /// kept for every query.
    fn top_up(&self, q: &PreparedQuery, order: &mut Vec<Scored>, k: usize) {
        let rows = |r: &Scored| self.stack.allowed_in(r.row as usize);
        let mut have: usize = order.iter().map(rows).sum();
        if have >= k {
            return;
        }
        let mut rest = Vec::with_capacity(self.centroids.len());
        self.centroids.rank_all(self.view.kernels, q, &mut rest);
        rest.retain(|r| order.iter().all(|o| o.row != r.row));
        rest.sort_unstable_by(best_first);
        for r in rest.iter() {
            if have >= k {
                break;
            }
            order.push(*r);
            have += rows(r);
        }
    }

    /// The probe of partition `route.row`, from its exact routing score, so
    /// a probe costs no second dot product.
    pub fn probe(&self, q: &PreparedQuery, route: &Scored) -> Probe {
        let p = route.row as usize;
        let (q_dot_a, a2) = if self.view.centered {
            // `-||q - c||^2 = 2 <q, c> - ||q||^2 - ||c||^2`, solved for `<q, c>`.
            let a2 = self.centroids.norms[p];
            (0.5 * (q.norm2 + a2 + route.score), a2)
        } else {
            (0.0, 0.0)
        };
        let d2 = (q.norm2 - 2.0 * q_dot_a + a2).max(0.0);
        Probe {
            partition: p,
            offset: self.view.metric.anchor_offset(q_dot_a, d2),
            centered_norm: d2.sqrt(),
        }
    }
}
