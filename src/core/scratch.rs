//! Per-thread buffers reused across queries, so the hot path does not
//! allocate once the first query on a thread has warmed them up.
use std::cell::RefCell;

use super::query::PreparedQuery;
use super::tier1::ScanBuffers;
use super::topk::{Scored, TopK};

/// Working memory of one search.
#[derive(Default)]
pub struct Scratch {
    /// The prepared query.
    pub query: PreparedQuery,
    /// Partitions in probe order, with their exact routing scores.
    pub route_order: Vec<Scored>,
    /// Every partition with its approximate routing score (filtered
    /// queries rank them all).
    pub ranking: Vec<Scored>,
    /// `||q - anchor_p||` per partition (valid for probed ones).
    pub probe_norms: Vec<f32>,
    /// Tier1 kernel outputs for one chunk of rows.
    pub scan: ScanBuffers,
    /// Tier1 survivors by estimate.
    pub survivors: TopK,
    /// Survivors, best Tier1 estimate first.
    pub ranked: Vec<Scored>,
    /// Exact top-k.
    pub best: TopK,
    /// Exact top-k, best first.
    pub out: Vec<Scored>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch. Re-entrant calls (which the
/// pipeline never makes) get a fresh scratch instead of panicking.
pub fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}
