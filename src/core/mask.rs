//! [`RowMask`]: which stored rows of one index a query may return. Live
//! collections mask deleted rows with it, filters non-matching ones. Tier1 ANDs it into the kernel's per-block survivor mask, so a
//! masked row never takes a candidate slot; routing counts allowed rows
//! when it tops a query up to `k`; brute force skips masked rows.
use crate::math::bits::{count_ones, count_ranges, BLOCK};

/// Code blocks holding an allowed row and the runs they form
/// ([`RowMask::allowed_blocks`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockRuns {
    pub blocks: usize,
    pub runs: usize,
}

impl std::iter::Sum for BlockRuns {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |a, b| BlockRuns {
            blocks: a.blocks + b.blocks,
            runs: a.runs + b.runs,
        })
    }
}

/// Bit `i` of the result is bit `8 i` of `x` (whose other bits are 0).
#[inline]
fn pack_low_bits(x: u64) -> u64 {
    // Each set bit 8i times the constant's bit 7(7 - i) + 7 lands on bit 56
    // + i; no other product reaches the top byte or carries into it.
    x.wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// A bitset over stored rows: bit set = the row may be returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMask {
    /// Bit `r % 64` of word `r / 64` is row `r`; bits past `len` are 0.
    words: Vec<u64>,
    len: usize,
    allowed: usize,
}

// A Tier1 code block is 8 rows: one byte of the mask.
const _: () = assert!(BLOCK == 8);

impl RowMask {
    /// Every one of `len` rows allowed.
    pub fn all(len: usize) -> Self {
        let mut words = vec![u64::MAX; len.div_ceil(64)];
        if !len.is_multiple_of(64) {
            if let Some(last) = words.last_mut() {
                *last = (1u64 << (len % 64)) - 1;
            }
        }
        RowMask {
            words,
            len,
            allowed: len,
        }
    }

    /// None of `len` rows allowed.
    pub fn none(len: usize) -> Self {
        RowMask {
            words: vec![0; len.div_ceil(64)],
            len,
            allowed: 0,
        }
    }

    /// Lets `fill` allow rows by setting bits of the words directly (rows
    /// one by one with [`set_bits`], or whole bitmaps), then
    /// counts once: the thousands of rows a filter's leaf matches cost a
    /// bit each, not a bookkeeping step each.
    pub fn fill(&mut self, fill: impl FnOnce(&mut [u64])) {
        fill(&mut self.words);
        if !self.len.is_multiple_of(64) {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << (self.len % 64)) - 1;
            }
        }
        self.recount();
    }

    /// [`RowMask::fill`] for a caller that knows how many rows `fill`
    /// allows (disjoint posting rows of distinct values): no recount, which
    /// was about a tenth of a selective filtered query on 1M rows.
    pub fn fill_counted(&mut self, allowed: usize, fill: impl FnOnce(&mut [u64])) {
        debug_assert_eq!(self.allowed, 0, "fill_counted needs an empty mask");
        fill(&mut self.words);
        self.allowed = allowed;
        debug_assert_eq!(self.allowed, count_ones(&self.words));
    }

    /// Keeps only rows both masks allow (same `len`).
    pub fn and_with(&mut self, other: &RowMask) {
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w &= o;
        }
        self.recount();
    }

    /// Allows rows either mask allows (same `len`).
    pub fn or_with(&mut self, other: &RowMask) {
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w |= o;
        }
        self.recount();
    }

    /// Allows exactly the rows that were not allowed.
    pub fn invert(&mut self) {
        for w in &mut self.words {
            *w = !*w;
        }
        if !self.len.is_multiple_of(64) {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << (self.len % 64)) - 1;
            }
        }
        self.recount();
    }

    fn recount(&mut self) {
        self.allowed = count_ones(&self.words);
    }

    /// The allowed rows of `start..end`, ascending, a word at a time (rows
    /// in all-zero words cost nothing).
    pub fn ones_in(&self, start: usize, end: usize) -> impl Iterator<Item = usize> + '_ {
        let end = end.min(self.len);
        let (w0, w1) = (start / 64, end.div_ceil(64));
        (w0..w1.max(w0)).flat_map(move |wi| {
            let mut w = self.words[wi];
            std::iter::from_fn(move || {
                while w != 0 {
                    let r = wi * 64 + w.trailing_zeros() as usize;
                    w &= w - 1;
                    if (start..end).contains(&r) {
                        return Some(r);
                    }
                }
                None
            })
        })
    }

    /// Rows covered (allowed or not).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a mask over no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows allowed.
    pub fn allowed(&self) -> usize {
        self.allowed
    }

    /// Whether row `row` is allowed (`false` past the end).
    #[inline]
    pub fn get(&self, row: usize) -> bool {
        self.words
            .get(row / 64)
            .is_some_and(|w| w >> (row % 64) & 1 == 1)
    }

    /// Disallows row `row`; returns whether it was allowed.
    pub fn clear(&mut self, row: usize) -> bool {
        let was = self.get(row);
        if was {
            self.words[row / 64] &= !(1u64 << (row % 64));
            self.allowed -= 1;
        }
        was
    }

    /// The allowed-bits of code block `block` (rows `8 block ..`), in the
    /// layout of the Tier1 kernel's survivor mask (bit `i` = row `8 block + i`).
    #[inline]
    pub fn block_bits(&self, block: usize) -> u8 {
        self.words
            .get(block / 8)
            .map_or(0, |w| (w >> (8 * (block % 8))) as u8)
    }

    /// The first code block from `block` on (before `last`) holding an
    /// allowed row; `last` when none does. Empty words are skipped whole.
    pub fn next_allowed_block(&self, mut block: usize, last: usize) -> usize {
        while block < last {
            let w = block / 8;
            let Some(&word) = self.words.get(w) else {
                return last;
            };
            let rest = word >> (8 * (block % 8));
            if rest == 0 {
                block = (w + 1) * 8;
                continue;
            }
            let found = block + rest.trailing_zeros() as usize / 8;
            return found.min(last);
        }
        last
    }

    /// Whether every code block `first..last` holds an allowed row (a
    /// zero-byte test per word, where asking block by block cost a tenth
    /// of a scan under a broad filter).
    pub fn blocks_all_allowed(&self, first: usize, last: usize) -> bool {
        const LOW: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        if first >= last {
            return true;
        }
        for w in first / 8..=(last - 1) / 8 {
            let Some(&word) = self.words.get(w) else {
                return false;
            };
            // Bytes outside `first..last` count as allowed.
            let lo = (first.max(w * 8) - w * 8) as u32;
            let hi = (last.min(w * 8 + 8) - w * 8) as u32;
            let inside = (u64::MAX >> (64 - 8 * (hi - lo))) << (8 * lo);
            let v = word | (LOW & !inside);
            if v.wrapping_sub(LOW) & !v & HIGH != 0 {
                return false;
            }
        }
        true
    }

    /// Code blocks (8 rows, a byte of a word) holding an allowed row, and
    /// the runs they form when gaps of at most `gap` (below 8) empty blocks
    /// are read through, as Tier1 reads them: each run is a jump to a new
    /// place in memory.
    pub fn allowed_blocks(&self, gap: usize) -> BlockRuns {
        debug_assert!(gap < 8);
        let mut out = BlockRuns::default();
        // The previous word's blocks, one bit each (bit i = byte i).
        let mut prev = 0u64;
        for &w in &self.words {
            // A bit per non-zero byte: OR each byte's bits into its low bit.
            let b = w | (w >> 4);
            let b = b | (b >> 2);
            let b = b | (b >> 1);
            let blocks = pack_low_bits(b & 0x0101_0101_0101_0101);
            out.blocks += blocks.count_ones() as usize;
            // Bits 0..8 the previous word's blocks, 8..16 this word's: a
            // block starts a run when none of the `gap + 1` before it is set.
            let v = (blocks << 8) | prev;
            let near = (1..=gap + 1).fold(0u64, |acc, s| acc | (v << s));
            out.runs += ((v & !near) >> 8 & 0xFF).count_ones() as usize;
            prev = blocks;
        }
        out
    }

    /// Allowed rows in `start..end` (a partition: a few words, inline
    /// `count_ones` beats a dispatched call).
    pub fn count_range(&self, start: usize, end: usize) -> usize {
        let end = end.min(self.len);
        if start >= end {
            return 0;
        }
        let (w0, w1) = (start / 64, (end - 1) / 64);
        let lo = u64::MAX << (start % 64);
        let hi = u64::MAX >> (63 - (end - 1) % 64);
        if w0 == w1 {
            return (self.words[w0] & lo & hi).count_ones() as usize;
        }
        let mid: u32 = self.words[w0 + 1..w1].iter().map(|w| w.count_ones()).sum();
        ((self.words[w0] & lo).count_ones() + mid + (self.words[w1] & hi).count_ones()) as usize
    }

    /// Adds to `out[p]` the allowed rows in `offsets[p]..offsets[p + 1]`
    /// (`offsets` non-decreasing), for every partition in one pass
    /// ([`count_ranges`]).
    pub fn count_ranges(&self, offsets: &[u64], out: &mut [u32]) {
        count_ranges(&self.words, self.len, offsets, out);
    }

    /// The disallowed rows, ascending.
    pub fn cleared(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).filter(|&r| !self.get(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::bits::{count_ranges_portable, set_bits};

    #[test]
    fn count_ranges_equals_counting_each_range() {
        // Masks of 1000 rows and partitions of 0 to 150 rows, from a fixed
        // pseudo-random sequence; both the dispatched and the portable pass.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..100 {
            let mut m = RowMask::none(1000);
            let rows: Vec<u32> = (0..1000u32).filter(|_| next() % 7 < 2).collect();
            m.fill(|w| set_bits(w, &rows));
            let mut offsets = vec![0u64];
            while *offsets.last().unwrap() < 1000 {
                let step = next() % 151;
                offsets.push((offsets.last().unwrap() + step).min(1000));
            }
            let parts = offsets.len() - 1;
            let want: Vec<u32> = (0..parts)
                .map(|p| 1 + m.count_range(offsets[p] as usize, offsets[p + 1] as usize) as u32)
                .collect();
            let mut got = vec![1u32; parts];
            m.count_ranges(&offsets, &mut got);
            assert_eq!(got, want);
            let mut portable = vec![1u32; parts];
            count_ranges_portable(&m.words, m.len, &offsets, &mut portable);
            assert_eq!(portable, want);
        }
    }

    #[test]
    fn blocks_all_allowed_equals_asking_block_by_block() {
        // Masks of 300 rows (38 blocks) with a few rows allowed per block,
        // and some blocks emptied, from a fixed pseudo-random sequence.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            let mut m = RowMask::none(300);
            let mut rows = Vec::new();
            for r in 0..300u32 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x % 5 < 3 {
                    rows.push(r);
                }
            }
            let empty = (x % 38) as usize;
            rows.retain(|&r| r as usize / 8 != empty);
            m.fill(|w| set_bits(w, &rows));
            for first in 0..38 {
                for last in first..=38 {
                    let slow = (first..last).all(|b| m.block_bits(b) != 0);
                    assert_eq!(m.blocks_all_allowed(first, last), slow, "{first}..{last}");
                }
            }
        }
    }

    #[test]
    fn block_runs_equal_counting_block_by_block() {
        // Sparse masks of 1,000 rows (125 blocks, words and their edges
        // crossed by runs and gaps), from a fixed pseudo-random sequence.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for density in [2u64, 8, 40, 200] {
            for _ in 0..50 {
                let rows: Vec<u32> = (0..1_000u32)
                    .filter(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x.is_multiple_of(density)
                    })
                    .collect();
                let mut m = RowMask::none(1_000);
                m.fill(|w| set_bits(w, &rows));
                for gap in 0..8 {
                    let held: Vec<bool> = (0..125).map(|b| m.block_bits(b) != 0).collect();
                    let blocks = held.iter().filter(|&&h| h).count();
                    // A run starts at a held block with no held block among
                    // the `gap + 1` before it.
                    let runs = (0..125)
                        .filter(|&b| held[b] && (b.saturating_sub(gap + 1)..b).all(|p| !held[p]))
                        .count();
                    assert_eq!(
                        m.allowed_blocks(gap),
                        BlockRuns { blocks, runs },
                        "gap {gap}"
                    );
                }
            }
        }
    }
}
