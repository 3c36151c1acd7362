//! Stage 1: the query, encoded once per search ([`PreparedQuery`]), plus the
//! two numbers each probed partition needs ([`Probe`]). See the blueprint,
//! "Query encoding".
//!
//! The codes of partition `p` are signs of `x - c_p`, and Tier1 needs
//! `<q - c_p, s>` for a row's sign vector `s`. That is `<q, s> - <c_p, s>`;
//! the second term does not depend on the query, so the builder folds it
//! into each row's bias and one encoding of `q` serves every partition.
use crate::error::{Error, Result};
use crate::index::build::MAX_NORM2;
use crate::index::Metric;
use crate::math::quantize::{sign_code, words_for, QueryPlanes};

/// The checked query and its Tier1 encoding.
#[derive(Debug, Default, Clone)]
pub struct PreparedQuery {
    /// The query vector as scored in Tier2 (unit length for cosine).
    pub q: Vec<f32>,
    /// `||q||^2`.
    pub norm2: f32,
    /// Bit-planes of `q` for the asymmetric scan.
    pub planes: QueryPlanes,
    /// Sign code of `q - anchor` of the partition being scanned (Hamming
    /// baseline only; it cannot be folded like the asymmetric estimate).
    pub sign: Vec<u64>,
}

impl PreparedQuery {
    /// Checks `query` (dimension, finiteness, non-zero for cosine),
    /// normalises it for cosine and encodes its bit-planes.
    pub fn prepare(
        &mut self,
        query: &[f32],
        dim: usize,
        metric: Metric,
        bits: u8,
        seg_words: usize,
    ) -> Result<()> {
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
        let norm2: f64 = query.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        if norm2 > MAX_NORM2 {
            return Err(Error::InvalidVector(
                "the query has a squared norm above 2^100: float32 scores of values this \
                 large overflow to infinity"
                    .into(),
            ));
        }
        self.q.clear();
        self.q.extend_from_slice(query);
        let n = norm2.sqrt() as f32;
        if metric == Metric::Cosine {
            if n == 0.0 {
                return Err(Error::InvalidVector(
                    "the query is a zero vector, which has no cosine similarity".into(),
                ));
            }
            self.q.iter_mut().for_each(|x| *x /= n);
        }
        self.norm2 = if metric == Metric::Cosine { 1.0 } else { n * n };
        self.planes.encode(&self.q, usize::from(bits), seg_words);
        Ok(())
    }

    /// Sets `sign` to the sign code of `q - anchor` (Hamming baseline).
    pub fn encode_sign(&mut self, anchor: &[f32]) {
        self.sign.clear();
        self.sign.resize(words_for(self.q.len()), 0);
        let centered: Vec<f32> = self.q.iter().zip(anchor).map(|(q, a)| q - a).collect();
        sign_code(&centered, &mut self.sign);
    }
}

/// What Tier1 needs to know about one probed partition.
#[derive(Debug, Clone, Copy, Default)]
pub struct Probe {
    /// The partition.
    pub partition: usize,
    /// Constant part of its estimates: `<q, anchor>` (ip) or
    /// `-||q - anchor||^2` (l2).
    pub offset: f32,
    /// `||q - anchor||`, which scales the error bound.
    pub centered_norm: f32,
}

impl Probe {
    /// From `<q, anchor>`, `||q||^2` and `||anchor||^2`.
    pub fn new(partition: usize, metric: Metric, q_dot_a: f32, q_norm2: f32, a_norm2: f32) -> Self {
        let d2 = (q_norm2 - 2.0 * q_dot_a + a_norm2).max(0.0);
        let offset = match metric {
            Metric::Cosine | Metric::Ip => q_dot_a,
            Metric::L2 => -d2,
        };
        Probe {
            partition,
            offset,
            centered_norm: d2.sqrt(),
        }
    }
}
