//! Bounded top-k selection without sorting everything.
//!
//! Entries that beat the current threshold are appended to a buffer; when
//! it holds `2 cap` entries, a linear-time selection keeps the best `cap`
//! and raises the threshold to the worst of them. A row that cannot enter
//! costs one comparison, one that can costs amortised O(1), where a binary
//! heap paid O(log cap) for every entry (measured: the heap was a fifth of
//! the query time with 200 survivors).

use std::cmp::Ordering;

/// A scored row. Higher `score` is better; ties go to the lower row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Higher is better.
    pub score: f32,
    /// Row in the index.
    pub row: u32,
}

/// Best first: higher score, then lower row.
#[inline]
pub fn best_first(a: &Scored, b: &Scored) -> Ordering {
    b.score.total_cmp(&a.score).then(a.row.cmp(&b.row))
}

/// The best `cap` entries seen so far.
#[derive(Debug, Clone)]
pub struct TopK {
    cap: usize,
    buf: Vec<Scored>,
    threshold: f32,
}

impl Default for TopK {
    fn default() -> Self {
        TopK {
            cap: 0,
            buf: Vec::new(),
            threshold: f32::NEG_INFINITY,
        }
    }
}

impl TopK {
    /// Empties the selection and sets its capacity, keeping the allocation.
    pub fn reset(&mut self, cap: usize) {
        self.cap = cap;
        self.buf.clear();
        self.buf.reserve(2 * cap);
        self.threshold = f32::NEG_INFINITY;
    }

    /// The capacity set by the last `reset`.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Number of entries that will be kept (at most `cap`).
    pub fn len(&self) -> usize {
        self.buf.len().min(self.cap)
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// True once `cap` entries have been offered and kept.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.buf.len() >= self.cap
    }

    /// A score below which an entry cannot be among the best `cap`: the
    /// worst kept score at the last selection (-inf before the first).
    /// It never exceeds the true cap-th best score, so pruning with it is safe.
    #[inline]
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Offers one entry.
    #[inline]
    pub fn push(&mut self, score: f32, row: u32) {
        if self.cap == 0 || score < self.threshold {
            return;
        }
        self.buf.push(Scored { score, row });
        let n = self.buf.len();
        if n >= 2 * self.cap || (n == self.cap && self.threshold == f32::NEG_INFINITY) {
            self.select();
        }
    }

    /// Keeps the best `cap` entries and raises the threshold to the worst.
    fn select(&mut self) {
        let k = self.cap;
        if self.buf.len() > k {
            self.buf.select_nth_unstable_by(k - 1, best_first);
            self.buf.truncate(k);
        }
        if let Some(worst) = self.buf.iter().map(|s| s.score).reduce(f32::min) {
            self.threshold = self.threshold.max(worst);
        }
    }

    /// Offers every entry of another selection.
    pub fn merge(&mut self, other: &TopK) {
        for s in &other.buf {
            self.push(s.score, s.row);
        }
    }

    /// Moves the best `cap` entries into `out`, best first.
    pub fn drain_sorted(&mut self, out: &mut Vec<Scored>) {
        self.buf.sort_unstable_by(best_first);
        self.buf.truncate(self.cap);
        out.clear();
        out.append(&mut self.buf);
        self.threshold = f32::NEG_INFINITY;
    }
}
