//! Which partition holds a position: a stored row (partition `p` holds rows
//! `offsets[p]..offsets[p + 1]`) or a spilled entry (the same, over the
//! spill's offsets).
//!
//! Rescoring asks this for every survivor (its error bound is the
//! partition's) and Tier1 for every spilled entry that passes (whether its
//! row's own partition is probed). A binary search over the offsets is a
//! chain of about `log2 L` dependent loads: on debian-minilm-384 it was a
//! third of a calibration query's own time at 10,000 survivors. A
//! [`Guide`] holds the partition at every `2^shift`-th position, with
//! `2^shift` at most half the mean partition, so a lookup is one load and,
//! on average, less than one step forward.

/// The partition at every `2^shift`-th position of one offsets table:
/// about 2 to 4 entries per partition, built once when a file opens.
#[derive(Debug, Clone, Default)]
pub struct Guide {
    shift: u32,
    first: Vec<u32>,
}

impl Guide {
    /// The guide of `offsets` (non-decreasing from 0, as files are checked
    /// to be at open).
    pub fn new(offsets: &[u64]) -> Self {
        let parts = offsets.len().saturating_sub(1);
        let n = offsets.last().copied().unwrap_or(0) as usize;
        if parts == 0 || n == 0 {
            return Guide::default();
        }
        let half_mean = (n / parts / 2).max(1);
        let shift = usize::BITS - 1 - half_mean.leading_zeros();
        let step = 1usize << shift;
        let mut first = Vec::with_capacity(n.div_ceil(step));
        let mut p = 0;
        for i in (0..n).step_by(step) {
            while offsets[p + 1] as usize <= i {
                p += 1;
            }
            first.push(p as u32);
        }
        Guide { shift, first }
    }
}

/// An offsets table with its [`Guide`].
#[derive(Clone, Copy)]
pub struct Locate<'a> {
    offsets: &'a [u64],
    guide: &'a Guide,
}

impl<'a> Locate<'a> {
    /// `offsets` looked up through `guide` (which must be `offsets`' own).
    pub fn new(offsets: &'a [u64], guide: &'a Guide) -> Self {
        Locate { offsets, guide }
    }

    /// The partition whose range holds position `i`: the last `p` with
    /// `offsets[p] <= i`, as [`partition_at`] finds it (positions past the
    /// end give the partition count, as there).
    #[inline]
    pub fn partition_of(&self, i: usize) -> usize {
        let g = self.guide;
        let Some(&start) = g.first.get(i >> g.shift) else {
            return partition_at(self.offsets, i);
        };
        let mut p = start as usize;
        while self.offsets.get(p + 1).is_some_and(|&o| o as usize <= i) {
            p += 1;
        }
        p
    }
}

/// The partition whose range `offsets[p]..offsets[p + 1]` holds position
/// `i`, by binary search (for one-off lookups; [`Locate`] in query paths).
#[inline]
pub fn partition_at(offsets: &[u64], i: usize) -> usize {
    offsets
        .partition_point(|&o| o <= i as u64)
        .saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_agrees_with_binary_search() {
        // Empty partitions, one-row partitions, a large one, at the ends too.
        let tables: [&[u64]; 5] = [
            &[0, 0, 3, 3, 4, 100, 100, 101, 250, 250],
            &[0, 1],
            &[0, 7],
            &[0, 1, 2, 3, 4, 5, 6, 7, 8],
            &[0, 0, 0, 64, 64, 65, 1000],
        ];
        for offsets in tables {
            let guide = Guide::new(offsets);
            let locate = Locate::new(offsets, &guide);
            let n = *offsets.last().unwrap() as usize;
            for i in 0..n + 3 {
                assert_eq!(
                    locate.partition_of(i),
                    partition_at(offsets, i),
                    "{offsets:?} {i}"
                );
            }
        }
    }
}
