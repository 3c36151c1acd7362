//! Stage 2: the Tier1 scan. Streams the 1-bit codes of each probed
//! partition, block by block, through the fused estimate kernel and keeps
//! the best `candidates` rows by their estimated score. A query scans its
//! partitions inline, or, when it reads many rows and the pool has threads
//! to spare, split over the pool ([`Tier1::scan_split`]).
use rayon::prelude::*;

use super::plan::QueryPlan;
use super::query::PreparedQuery;
use super::router::{Probe, Router};
use super::stack::Stack;
use super::topk::{Scored, TopK};
use super::view::View;
use crate::math::bits::BLOCK;
use crate::math::estimate::EstimateParams;
use crate::math::prefetch::prefetch;
use crate::pool;

/// Rows per kernel call (a multiple of the code block): its output stays in L1.
const CHUNK_ROWS: usize = 256;

/// Code blocks of the next partition asked for ahead of its scan (the
/// kernel's own prefetch covers the rest once it runs).
const PREFETCH_BLOCKS: usize = 2;

/// Kernel outputs for one chunk of rows, reused across chunks and queries.
#[derive(Debug, Default)]
pub struct ScanBuffers {
    /// Estimates of the chunk's rows.
    est: Vec<f32>,
    /// Per block of the chunk: rows whose estimate beat the threshold.
    mask: Vec<u8>,
}

/// Block-aligned row ranges `(r0, r1)` of at most [`CHUNK_ROWS`] rows that
/// cover rows `start..end` of `view` (the kernels work on whole blocks of
/// [`BLOCK`] rows; rows outside `start..end` are computed and ignored),
/// leaving out the code blocks in which the view allows no row (a filter's non-matching rows,
/// a collection's deleted ones): a scan under a selective mask costs the
/// blocks holding allowed rows, not the partition. Runs of allowed blocks
/// stay whole, up to [`CHUNK_ROWS`].
fn allowed_chunks<'v>(
    view: &'v View<'_>,
    start: usize,
    end: usize,
) -> impl Iterator<Item = (usize, usize)> + 'v {
    let mask = view.mask;
    let (mut b, last) = (start / BLOCK, end.div_ceil(BLOCK));
    let per_chunk = CHUNK_ROWS / BLOCK;
    std::iter::from_fn(move || {
        let first = match mask {
            None => b,
            Some(m) => m.next_allowed_block(b, last),
        };
        if first >= last {
            return None;
        }
        let mut stop = (first + per_chunk).min(last);
        if let Some(m) = mask {
            stop = (first + 1..stop)
                .find(|&x| m.block_bits(x) == 0)
                .unwrap_or(stop);
        }
        b = stop;
        Some((first * BLOCK, stop * BLOCK))
    })
}

/// One query's Tier1 over the partitions routing chose.
pub struct Tier1<'a> {
    stack: &'a Stack<'a>,
    router: &'a Router<'a>,
    q: &'a PreparedQuery,
    /// The estimate's per-query constants (offset and threshold are set
    /// per partition and per chunk).
    base: EstimateParams,
}

impl<'a> Tier1<'a> {
    /// Tier1 of query `q` under `plan`.
    pub fn new(
        stack: &'a Stack<'a>,
        router: &'a Router<'a>,
        q: &'a PreparedQuery,
        plan: &QueryPlan,
    ) -> Self {
        Tier1 {
            stack,
            router,
            q,
            base: EstimateParams::for_query(&q.planes, plan.weight),
        }
    }

    /// Scans the partitions of `order` one after another into `survivors`,
    /// recording `||q - anchor_p||` of each in `probe_norms`.
    pub fn scan_inline(
        &self,
        order: &[Scored],
        bufs: &mut ScanBuffers,
        survivors: &mut TopK,
        probe_norms: &mut [f32],
    ) {
        for (i, r) in order.iter().enumerate() {
            if let Some(next) = order.get(i + 1) {
                self.prefetch_partition(next.row as usize);
            }
            let probe = self.router.probe(self.q, r);
            probe_norms[probe.partition] = probe.centered_norm;
            self.scan_partition(&probe, bufs, survivors);
        }
    }

    /// Asks for the first code blocks and factors of partition `p` in every
    /// file of the stack, one partition ahead of the scan: each partition is
    /// a jump the hardware prefetcher cannot follow, and in a collection's
    /// stack a partition is a short slice in each of several segments.
    fn prefetch_partition(&self, p: usize) {
        for (_, view) in self.stack.parts() {
            let (start, end) = view.rows_of(p);
            if start == end {
                continue;
            }
            let r0 = start / BLOCK * BLOCK;
            let r1 = (r0 + PREFETCH_BLOCKS * BLOCK).min(end.div_ceil(BLOCK) * BLOCK);
            prefetch(view.code_blocks(r0, r1).blocks);
            let f = view.factors(start, end.min(start + PREFETCH_BLOCKS * BLOCK));
            prefetch(f.scale);
            prefetch(f.bias);
        }
    }

    /// [`Tier1::scan_inline`] split over the pool: each rayon split keeps
    /// one top-C and one set of buffers for all the partitions it scans
    /// (not one per partition), and the splits are merged in order.
    pub fn scan_split(&self, order: &[Scored], survivors: &mut TopK, probe_norms: &mut [f32]) {
        let cap = survivors.capacity();
        let parts: Vec<TopK> = pool::install(|| {
            order
                .par_iter()
                .fold(
                    || {
                        let mut top = TopK::default();
                        top.reset(cap);
                        (top, ScanBuffers::default())
                    },
                    |(mut top, mut bufs), r| {
                        self.scan_partition(&self.router.probe(self.q, r), &mut bufs, &mut top);
                        (top, bufs)
                    },
                )
                .map(|(top, _)| top)
                .collect()
        });
        for top in &parts {
            survivors.merge(top);
        }
        for r in order {
            let probe = self.router.probe(self.q, r);
            probe_norms[probe.partition] = probe.centered_norm;
        }
    }

    /// Scans the rows of `probe`'s partition, in every file of the stack,
    /// into `survivors`.
    fn scan_partition(&self, probe: &Probe, bufs: &mut ScanBuffers, survivors: &mut TopK) {
        let planes = self.q.planes.as_planes();
        let mut c = EstimateParams {
            offset: probe.offset,
            ..self.base
        };
        bufs.est.resize(CHUNK_ROWS, 0.0);
        bufs.mask.resize(CHUNK_ROWS / BLOCK, 0);
        for (first, view) in self.stack.parts() {
            let (start, end) = view.rows_of(probe.partition);
            if start == end {
                // Common in a small segment on a large one's partitions;
                // `allowed_chunks` would still yield the block holding `start`.
                continue;
            }
            for (r0, r1) in allowed_chunks(view, start, end) {
                // Blocked codes of rows r0..r1 (block-aligned) are contiguous.
                let nb = (r1 - r0) / BLOCK;
                c.threshold = survivors.threshold();
                (view.kernels.estimate_scan)(
                    view.code_blocks(r0, r1),
                    planes,
                    view.factors(r0, r1),
                    &c,
                    &mut bufs.est[..nb * BLOCK],
                    &mut bufs.mask[..nb],
                );
                // Only rows above the chunk's starting threshold have their
                // bit set; most blocks have none once the survivors fill up.
                let block0 = r0 / BLOCK;
                for (b, &m) in bufs.mask[..nb].iter().enumerate() {
                    // Masked rows (deleted, filtered out) never take a slot.
                    let mut m = m & view.allowed_bits(block0 + b);
                    while m != 0 {
                        let i = b * BLOCK + m.trailing_zeros() as usize;
                        m &= m - 1;
                        let row = r0 + i;
                        let e = bufs.est[i];
                        if (start..end).contains(&row) && e > survivors.threshold() {
                            survivors.push(e, (first + row) as u32);
                        }
                    }
                }
            }
        }
    }
}

/// Rows in the partitions of `order`, in every file of the stack (masked
/// ones included: Tier1 reads their codes).
pub fn rows_in(stack: &Stack<'_>, order: &[Scored]) -> usize {
    let mut rows = 0;
    for (_, view) in stack.parts() {
        for r in order {
            let (a, b) = view.rows_of(r.row as usize);
            rows += b - a;
        }
    }
    rows
}
