//! Stage 1: the query, prepared once per search ([`PreparedQuery`]) and
//! once per probed partition ([`ProbeQuery`]). See the blueprint, "Query
//! encoding".
use crate::error::{Error, Result};
use crate::index::Metric;
use crate::math::float::norm;
use crate::math::quantize::{sign_code, words_for, QueryPlanes};

/// The checked query, as scored in Tier2 (unit length for cosine).
#[derive(Debug, Default, Clone)]
pub struct PreparedQuery {
    /// The query vector.
    pub q: Vec<f32>,
}

impl PreparedQuery {
    /// Checks `query` (dimension, finiteness, non-zero for cosine) and
    /// normalises it for cosine.
    pub fn prepare(&mut self, query: &[f32], dim: usize, metric: Metric) -> Result<()> {
        if query.len() != dim {
            return Err(Error::DimensionMismatch {
                expected: dim,
                got: query.len(),
            });
        }
        if let Some(col) = query.iter().position(|x| !x.is_finite()) {
            return Err(Error::NonFinite {
                what: "query",
                row: 0,
                col,
            });
        }
        self.q.clear();
        self.q.extend_from_slice(query);
        if metric == Metric::Cosine {
            let n = norm(query);
            if n == 0.0 {
                return Err(Error::InvalidVector(
                    "the query is a zero vector, which has no cosine similarity".into(),
                ));
            }
            self.q.iter_mut().for_each(|x| *x /= n);
        }
        Ok(())
    }
}

/// The query relative to one partition's anchor (its centroid).
#[derive(Debug, Default, Clone)]
pub struct ProbeQuery {
    /// `q - anchor`.
    pub centered: Vec<f32>,
    /// Constant part of the partition's estimates: `<q, anchor>` (ip) or
    /// `-||q - anchor||^2` (l2).
    pub offset: f32,
    /// `||q - anchor||`, which scales the error bound.
    pub centered_norm: f32,
    /// Bit-planes of `q - anchor` for the asymmetric scan.
    pub planes: QueryPlanes,
    /// Sign code of `q - anchor` for the Hamming baseline.
    pub sign: Vec<u64>,
}

impl ProbeQuery {
    /// Encodes `q` against `anchor`.
    pub fn prepare(
        &mut self,
        q: &[f32],
        anchor: &[f32],
        metric: Metric,
        bits: u8,
        seg_words: usize,
    ) {
        self.centered.clear();
        self.centered
            .extend(q.iter().zip(anchor).map(|(q, m)| q - m));
        self.centered_norm = norm(&self.centered);
        self.offset = match metric {
            Metric::Cosine | Metric::Ip => q.iter().zip(anchor).map(|(a, b)| a * b).sum(),
            Metric::L2 => -self.centered_norm * self.centered_norm,
        };
        self.planes
            .encode(&self.centered, usize::from(bits), seg_words);
        self.sign.clear();
        self.sign.resize(words_for(q.len()), 0);
        sign_code(&self.centered, &mut self.sign);
    }
}
