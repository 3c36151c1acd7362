//! Bounded top-k selection without sorting everything.
//!
//! Entries that beat the current threshold are appended to a buffer; when
//! it holds a multiple of the kept entries (twice by default,
//! [`SURVIVOR_BUFFER`] times for Tier1's survivors, as the caller sets it
//! with [`TopK::reset_buffered`]), a linear-time selection keeps the best
//! `cap` and raises the threshold to the worst of them. A row that cannot enter
//! costs one comparison, one that can costs amortised O(1), where a binary
//! heap paid O(log cap) for every entry (measured: the heap was a fifth of
//! the query time with 200 survivors).

use std::cmp::Ordering;

/// How many times the kept entries Tier1's survivors buffer before a
/// selection ([`TopK::reset_survivors`]). Each selection costs about the
/// buffer's length, so a longer buffer selects less often per entry,
/// against a threshold raised less often (more entries pass it). At
/// debian-minilm-384's calibrated targets 0.9, 0.95 and 0.99, 3 instead of
/// 2 cut a query's instructions outside the kernels by 14%, 12% and 5%
/// (callgrind, 300 queries); 4 by 6% at 0.95. The survivors are the same
/// whatever the buffer, but for entries whose estimates tie exactly at
/// the threshold (kept or dropped by when the threshold moved). The exact
/// top-k keeps [`BUFFER`]: rescoring skips survivors by its threshold, so a
/// staler one rescores more rows and changes answers.
pub const SURVIVOR_BUFFER: usize = 3;

/// How many times the kept entries every other selection buffers
/// ([`TopK::reset`]). Rescoring skips survivors by the exact top-k's
/// threshold; a longer buffer leaves it staler, so more rows are rescored
/// and answers change (with 3, the frozen v4 answers did).
const BUFFER: usize = 2;

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

/// An entry packed so that a larger `u64` is a better entry: the score's
/// bits mapped to an order-preserving `u32` (the order of `total_cmp`) in
/// the high half, the complemented row in the low half (so ties go to the
/// lower row). Selecting and sorting plain integers is several times
/// cheaper than comparing `(score, row)` pairs with a closure.
#[inline]
fn pack(score: f32, row: u32) -> u64 {
    let b = score.to_bits();
    let ord = if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    };
    (u64::from(ord) << 32) | u64::from(!row)
}

/// The inverse of [`pack`].
#[inline]
fn unpack(key: u64) -> Scored {
    let ord = (key >> 32) as u32;
    let b = if ord & 0x8000_0000 != 0 {
        ord & 0x7FFF_FFFF
    } else {
        !ord
    };
    Scored {
        score: f32::from_bits(b),
        row: !(key as u32),
    }
}

/// The best `cap` entries seen so far.
#[derive(Debug, Clone)]
pub struct TopK {
    cap: usize,
    /// Entries buffered before a selection, in multiples of `cap`.
    buffer: usize,
    buf: Vec<u64>,
    threshold: f32,
}

impl Default for TopK {
    fn default() -> Self {
        TopK {
            cap: 0,
            buffer: BUFFER,
            buf: Vec::new(),
            threshold: f32::NEG_INFINITY,
        }
    }
}

impl TopK {
    /// Empties the selection and sets its capacity, keeping the allocation.
    pub fn reset(&mut self, cap: usize) {
        self.reset_buffered(cap, BUFFER);
    }

    /// [`TopK::reset`] for Tier1's survivors: a buffer of
    /// [`SURVIVOR_BUFFER`] times `cap`.
    pub fn reset_survivors(&mut self, cap: usize) {
        self.reset_buffered(cap, SURVIVOR_BUFFER);
    }

    /// [`TopK::reset`] with a buffer of `buffer` times `cap` (at least 2).
    pub fn reset_buffered(&mut self, cap: usize, buffer: usize) {
        let buffer = buffer.max(2);
        self.cap = cap;
        self.buffer = buffer;
        self.buf.clear();
        self.buf.reserve(buffer * cap);
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
        self.buf.push(pack(score, row));
        let n = self.buf.len();
        if n >= self.buffer * self.cap || (n == self.cap && self.threshold == f32::NEG_INFINITY) {
            self.select();
        }
    }

    /// Keeps the best `cap` entries and raises the threshold to the worst.
    fn select(&mut self) {
        let k = self.cap;
        if self.buf.len() > k {
            self.buf.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
            self.buf.truncate(k);
            // After the selection, position k - 1 holds the k-th best.
            self.threshold = self.threshold.max(unpack(self.buf[k - 1]).score);
        } else if let Some(&worst) = self.buf.iter().min() {
            self.threshold = self.threshold.max(unpack(worst).score);
        }
    }

    /// Offers every entry of another selection.
    pub fn merge(&mut self, other: &TopK) {
        for &key in &other.buf {
            let s = unpack(key);
            self.push(s.score, s.row);
        }
    }

    /// Moves the best `cap` entries into `out`, best first.
    pub fn drain_sorted(&mut self, out: &mut Vec<Scored>) {
        // Select first: the buffer can hold more than the kept entries.
        if self.buf.len() > self.cap {
            self.select();
        }
        self.buf.sort_unstable_by(|a, b| b.cmp(a));
        out.clear();
        out.extend(self.buf.drain(..).map(unpack));
        self.threshold = f32::NEG_INFINITY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_orders_like_total_cmp_then_row() {
        let xs = [
            f32::NEG_INFINITY,
            -1e30,
            -1.0,
            -0.0,
            0.0,
            1e-40,
            1.0,
            f32::INFINITY,
        ];
        for a in xs {
            for b in xs {
                for (ra, rb) in [(1u32, 2u32), (2, 1), (3, 3)] {
                    let want =
                        best_first(&Scored { score: a, row: ra }, &Scored { score: b, row: rb });
                    let got = pack(b, rb).cmp(&pack(a, ra));
                    assert_eq!(got, want, "{a} {ra} vs {b} {rb}");
                    assert_eq!(unpack(pack(a, ra)).score.to_bits(), a.to_bits());
                    assert_eq!(unpack(pack(a, ra)).row, ra);
                }
            }
        }
    }
}
