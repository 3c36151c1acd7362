//! Stage 1: the query, prepared once per search. See the blueprint, "Query
//! encoding".
use crate::error::{Error, Result};
use crate::index::Metric;
use crate::math::float::norm;
use crate::math::quantize::{sign_code, words_for, QueryPlanes};

/// Everything the later stages need to know about one query.
#[derive(Debug, Default, Clone)]
pub struct PreparedQuery {
    /// The query as scored in Tier2 (unit length for cosine).
    pub q: Vec<f32>,
    /// `q - mu`: the query relative to the Tier1 centroid.
    pub centered: Vec<f32>,
    /// Constant part of every estimate: `<q, mu>` (ip) or `-||q - mu||^2` (l2).
    pub offset: f32,
    /// `||q - mu||`, which scales the error bound.
    pub centered_norm: f32,
    /// Bit-planes of `q - mu` for the asymmetric scan.
    pub planes: QueryPlanes,
    /// Sign code of `q - mu` for the Hamming baseline.
    pub sign: Vec<u64>,
}

impl PreparedQuery {
    /// Checks and prepares `query` against an index with centroid `mu`.
    pub fn prepare(
        &mut self,
        query: &[f32],
        mu: &[f32],
        metric: Metric,
        bits: u8,
        seg_words: usize,
    ) -> Result<()> {
        if query.len() != mu.len() {
            return Err(Error::DimensionMismatch {
                expected: mu.len(),
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
        self.centered.clear();
        self.centered
            .extend(self.q.iter().zip(mu).map(|(q, m)| q - m));
        self.centered_norm = norm(&self.centered);
        self.offset = match metric {
            Metric::Cosine | Metric::Ip => self.q.iter().zip(mu).map(|(a, b)| a * b).sum(),
            Metric::L2 => -self.centered_norm * self.centered_norm,
        };
        self.planes
            .encode(&self.centered, usize::from(bits), seg_words);
        self.sign.clear();
        self.sign.resize(words_for(query.len()), 0);
        sign_code(&self.centered, &mut self.sign);
        Ok(())
    }
}
