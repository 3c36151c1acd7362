//! Per-query knobs of each pipeline stage. Defaults live in one place
//! ([`SearchParams::default`]); Python mirrors them in `schemas.py`.
use crate::error::{Error, Result};

/// How Tier1 scores a code against the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier1Mode {
    /// Float query (quantized to `query_bits` levels) against the sign
    /// codes, with per-row correction factors. The default.
    Asymmetric,
    /// Hamming distance between the query's sign code and the row codes:
    /// the classic symmetric binary-quantization baseline.
    Hamming,
}

/// Knobs of one search. `exact` bypasses every approximate stage.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchParams {
    /// Number of results wanted (clamped to the index size).
    pub k: usize,
    /// Score every vector exactly in float32 (brute force).
    pub exact: bool,
    /// Tier1 survivors handed to Tier2 (at least `k`; 0 = automatic).
    pub candidates: usize,
    /// Partitions whose codes Tier1 scans (0 = automatic).
    pub nprobe: usize,
    /// Most extra partitions centroid expansion may open (0 = automatic).
    pub expand_probes: usize,
    /// Expansion opens a partition if its squared centroid distance is at
    /// most `(1 + expand_ratio)` times the nearest one's.
    pub expand_ratio: f32,
    /// Bits per query level in the asymmetric Tier1 estimate (1..=8).
    pub query_bits: u8,
    /// Tier1 scoring mode.
    pub tier1: Tier1Mode,
    /// Dimension segments the code is split into for voting (1 = no voting).
    pub segments: usize,
    /// Rows ranked in a segment's top `vote_top` get that segment's vote.
    pub vote_top: usize,
    /// Votes a row needs to survive when Tier1's total score missed it.
    pub min_votes: usize,
    /// Centroid expansion: rescore survivors in Tier1 order and skip those
    /// whose error bound says they cannot reach the current top-k.
    pub expansion: bool,
    /// Width of the error bound, in units of its standard deviation.
    pub epsilon: f32,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams {
            k: 10,
            exact: false,
            candidates: 0,
            nprobe: 0,
            expand_probes: 0,
            expand_ratio: 0.7,
            query_bits: 4,
            tier1: Tier1Mode::Asymmetric,
            segments: 1,
            vote_top: 64,
            min_votes: 2,
            expansion: true,
            epsilon: 3.0,
        }
    }
}

impl SearchParams {
    /// Rejects values outside their ranges, naming the parameter.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(Error::param("k", "must be at least 1"));
        }
        if !(1..=8).contains(&self.query_bits) {
            return Err(Error::param(
                "query_bits",
                format!("{} is not in 1..=8", self.query_bits),
            ));
        }
        if self.segments == 0 {
            return Err(Error::param("segments", "must be at least 1"));
        }
        if self.segments > 1 && (self.vote_top == 0 || self.min_votes == 0) {
            return Err(Error::param(
                "vote_top",
                "voting needs vote_top >= 1 and min_votes >= 1",
            ));
        }
        if !self.epsilon.is_finite() || self.epsilon < 0.0 {
            return Err(Error::param(
                "epsilon",
                format!("{} is not a finite value >= 0", self.epsilon),
            ));
        }
        Ok(())
    }

    /// Partitions probed first, for an index with `partitions` partitions.
    pub fn effective_nprobe(&self, partitions: usize) -> usize {
        let p = if self.nprobe == 0 {
            auto_nprobe(partitions)
        } else {
            self.nprobe
        };
        p.clamp(1, partitions.max(1))
    }

    /// The cap on partitions opened by expansion beyond `nprobe`.
    pub fn effective_expand_probes(&self, partitions: usize) -> usize {
        let nprobe = self.effective_nprobe(partitions);
        let e = if self.expand_probes == 0 {
            auto_expand_probes(nprobe)
        } else {
            self.expand_probes
        };
        e.min(partitions.saturating_sub(nprobe))
    }

    /// The survivor count actually used for an index of `n` rows.
    pub fn effective_candidates(&self, n: usize) -> usize {
        let c = if self.candidates == 0 {
            auto_candidates(self.k)
        } else {
            self.candidates
        };
        c.max(self.k).min(n)
    }
}

/// Default Tier1 survivors: `max(20 k, 200)`. The error bound, not this
/// cap, decides how many are rescored (about 60 for k = 10 on
/// debian-minilm-384, where 100 would do and save ~15% of the time); on
/// harder data (overlapping clusters) every survivor gets rescored and
/// recall needs the larger cap.
pub fn auto_candidates(k: usize) -> usize {
    k.saturating_mul(20).max(200)
}

/// Default probes before expansion: 1/10 of the partitions, at least 8.
pub fn auto_nprobe(partitions: usize) -> usize {
    (partitions / 10).max(8)
}

/// Default cap on expansion: twice the base probes, so the slowest query
/// scans at most three times the rows of the fastest (flat p99). Uncapped
/// (up to half the partitions), queries far from every centroid opened
/// them all: p99/p50 2.9 on debian-minilm-384 and 40% of the rows of the
/// 1M synthetic set.
pub fn auto_expand_probes(nprobe: usize) -> usize {
    nprobe.saturating_mul(2)
}
