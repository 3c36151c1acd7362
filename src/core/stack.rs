//! [`Stack`]: the index files one query reads, as one set of rows. Usually
//! one file; for a live collection, its segments, which share one set of
//! partitions (the same centroids, the same partition numbers), so a query
//! routes once and scans each probed partition in every segment, with one
//! pool of survivors and one rescoring. Rows are numbered across the files:
//! file `s` holds rows `starts[s]..starts[s + 1]`.
use super::mask::BlockRuns;
#[cfg(doc)]
use super::plan::QueryPlan;
use super::view::{Spill, View};

/// Views of files that share their partitions; the first one's centroids
/// and calibration drive routing and the plan.
pub struct Stack<'a> {
    views: Vec<View<'a>>,
    starts: Vec<usize>,
}

impl<'a> Stack<'a> {
    /// The rows of `views`, in order (at least one; every view has the
    /// partitions of the first, and all rows together fit in `u32`).
    pub fn new(views: Vec<View<'a>>) -> Self {
        let mut starts = Vec::with_capacity(views.len() + 1);
        starts.push(0);
        for v in &views {
            starts.push(starts[starts.len() - 1] + v.len());
        }
        debug_assert!(!views.is_empty());
        debug_assert!(views
            .iter()
            .all(|v| v.partitions() == views[0].partitions()));
        Stack { views, starts }
    }

    /// One file's rows.
    pub fn one(view: View<'a>) -> Self {
        Self::new(vec![view])
    }

    /// The first view: dimension, metric, kernels, centroids.
    pub fn first(&self) -> &View<'a> {
        &self.views[0]
    }

    /// The only view, when the stack is one file.
    #[inline]
    pub fn single(&self) -> Option<&View<'a>> {
        match self.views.as_slice() {
            [v] => Some(v),
            _ => None,
        }
    }

    /// The spilled entries a query scans (blueprint 3.4): a single file's,
    /// when the query may return every row and its plan wants them
    /// (`wanted`, [`QueryPlan::spill`]). Under a mask (a filter, deletions)
    /// only the rows are scanned, with the calibration's unspilled points:
    /// a filtered route opens partitions for their matches, and their
    /// entries, which could not skip the blocks without an allowed row,
    /// made a 10% anti-correlated filter on debian-minilm-384 2.5 times
    /// slower. A collection's segments have none.
    #[inline]
    pub fn spill(&self, wanted: bool) -> Option<&Spill<'a>> {
        let v = self.single().filter(|v| wanted && v.mask.is_none())?;
        v.spill.as_ref()
    }

    /// Every view with the number of its first row.
    pub fn parts(&self) -> impl Iterator<Item = (usize, &View<'a>)> {
        self.starts.iter().copied().zip(&self.views)
    }

    /// Rows in all views.
    pub fn len(&self) -> usize {
        self.starts[self.views.len()]
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows a query may return.
    pub fn allowed(&self) -> usize {
        self.views.iter().map(View::allowed).sum()
    }

    /// Code blocks holding a row a query may return, in every view.
    pub fn allowed_blocks(&self) -> BlockRuns {
        self.views.iter().map(View::allowed_blocks).sum()
    }

    /// Rows of partition `p` a query may return, in every view.
    pub fn allowed_in(&self, p: usize) -> usize {
        self.views.iter().map(|v| v.allowed_in(p)).sum()
    }

    /// [`Stack::allowed_in`] of every partition, one pass per view.
    pub fn allowed_per_partition(&self) -> Vec<u32> {
        let mut out = vec![0u32; self.first().partitions()];
        for v in &self.views {
            v.add_allowed_per_partition(&mut out);
        }
        out
    }

    /// Rows of partition `p` in every view (allowed or not).
    pub fn rows_in_partition(&self, p: usize) -> usize {
        self.views
            .iter()
            .map(|v| {
                let (a, b) = v.rows_of(p);
                b - a
            })
            .sum()
    }

    /// The view holding row `row` and the row's number in it.
    #[inline]
    pub fn locate(&self, row: usize) -> (&View<'a>, usize) {
        if self.views.len() == 1 {
            return (&self.views[0], row);
        }
        let s = self.starts.partition_point(|&st| st <= row) - 1;
        (&self.views[s], row - self.starts[s])
    }

    /// Document id of row `row`.
    #[inline]
    pub fn id(&self, row: usize) -> i64 {
        let (v, r) = self.locate(row);
        v.ids[r]
    }
}
