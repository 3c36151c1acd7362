//! Per-thread buffers reused across queries, so the hot path does not
//! allocate once the first query on a thread has warmed them up.
use std::cell::RefCell;

use super::query::PreparedQuery;
use super::topk::{Scored, TopK};

/// Working memory of one search.
#[derive(Default)]
pub struct Scratch {
    /// The prepared query.
    pub query: PreparedQuery,
    /// Partitions in probe order.
    pub route_order: Vec<Scored>,
    /// `||q - anchor_p||` per partition (valid for probed ones).
    pub probe_norms: Vec<f32>,
    /// Whether each partition was probed.
    pub probed: Vec<bool>,
    /// Kernel output for one block of rows.
    pub block: Vec<u32>,
    /// Tier1 estimates for one chunk of rows.
    pub est: Vec<f32>,
    /// Pass masks for one chunk of rows.
    pub mask: Vec<u8>,
    /// Tier1 survivors by total estimate.
    pub survivors: TopK,
    /// Tier1 top rows per segment (voting only).
    pub segment_top: Vec<TopK>,
    /// Vote counts (voting only).
    pub votes: hashbrown::HashMap<u32, u32>,
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
