//! Stage 1: the query, checked and encoded once per search. See the
//! blueprint, "Query encoding".
//!
//! The codes of partition `p` are signs of `x - c_p`, and Tier1 needs
//! `<q - c_p, s>` for a row's sign vector `s`. That is `<q, s> - <c_p, s>`;
//! the second term does not depend on the query, so the builder folds it
//! into each row's bias and one encoding of `q` serves every partition.
use crate::error::{Error, Result};
use crate::limits::{norm2_f64, MAX_NORM2};
use crate::math::int8::{bias_query, quantize_i8, widen_query};
use crate::math::quantize::QueryPlanes;
use crate::math::Kernels;
use crate::metric::Metric;

/// The checked query and its Tier1 encoding.
#[derive(Debug, Default, Clone)]
pub struct PreparedQuery {
    /// The query vector as scored in Tier2 (unit length for cosine).
    pub q: Vec<f32>,
    /// `||q||^2`.
    pub norm2: f32,
    /// Bit-planes of `q` for the asymmetric scan.
    pub planes: QueryPlanes,
    /// `q` quantized to int8 (`q ~= q8_scale * q8`).
    q8: Vec<i8>,
    /// `q8` widened for the router's pair kernel ([`widen_query`]).
    pub q16: Vec<i16>,
    /// `q8` biased to u8 for the router's quad kernel ([`bias_query`]).
    pub qu8: Vec<u8>,
    /// Scale of `q8`.
    pub q8_scale: f32,
}

impl PreparedQuery {
    /// Checks and normalises `query` ([`PreparedQuery::check`]), then
    /// encodes its bit-planes and its int8 form in the layout the router of
    /// `kernels` reads (i16 pairs, or u8 quads with AVX-512 VNNI).
    pub fn prepare(
        &mut self,
        query: &[f32],
        dim: usize,
        metric: Metric,
        bits: u8,
        kernels: &Kernels,
    ) -> Result<()> {
        self.check(query, dim, metric)?;
        self.planes.encode(&self.q, usize::from(bits));
        self.q8_scale = quantize_i8(&self.q, &mut self.q8);
        if kernels.dot_i8_quads.is_some() {
            bias_query(&self.q8, &mut self.qu8);
        } else {
            widen_query(&self.q8, &mut self.q16);
        }
        Ok(())
    }

    /// Checks `query` (dimension, finiteness, magnitude, non-zero for
    /// cosine) into `q`, normalised for cosine, and sets `norm2`; encodes
    /// nothing.
    pub fn check(&mut self, query: &[f32], dim: usize, metric: Metric) -> Result<()> {
        if query.len() != dim {
            return Err(Error::DimensionMismatch {
                expected: dim,
                got: query.len(),
            });
        }
        // A fold without early exit vectorizes; the position is looked up
        // only for the error.
        if !query.iter().fold(true, |ok, x| ok & x.is_finite()) {
            let col = query.iter().position(|x| !x.is_finite()).unwrap_or(0);
            return Err(Error::NonFinite {
                what: "query",
                row: 0,
                col,
            });
        }
        let norm2 = norm2_f64(query);
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
        if metric.normalizes() {
            if n == 0.0 {
                return Err(Error::InvalidVector(
                    "the query is a zero vector, which has no cosine similarity".into(),
                ));
            }
            self.q.iter_mut().for_each(|x| *x /= n);
        }
        self.norm2 = if metric.normalizes() { 1.0 } else { n * n };
        Ok(())
    }
}
