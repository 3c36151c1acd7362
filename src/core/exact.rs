//! Brute force (`exact = true`, and the fallback for a query Tier1 left
//! short): every row scored exactly in float32, split over the pool for
//! indexes large enough to pay for the hop.
use rayon::prelude::*;

use super::stack::Stack;
use super::topk::TopK;
use super::view::View;
use crate::pool;

/// Scores the allowed rows of `start..end` of `view` exactly into `best`,
/// numbered from `first`.
fn exact_scan(view: &View<'_>, first: usize, q: &[f32], start: usize, end: usize, best: &mut TopK) {
    match view.mask {
        // A word of the mask at a time: a selective filter's brute force
        // costs its matching rows, not the file's.
        Some(mask) => {
            for row in mask.ones_in(start, end) {
                best.push(view.exact_score(q, row), (first + row) as u32);
            }
        }
        None => {
            for row in start..end {
                best.push(view.exact_score(q, row), (first + row) as u32);
            }
        }
    }
}

/// Scores every allowed row into `best`, inline or split over the pool (`split`).
pub fn exact_all(stack: &Stack<'_>, q: &[f32], split: bool, best: &mut TopK) {
    if !split {
        for (first, view) in stack.parts() {
            exact_scan(view, first, q, 0, view.len(), best);
        }
        return;
    }
    let chunks = 4 * pool::current_threads();
    let step = stack.len().div_ceil(chunks).max(1);
    // (file, first row of the file, chunk start, chunk end)
    let mut work = Vec::new();
    for (s, (first, view)) in stack.parts().enumerate() {
        let n = view.len();
        work.extend(
            (0..n)
                .step_by(step)
                .map(|a| (s, first, a, (a + step).min(n))),
        );
    }
    let views: Vec<&View<'_>> = stack.parts().map(|(_, v)| v).collect();
    let cap = best.capacity();
    let parts: Vec<TopK> = pool::install(|| {
        work.par_iter()
            .map(|&(s, first, start, end)| {
                let mut t = TopK::default();
                t.reset(cap);
                exact_scan(views[s], first, q, start, end, &mut t);
                t
            })
            .collect()
    });
    for p in &parts {
        best.merge(p);
    }
}
