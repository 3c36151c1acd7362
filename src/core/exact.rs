//! Brute force (`exact = true`, and the fallback for a query Tier1 left
//! short): every row scored exactly in float32, split over the pool for
//! indexes large enough to pay for the hop.
use rayon::prelude::*;

use super::stack::Stack;
use super::topk::TopK;
use super::view::View;
use crate::math::prefetch::prefetch;
use crate::pool;

/// Matching rows ahead of the one being scored whose vectors are
/// prefetched under a mask (as `rescore`'s survivors).
const ROWS_AHEAD: usize = 4;

/// Scores the allowed rows of `start..end` of `view` exactly into `best`,
/// numbered from `first`.
fn exact_scan(view: &View<'_>, first: usize, q: &[f32], start: usize, end: usize, best: &mut TopK) {
    match view.mask {
        // A word of the mask at a time: a selective filter's brute force
        // costs its matching rows, not the file's.
        Some(mask) => {
            // Matching rows are scattered: ask for each row's vector a few
            // rows ahead (without it, 1,004 matching rows of a 1M x 384
            // index took ~700 us, each row a chain of cache misses).
            let mut ahead = mask.ones_in(start, end);
            for row in ahead.by_ref().take(ROWS_AHEAD) {
                prefetch(view.vector(row));
            }
            for row in mask.ones_in(start, end) {
                if let Some(next) = ahead.next() {
                    prefetch(view.vector(next));
                }
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
