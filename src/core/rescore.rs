//! Stage 3: exact rescoring of the Tier1 survivors (Tier2).
//!
//! Survivors are taken in Tier1 order and scored exactly against their
//! float32 vectors. Each row's Tier1 estimate has an error bound
//! proportional to its distance from its partition centroid (stored per row
//! at build) times the query's; once `k` rows are scored, a survivor whose
//! estimate plus bound cannot reach the current k-th exact score is
//! skipped. Without a bound (expansion off) every survivor is rescored.
//!
//! A survivor may be a spilled entry (blueprint 3.4): it is scored as the
//! row it copies, with the error bound of the partition it was found in.
//! Tier1 never lets a row survive twice.
use super::plan::QueryPlan;
use super::stack::Stack;
use super::topk::{Scored, TopK};
use super::view::{Spill, View};
use crate::math::prefetch::{prefetch, prefetch_l2};

/// Survivors ahead of the one being scored whose Tier2 rows are
/// prefetched (into L2: [`prefetch_l2`]): enough to cover a DRAM round
/// trip (~100 ns) per row.
const PREFETCH_AHEAD: usize = 4;

/// Survivors ahead whose error factor (one random 4-byte read each, needed
/// by the skip test) is prefetched.
const FACTOR_AHEAD: usize = 16;

/// How rescoring finds a survivor's file and its row there: directly when
/// the stack is one file (an index: no lookup in the hot loop; through the
/// stack it cost 7% of a one-probe query on debian-minilm-384), through the
/// stack for a collection's segments, through the spill for a file's
/// spilled entries.
trait Rows<'a> {
    /// The file holding survivor `row` and the stored row there.
    fn at(&self, row: u32) -> (&View<'a>, usize);

    /// The number the exact top-k keeps for survivor `row`: its row in
    /// the stack.
    #[inline(always)]
    fn id(&self, row: u32) -> u32 {
        row
    }

    /// The survivor's error factor and the partition it was found in.
    #[inline(always)]
    fn error(&self, row: u32) -> (&'a f32, usize) {
        let (v, r) = self.at(row);
        (&v.error[r], v.partition_of(r))
    }
}

struct One<'s, 'a>(&'s View<'a>);

impl<'a> Rows<'a> for One<'_, 'a> {
    #[inline(always)]
    fn at(&self, row: u32) -> (&View<'a>, usize) {
        (self.0, row as usize)
    }
}

impl<'a> Rows<'a> for Stack<'a> {
    #[inline(always)]
    fn at(&self, row: u32) -> (&View<'a>, usize) {
        self.locate(row as usize)
    }
}

/// One file and its spilled entries: survivor `n + e` is entry `e`.
struct Spilled<'s, 'a> {
    view: &'s View<'a>,
    spill: &'s Spill<'a>,
    n: u32,
}

impl<'a> Rows<'a> for Spilled<'_, 'a> {
    #[inline(always)]
    fn at(&self, row: u32) -> (&View<'a>, usize) {
        match row.checked_sub(self.n) {
            Some(e) => (self.view, self.spill.rows[e as usize] as usize),
            None => (self.view, row as usize),
        }
    }

    /// A spilled entry is answered as the row it copies (one file: its
    /// stored row is its number in the stack).
    #[inline(always)]
    fn id(&self, row: u32) -> u32 {
        match row.checked_sub(self.n) {
            Some(e) => self.spill.rows[e as usize],
            None => row,
        }
    }

    #[inline(always)]
    fn error(&self, row: u32) -> (&'a f32, usize) {
        match row.checked_sub(self.n) {
            Some(e) => {
                let e = e as usize;
                (&self.spill.error[e], self.spill.partition_of(e))
            }
            None => (
                &self.view.error[row as usize],
                self.view.partition_of(row as usize),
            ),
        }
    }
}

/// Rescores `ranked` into `best` and returns how many rows were scored.
/// `probe_norms[p]` is `||q - anchor_p||` for every probed partition `p`.
pub fn rescore(
    stack: &Stack<'_>,
    q: &[f32],
    plan: &QueryPlan,
    ranked: &[Scored],
    probe_norms: &[f32],
    best: &mut TopK,
) -> usize {
    let r = Rescore {
        q,
        plan,
        ranked,
        probe_norms,
    };
    match (stack.single(), stack.spill(plan.spill)) {
        (Some(view), Some(spill)) => {
            let n = view.len() as u32;
            r.run(&Spilled { view, spill, n }, best)
        }
        (Some(view), None) => r.run(&One(view), best),
        (None, _) => r.run(stack, best),
    }
}

/// One query's rescoring inputs.
struct Rescore<'r> {
    q: &'r [f32],
    plan: &'r QueryPlan,
    ranked: &'r [Scored],
    probe_norms: &'r [f32],
}

impl Rescore<'_> {
    fn run<'a, R: Rows<'a>>(&self, stack: &R, best: &mut TopK) -> usize {
        let Rescore {
            q,
            plan,
            ranked,
            probe_norms,
        } = *self;
        let bounded = plan.bound_margin.is_some();
        let margin = plan.bound_margin.unwrap_or(f32::INFINITY);
        let mut scored = 0;
        let error_of = |row: u32| std::slice::from_ref(stack.error(row).0);
        if bounded {
            for s in ranked.iter().take(FACTOR_AHEAD) {
                prefetch(error_of(s.row));
            }
        }
        // A survivor is hopeless once k rows are scored and its reach (estimate
        // plus bound) is below the k-th exact score; the threshold only rises,
        // so one found hopeless ahead of time is not prefetched either (with
        // large C most survivors are, and their rows would be wasted memory
        // traffic). Each reach is computed once, when its row comes into the
        // prefetch window, and kept in a ring until the row is reached.
        let reach = |s: &Scored| {
            if !bounded {
                return f32::INFINITY;
            }
            let (error, p) = stack.error(s.row);
            s.score + margin * probe_norms[p] * error
        };
        let hopeless = |reach: f32, best: &TopK| best.is_full() && reach < best.threshold();
        let mut ring = [f32::INFINITY; PREFETCH_AHEAD];
        for (slot, s) in ring.iter_mut().zip(ranked) {
            *slot = reach(s);
        }
        for (i, s) in ranked.iter().enumerate() {
            let own = ring[i % PREFETCH_AHEAD];
            if let Some(ahead) = ranked.get(i + PREFETCH_AHEAD) {
                // Row i + PREFETCH_AHEAD takes the slot row i has just left.
                let r = reach(ahead);
                ring[i % PREFETCH_AHEAD] = r;
                if !hopeless(r, best) {
                    let (v, row) = stack.at(ahead.row);
                    prefetch_l2(v.vector(row));
                }
            }
            if let Some(ahead) = ranked.get(i + FACTOR_AHEAD).filter(|_| bounded) {
                prefetch(error_of(ahead.row));
            }
            if hopeless(own, best) {
                continue;
            }
            let (v, row) = stack.at(s.row);
            best.push(v.exact_score(q, row), stack.id(s.row));
            scored += 1;
        }
        scored
    }
}
