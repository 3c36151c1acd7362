//! What a score means under each metric: the one place that matches on
//! [`Metric`]. Internally every score is "higher is better" (`-||q - x||^2`
//! for l2), so the pipeline never asks which metric it runs.
use serde::{Deserialize, Serialize};

use crate::math::Kernels;

/// Similarity measure an index is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine similarity: vectors are normalised at build and query time.
    Cosine,
    /// Inner product (higher is better).
    Ip,
    /// Squared Euclidean distance (lower is better).
    L2,
}

impl Metric {
    /// Parses `"cosine" | "ip" | "l2"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cosine" => Some(Metric::Cosine),
            "ip" => Some(Metric::Ip),
            "l2" => Some(Metric::L2),
            _ => None,
        }
    }

    /// The lowercase name used in manifests and the Python API.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Ip => "ip",
            Metric::L2 => "l2",
        }
    }

    /// True for cosine: rows and queries are scaled to unit length, and the
    /// index then answers inner products.
    pub fn normalizes(self) -> bool {
        self == Metric::Cosine
    }

    /// True for l2, whose internal scores are negated distances: users get
    /// them back as distances (ascending).
    pub fn is_distance(self) -> bool {
        self == Metric::L2
    }

    /// Exact internal score of `v` for query `q`: `<q, v>`, or `-||q - v||^2`.
    #[inline]
    pub fn score(self, kernels: &Kernels, q: &[f32], v: &[f32]) -> f32 {
        if self.is_distance() {
            -(kernels.l2sq)(q, v)
        } else {
            (kernels.dot)(q, v)
        }
    }

    /// The part of a row's Tier1 estimate that depends only on its anchor:
    /// `<q, a>` for ip and cosine, `-||q - a||^2` for l2.
    #[inline]
    pub fn anchor_offset(self, q_dot_a: f32, dist2: f32) -> f32 {
        if self.is_distance() {
            -dist2
        } else {
            q_dot_a
        }
    }

    /// Weight of the estimated `<q - a, x - a>` in a row's score: 1 for ip and
    /// cosine, 2 for l2 (`-||q - x||^2 = -||q - a||^2 - ||x - a||^2 + 2 <q - a, x - a>`).
    #[inline]
    pub fn estimate_weight(self) -> f32 {
        if self.is_distance() {
            2.0
        } else {
            1.0
        }
    }
}
