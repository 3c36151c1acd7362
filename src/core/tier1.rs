//! Stage 2: the Tier1 scan. Streams the 1-bit codes of each probed
//! partition, block by block, through the fused estimate kernel and keeps
//! the best `candidates` rows by their estimated score. A query scans its
//! partitions inline, or, when it reads many rows and the pool has threads
//! to spare, split over the pool ([`Tier1::scan_split`]).
use rayon::prelude::*;

use super::mask::RowMask;
use super::plan::QueryPlan;
use super::query::PreparedQuery;
use super::router::{Probe, Router};
use super::stack::Stack;
use super::topk::{Scored, TopK};
use super::view::{CodeTable, Spill};
use crate::index::locate::Locate;
use crate::math::bits::BLOCK;
use crate::math::estimate::EstimateParams;
use crate::math::prefetch::prefetch;
use crate::pool;

/// Rows per kernel call (a multiple of the code block): its output stays in L1.
const CHUNK_ROWS: usize = 256;

/// Code blocks of each chunk asked for ahead of its scan (the kernel's
/// own prefetch covers the rest of a long chunk once it runs).
const PREFETCH_BLOCKS: usize = 2;

/// Chunks asked for ahead of the one being scanned. A partition is a jump
/// the hardware prefetcher cannot follow, and so is every chunk of a
/// selective mask (a 1% filter leaves about one block in thirteen).
const LOOKAHEAD: usize = 4;

/// A run of at most this many code blocks without an allowed row inside a
/// chunk is scanned through rather than split around: a block streamed
/// costs less than a kernel call started on lines not yet in cache.
pub(crate) const MAX_GAP: usize = 3;

/// Kernel outputs for one chunk of rows, reused across chunks and queries.
#[derive(Debug, Default)]
pub struct ScanBuffers {
    /// Estimates of the chunk's rows.
    est: Vec<f32>,
    /// Per block of the chunk: rows whose estimate beat the threshold.
    mask: Vec<u8>,
}

/// Block-aligned row ranges `(r0, r1)` of at most [`CHUNK_ROWS`] rows that
/// cover rows `start..end` (the kernels work on whole blocks of
/// [`BLOCK`] rows; rows outside `start..end` are computed and ignored),
/// leaving out the runs of more than [`MAX_GAP`] code blocks in which
/// `mask` allows no row (a filter's non-matching rows, a collection's
/// deleted ones): a scan under a selective mask costs the blocks holding
/// allowed rows, not the partition.
fn allowed_chunks<'v>(
    mask: Option<&'v RowMask>,
    start: usize,
    end: usize,
) -> impl Iterator<Item = (usize, usize)> + 'v {
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
        let limit = (first + per_chunk).min(last);
        let mut stop = limit;
        if let Some(m) = mask.filter(|m| !m.blocks_all_allowed(first, limit)) {
            stop = first + 1;
            while stop < limit {
                let next = m.next_allowed_block(stop, limit);
                if next >= limit || next - stop > MAX_GAP {
                    break;
                }
                stop = next + 1;
            }
        }
        b = stop;
        Some((first * BLOCK, stop * BLOCK))
    })
}

/// One partition's rows in one file, or its spilled entries: entries
/// `start..end` of `table`, in the `order`-th partition probed. A survivor
/// is numbered `first + entry`: a row of the stack, or, for a spilled
/// entry, the stack's row count plus the entry.
#[derive(Clone, Copy)]
struct Slice<'v> {
    order: usize,
    first: usize,
    table: CodeTable<'v>,
    /// Rows the query may return, by block (the rows' own slices).
    mask: Option<&'v RowMask>,
    /// For spilled entries: the rows they copy, and where those rows lie.
    copies: Option<Copies<'v>>,
    start: usize,
    end: usize,
}

/// What a spilled entry's survival depends on besides its estimate.
#[derive(Clone, Copy)]
struct Copies<'v> {
    /// The stored row each entry copies.
    rows: &'v [u32],
    /// The partition of a stored row (an entry's row lies in its own
    /// partition).
    locate: Locate<'v>,
}

/// One kernel call: entries `r0..r1` (whole blocks) of a slice. It refers
/// to its slice rather than holding a copy: moved through the chunk walk's
/// iterator adapters and the lookahead ring, a copy (some 150 bytes) was
/// a `memcpy` per step, 2.4% of a debian-minilm-384 query at target 0.95.
struct Chunk<'s, 'v> {
    slice: &'s Slice<'v>,
    r0: usize,
    r1: usize,
}

impl Chunk<'_, '_> {
    /// Asks for the chunk's first code blocks and their factors.
    fn prefetch(&self) {
        let r1 = self.r1.min(self.r0 + PREFETCH_BLOCKS * BLOCK);
        let table = self.slice.table;
        prefetch(table.code_blocks(self.r0, r1).blocks);
        let f = table.factors(self.r0, r1);
        prefetch(f.scale);
        prefetch(f.bias);
    }
}

/// One query's Tier1 over the partitions routing chose.
pub struct Tier1<'a> {
    stack: &'a Stack<'a>,
    router: &'a Router<'a>,
    q: &'a PreparedQuery,
    /// The estimate's per-query constants (offset and threshold are set
    /// per partition and per chunk).
    base: EstimateParams,
    /// The spilled entries the plan scans.
    spill: Option<Spill<'a>>,
    /// With spilled entries: the partitions probed, one bit each.
    probed: Vec<u64>,
}

impl<'a> Tier1<'a> {
    /// Tier1 of query `q` under `plan`.
    pub fn new(
        stack: &'a Stack<'a>,
        router: &'a Router<'a>,
        q: &'a PreparedQuery,
        plan: &QueryPlan,
        order: &[Scored],
    ) -> Self {
        let spill = stack.spill(plan.spill).copied();
        let mut probed = Vec::new();
        if spill.is_some() {
            probed = vec![0u64; stack.first().partitions().div_ceil(64)];
            for r in order {
                probed[r.row as usize / 64] |= 1 << (r.row % 64);
            }
        }
        Tier1 {
            stack,
            router,
            q,
            base: EstimateParams::for_query(&q.planes, plan.weight),
            spill,
            probed,
        }
    }

    /// Whether a spilled entry of `row` may survive: not when the row's own
    /// partition is probed too (the row is found there, with the better
    /// estimate: its own centroid is the nearer one). So no row survives
    /// twice.
    #[inline]
    fn copy_counts(&self, c: &Copies<'_>, row: usize) -> bool {
        let home = c.locate.partition_of(row);
        self.probed[home / 64] >> (home % 64) & 1 == 0
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
        self.scan(order, bufs, survivors, Some(probe_norms));
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
                        top.reset_survivors(cap);
                        (top, ScanBuffers::default())
                    },
                    |(mut top, mut bufs), r| {
                        self.scan(std::slice::from_ref(r), &mut bufs, &mut top, None);
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

    /// The slices of every partition of `order`, in every file of the
    /// stack, then its spilled entries, in scan order.
    fn slices(&self, order: &[Scored]) -> Vec<Slice<'a>> {
        let spill = self.spill.as_ref();
        let first = self.stack.first();
        let (words, locate) = (first.words, first.locate);
        let spilled_first = self.stack.len();
        let mut slices = Vec::with_capacity(order.len() * (self.stack.parts().count() + 1));
        for (i, r) in order.iter().enumerate() {
            let p = r.row as usize;
            for (first, view) in self.stack.parts() {
                let (start, end) = view.rows_of(p);
                slices.push(Slice {
                    order: i,
                    first,
                    table: view.table(),
                    mask: view.mask,
                    copies: None,
                    start,
                    end,
                });
            }
            if let Some(s) = spill {
                let (start, end) = s.entries_of(p);
                slices.push(Slice {
                    order: i,
                    first: spilled_first,
                    table: s.table(words),
                    mask: None,
                    copies: Some(Copies {
                        rows: s.rows,
                        locate,
                    }),
                    start,
                    end,
                });
            }
        }
        // An empty slice is common in a small segment on a large one's
        // partitions; `allowed_chunks` would still yield the block holding
        // `start`.
        slices.retain(|s| s.start < s.end);
        slices
    }

    /// Scans the chunks of `order` into `survivors`, each asked for
    /// [`LOOKAHEAD`] chunks before its turn, recording each probed
    /// partition's `||q - anchor_p||` in `probe_norms` when given.
    fn scan(
        &self,
        order: &[Scored],
        bufs: &mut ScanBuffers,
        survivors: &mut TopK,
        mut probe_norms: Option<&mut [f32]>,
    ) {
        bufs.est.resize(CHUNK_ROWS, 0.0);
        bufs.mask.resize(CHUNK_ROWS / BLOCK, 0);
        let slices = self.slices(order);
        let mut chunks = slices.iter().flat_map(|slice| {
            allowed_chunks(slice.mask, slice.start, slice.end).map(move |(r0, r1)| Chunk {
                slice,
                r0,
                r1,
            })
        });
        let mut ring: [Option<Chunk<'_, '_>>; LOOKAHEAD] = std::array::from_fn(|_| None);
        for slot in &mut ring {
            *slot = chunks.next().inspect(Chunk::prefetch);
        }
        let mut c = self.base;
        let mut current = usize::MAX;
        for i in (0..LOOKAHEAD).cycle() {
            let Some(chunk) = ring[i].take() else { break };
            ring[i] = chunks.next().inspect(Chunk::prefetch);
            if chunk.slice.order != current {
                current = chunk.slice.order;
                let probe: Probe = self.router.probe(self.q, &order[current]);
                c.offset = probe.offset;
                if let Some(norms) = probe_norms.as_deref_mut() {
                    norms[probe.partition] = probe.centered_norm;
                }
            }
            self.scan_chunk(&chunk, &mut c, bufs, survivors);
        }
    }

    /// Runs the kernel over one chunk and keeps its rows that beat the
    /// survivors' threshold.
    fn scan_chunk(
        &self,
        ch: &Chunk<'_, '_>,
        c: &mut EstimateParams,
        bufs: &mut ScanBuffers,
        survivors: &mut TopK,
    ) {
        let (sl, r0) = (ch.slice, ch.r0);
        // Blocked codes of rows r0..r1 (block-aligned) are contiguous.
        let nb = (ch.r1 - r0) / BLOCK;
        c.threshold = survivors.threshold();
        (self.stack.first().kernels.estimate_scan)(
            sl.table.code_blocks(r0, ch.r1),
            self.q.planes.as_planes(),
            sl.table.factors(r0, ch.r1),
            c,
            &mut bufs.est[..nb * BLOCK],
            &mut bufs.mask[..nb],
        );
        // Only rows above the chunk's starting threshold have their bit
        // set; most blocks have none once the survivors fill up.
        let block0 = r0 / BLOCK;
        for (b, &m) in bufs.mask[..nb].iter().enumerate() {
            // Masked rows (deleted, filtered out) never take a slot.
            let mut m = m & sl.mask.map_or(u8::MAX, |k| k.block_bits(block0 + b));
            while m != 0 {
                let i = b * BLOCK + m.trailing_zeros() as usize;
                m &= m - 1;
                let row = r0 + i;
                let e = bufs.est[i];
                if (sl.start..sl.end).contains(&row) && e > survivors.threshold() {
                    // A spilled entry of a row found through its own
                    // partition takes no slot.
                    let copy = sl.copies.as_ref();
                    if copy.is_some_and(|c| !self.copy_counts(c, c.rows[row] as usize)) {
                        continue;
                    }
                    survivors.push(e, (sl.first + row) as u32);
                }
            }
        }
    }
}

/// Rows in the partitions of `order`, in every file of the stack (masked
/// ones included: Tier1 reads their codes), and the spilled entries Tier1
/// scans there.
pub fn rows_in(stack: &Stack<'_>, plan: &QueryPlan, order: &[Scored]) -> usize {
    let mut rows = 0;
    for (_, view) in stack.parts() {
        for r in order {
            let (a, b) = view.rows_of(r.row as usize);
            rows += b - a;
        }
    }
    if let Some(s) = stack.spill(plan.spill) {
        for r in order {
            let (a, b) = s.entries_of(r.row as usize);
            rows += b - a;
        }
    }
    rows
}
