//! Brute force (`exact = true`, and the fallback for a query Tier1 left
//! short): every row scored exactly in float32, split over the pool for
//! indexes large enough to pay for the hop.
use rayon::prelude::*;

use super::topk::TopK;
use super::view::View;
use crate::pool;

/// Scores the allowed rows of `start..end` exactly into `best`.
pub fn exact_scan(view: &View<'_>, q: &[f32], start: usize, end: usize, best: &mut TopK) {
    for row in start..end {
        if view.allows(row) {
            best.push(view.exact_score(q, row), row as u32);
        }
    }
}

/// Scores every allowed row into `best`, inline or split over the pool (`split`).
pub fn exact_all(view: &View<'_>, q: &[f32], split: bool, best: &mut TopK) {
    let n = view.len();
    if !split {
        exact_scan(view, q, 0, n, best);
        return;
    }
    let chunks = 4 * pool::current_threads();
    let step = n.div_ceil(chunks).max(1);
    let cap = best.capacity();
    let parts: Vec<TopK> = pool::install(|| {
        (0..n)
            .into_par_iter()
            .step_by(step)
            .map(|start| {
                let mut t = TopK::default();
                t.reset(cap);
                exact_scan(view, q, start, (start + step).min(n), &mut t);
                t
            })
            .collect()
    });
    for p in &parts {
        best.merge(p);
    }
}
