//! [`View`]: typed slices into one mapped index file, taken once per search.
//! A projection of the file and nothing more: no routing, no scoring rules.
use super::mask::RowMask;
use crate::index::format::SectionKind;
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
            centered: f.manifest().build.center,
            dim: f.dim(),
            words: f.words(),
            metric: f.metric(),
            kernels,
            mask: None,
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
    pub fn allowed_blocks(&self) -> usize {
        self.mask.map_or(
            self.len().div_ceil(crate::math::bits::BLOCK),
            RowMask::allowed_blocks,
        )
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
    pub fn partition_of(&self, row: usize) -> usize {
        self.offsets
            .partition_point(|&o| o <= row as u64)
            .saturating_sub(1)
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

    /// Codes of the whole blocks of rows `r0..r1` (both multiples of 8, or
    /// `r1` the padded end).
    pub fn code_blocks(&self, r0: usize, r1: usize) -> CodeBlocks<'a> {
        CodeBlocks {
            blocks: &self.codes[r0 * self.words..r1 * self.words],
            words: self.words,
        }
    }

    /// Tier1 factors of rows `r0..r1` (clipped to the index).
    pub fn factors(&self, r0: usize, r1: usize) -> RowFactors<'a> {
        let r1 = r1.min(self.len());
        RowFactors {
            scale: &self.scale[r0..r1],
            bias: &self.bias[r0..r1],
        }
    }

    /// Exact internal score of stored row `row` for query `q` (higher is better).
    #[inline]
    pub fn exact_score(&self, q: &[f32], row: usize) -> f32 {
        self.metric.score(self.kernels, q, self.vector(row))
    }
}
