//! Brute force (`exact = true`, and the fallback for a query Tier1 left
//! short): every row scored exactly in float32, split over the pool for
//! indexes large enough to pay for the hop.
use rayon::prelude::*;

use super::engine::{stack_of, Part};
use super::stack::Stack;
use super::topk::{Scored, TopK};
use super::view::View;
use crate::error::Result;
use crate::index::Metric;
use crate::math::gemm;
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

/// Queries scored together by [`exact_top_stack`]: at most 256 keeps the
/// scores of a group against a block of rows (256 x 256) in L2.
const GROUPS: std::ops::RangeInclusive<usize> = 16..=256;

/// The exact top-`k` rows (numbered across the stack) of each query, over
/// the rows the stack's masks allow: blocks of rows scored against groups
/// of queries by one matrix product each ([`gemm::dots`]), on the pool.
/// The groups are as large as the pool allows (one per thread, within
/// [`GROUPS`]): the product packs its block of rows once per group, so
/// small groups spend as long packing as multiplying (calibration's 300
/// queries over debian-minilm-384's 60k rows, 2 threads: 0.50-0.65 s in
/// groups of 16, 0.21-0.23 s in groups of 150).
pub(crate) fn exact_top_stack(stack: &Stack<'_>, queries: &[f32], k: usize) -> Vec<Vec<u32>> {
    const BLOCK_ROWS: usize = 256;
    let first = stack.first();
    let (dim, kernels) = (first.dim, first.kernels);
    let distance = first.metric == Metric::L2;
    let norms: Vec<Vec<f32>> = stack
        .parts()
        .map(|(_, v)| match distance {
            true => (0..v.len())
                .map(|r| (kernels.dot)(v.vector(r), v.vector(r)))
                .collect(),
            false => Vec::new(),
        })
        .collect();
    pool::install(|| {
        let b = queries.len() / dim.max(1);
        let size = b
            .div_ceil(rayon::current_num_threads())
            .clamp(*GROUPS.start(), *GROUPS.end());
        queries
            .par_chunks(size * dim)
            .flat_map_iter(|group| {
                let qs: Vec<&[f32]> = group.chunks_exact(dim).collect();
                let q2: Vec<f32> = qs.iter().map(|q| (kernels.dot)(q, q)).collect();
                let mut tops: Vec<TopK> = qs
                    .iter()
                    .map(|_| {
                        let mut t = TopK::default();
                        t.reset(k);
                        t
                    })
                    .collect();
                let mut dots = vec![0.0f32; qs.len() * BLOCK_ROWS];
                for ((start, view), norms) in stack.parts().zip(&norms) {
                    let n = view.len();
                    for r0 in (0..n).step_by(BLOCK_ROWS) {
                        let r1 = (r0 + BLOCK_ROWS).min(n);
                        let rows = &view.vectors[r0 * dim..r1 * dim];
                        let dots = &mut dots[..qs.len() * (r1 - r0)];
                        gemm::dots(group, rows, dim, dots);
                        let each = tops.iter_mut().zip(&q2).zip(dots.chunks_exact(r1 - r0));
                        for ((top, &qq), out) in each {
                            for (j, &d) in out.iter().enumerate() {
                                let row = r0 + j;
                                if !view.allows(row) {
                                    continue;
                                }
                                let s = if distance {
                                    2.0 * d - norms[row] - qq
                                } else {
                                    d
                                };
                                top.push(s, (start + row) as u32);
                            }
                        }
                    }
                }
                tops.into_iter().map(|mut t| {
                    let mut out: Vec<Scored> = Vec::new();
                    t.drain_sorted(&mut out);
                    out.into_iter().map(|s| s.row).collect()
                })
            })
            .collect()
    })
}

/// The exact top-`k` document ids of each query (`b x dim`) over the rows
/// of `parts` (a collection's segments) that their masks allow, by the
/// blocked brute force calibration uses (several times faster than
/// `exact = true` searches, which read every row once per query).
pub fn exact_top_parts(parts: &[Part<'_>], queries: &[f32], k: usize) -> Result<Vec<Vec<i64>>> {
    let stack = stack_of(parts)?;
    Ok(exact_top_stack(&stack, queries, k)
        .into_iter()
        .map(|rows| rows.into_iter().map(|r| stack.id(r as usize)).collect())
        .collect())
}
