//! [`View`]: typed slices into one mapped index file, taken once per search.
//! A projection of the file and nothing more: no routing, no scoring rules.
use super::mask::{BlockRuns, RowMask};
use super::tier1::MAX_GAP;
use crate::index::format::SectionKind;
use crate::index::locate::Locate;
use crate::index::IndexFile;
use crate::math::bits::CodeBlocks;
use crate::math::estimate::RowFactors;
use crate::math::Kernels;
use crate::metric::Metric;

/// The sections of one index, typed, for one search.
#[derive(Clone, Copy)]
pub struct View<'a> {
    /// Tier1 codes in blocks of 8 rows (`math::bits`).
    pub codes: &'a [u64],
    /// Per-row Tier1 factors.
    pub scale: &'a [f32],
    /// Per-row constant term of the Tier1 estimate.
    pub bias: &'a [f32],
    /// Per-row error factor of the Tier1 estimate.
    pub error: &'a [f32],
    /// Tier2 vectors, `n x dim`, stored order.
    pub vectors: &'a [f32],
    /// Document ids, stored order.
    pub ids: &'a [i64],
    /// Partition centroids, `partitions x dim`.
    pub centroids: &'a [f32],
    /// Partition `p` holds stored rows `offsets[p]..offsets[p + 1]`.
    pub offsets: &'a [u64],
    /// The partition of a stored row.
    pub locate: Locate<'a>,
    /// Codes are residuals from the partition centroid (else from zero).
    pub centered: bool,
    /// Dimensions per vector.
    pub dim: usize,
    /// `u64` words per code.
    pub words: usize,
    /// The index's metric.
    pub metric: Metric,
    /// Kernels in use.
    pub kernels: &'a Kernels,
    /// Rows a query may return (`None`: all of them).
    pub mask: Option<&'a RowMask>,
    /// Spilled entries (blueprint 3.4), if the file has them.
    pub spill: Option<Spill<'a>>,
}

/// A file's spilled entries: a second Tier1 code of rows, each in one more
/// partition, with its factors there and the stored row it copies.
#[derive(Clone, Copy)]
pub struct Spill<'a> {
    /// Codes in blocks of 8 entries, like [`View::codes`].
    pub codes: &'a [u64],
    /// Per-entry Tier1 factors, residuals from the spill partition.
    pub scale: &'a [f32],
    /// Per-entry constant term.
    pub bias: &'a [f32],
    /// Per-entry error factor.
    pub error: &'a [f32],
    /// Partition `p` holds entries `offsets[p]..offsets[p + 1]`.
    pub offsets: &'a [u64],
    /// The partition of an entry.
    pub locate: Locate<'a>,
    /// The stored row each entry copies.
    pub rows: &'a [u32],
}

impl<'a> Spill<'a> {
    /// The spill sections of `f`, if it has them.
    fn of(f: &'a IndexFile) -> Option<Self> {
        let offsets: &[u64] = f.section(SectionKind::SpillOffsets);
        let rows: &[u32] = f.section(SectionKind::SpillRows);
        if offsets.is_empty() {
            return None;
        }
        let factors: &[f32] = f.section(SectionKind::SpillFactors);
        let m = rows.len();
        Some(Spill {
            codes: f.section(SectionKind::SpillCodes),
            scale: &factors[..m],
            bias: &factors[m..2 * m],
            error: &factors[2 * m..],
            offsets,
            locate: f.spill_locate(),
            rows,
        })
    }

    /// Entries `start..end` of partition `p`.
    pub fn entries_of(&self, p: usize) -> (usize, usize) {
        (self.offsets[p] as usize, self.offsets[p + 1] as usize)
    }

    /// The partition entry `e` is spilled into.
    #[inline]
    pub fn partition_of(&self, e: usize) -> usize {
        self.locate.partition_of(e)
    }

    /// The codes and factors Tier1 reads, with `words` per code.
    pub fn table(&self, words: usize) -> CodeTable<'a> {
        CodeTable {
            codes: self.codes,
            scale: self.scale,
            bias: self.bias,
            words,
        }
    }
}

/// Blocked Tier1 codes with their factors: a file's rows or its spilled
/// entries, which Tier1 scans alike.
#[derive(Clone, Copy)]
pub struct CodeTable<'a> {
    codes: &'a [u64],
    scale: &'a [f32],
    bias: &'a [f32],
    words: usize,
}

impl<'a> CodeTable<'a> {
    /// Codes of the whole blocks of entries `r0..r1` (both multiples of 8,
    /// or `r1` the padded end).
    pub fn code_blocks(&self, r0: usize, r1: usize) -> CodeBlocks<'a> {
        CodeBlocks {
            blocks: &self.codes[r0 * self.words..r1 * self.words],
            words: self.words,
        }
    }

    /// Tier1 factors of entries `r0..r1` (clipped to the table).
    pub fn factors(&self, r0: usize, r1: usize) -> RowFactors<'a> {
        let r1 = r1.min(self.scale.len());
        RowFactors {
            scale: &self.scale[r0..r1],
            bias: &self.bias[r0..r1],
        }
    }
}

impl<'a> View<'a> {
    /// The sections of `f`, with `kernels`.
    pub fn new(f: &'a IndexFile, kernels: &'a Kernels) -> Self {
        let n = f.len();
        let factors: &[f32] = f.section(SectionKind::Factors);
        View {
            codes: f.section(SectionKind::Codes),
            scale: &factors[..n],
            bias: &factors[n..2 * n],
            error: &factors[2 * n..],
            vectors: f.section(SectionKind::Vectors),
            ids: f.section(SectionKind::Ids),
            centroids: f.section(SectionKind::Centroid),
            offsets: f.offsets(),
            locate: f.rows_locate(),
            centered: f.manifest().build.center,
            dim: f.dim(),
            words: f.words(),
            metric: f.metric(),
            kernels,
            mask: None,
            spill: Spill::of(f),
        }
    }

    /// The codes and factors of the rows, as Tier1 reads them.
    pub fn table(&self) -> CodeTable<'a> {
        CodeTable {
            codes: self.codes,
            scale: self.scale,
            bias: self.bias,
            words: self.words,
        }
    }

    /// The same view, returning only the rows `mask` allows.
    pub fn masked(self, mask: Option<&'a RowMask>) -> Self {
        View { mask, ..self }
    }

    /// Rows a query may return.
    pub fn allowed(&self) -> usize {
        self.mask.map_or(self.len(), RowMask::allowed)
    }

    /// Whether stored row `row` may be returned.
    #[inline]
    pub fn allows(&self, row: usize) -> bool {
        self.mask.is_none_or(|m| m.get(row))
    }

    /// Code blocks holding a row that may be returned.
    pub fn allowed_blocks(&self) -> BlockRuns {
        match self.mask {
            Some(m) => m.allowed_blocks(MAX_GAP),
            None => BlockRuns {
                blocks: self.len().div_ceil(crate::math::bits::BLOCK),
                runs: 1,
            },
        }
    }

    /// Rows of code block `block` that may be returned, as a Tier1 survivor mask.
    #[inline]
    pub fn allowed_bits(&self, block: usize) -> u8 {
        self.mask.map_or(u8::MAX, |m| m.block_bits(block))
    }

    /// Rows of partition `p` that may be returned.
    pub fn allowed_in(&self, p: usize) -> usize {
        let (a, b) = self.rows_of(p);
        self.mask.map_or(b - a, |m| m.count_range(a, b))
    }

    /// Adds the rows of each partition `p` that may be returned to
    /// `out[p]`: one pass over the mask.
    pub fn add_allowed_per_partition(&self, out: &mut [u32]) {
        match self.mask {
            Some(m) => m.count_ranges(self.offsets, out),
            None => {
                for (o, w) in out.iter_mut().zip(self.offsets.windows(2)) {
                    *o += (w[1] - w[0]) as u32;
                }
            }
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.scale.len()
    }

    /// True for an index without rows (never, for files we write).
    pub fn is_empty(&self) -> bool {
        self.scale.is_empty()
    }

    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Stored rows `start..end` of partition `p`.
    pub fn rows_of(&self, p: usize) -> (usize, usize) {
        (self.offsets[p] as usize, self.offsets[p + 1] as usize)
    }

    /// The partition holding stored row `row`.
    #[inline]
    pub fn partition_of(&self, row: usize) -> usize {
        self.locate.partition_of(row)
    }

    /// Centroid of partition `p`.
    pub fn centroid(&self, p: usize) -> &'a [f32] {
        &self.centroids[p * self.dim..(p + 1) * self.dim]
    }

    /// The Tier2 vector of stored row `row`.
    #[inline]
    pub fn vector(&self, row: usize) -> &'a [f32] {
        &self.vectors[row * self.dim..(row + 1) * self.dim]
    }

    /// Exact internal score of stored row `row` for query `q` (higher is better).
    #[inline]
    pub fn exact_score(&self, q: &[f32], row: usize) -> f32 {
        self.metric.score(self.kernels, q, self.vector(row))
    }
}
