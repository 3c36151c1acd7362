//! `_Params`: the search knobs, converted once from the pydantic model and
//! reused, so no Python object is parsed on the query path.
use pyo3::prelude::*;

use crate::core::{SearchParams, Tier1Mode};
use crate::error::Error;

/// Frozen, validated search parameters (everything but `k`).
#[pyclass(frozen, name = "_Params", module = "svve_core._svve_core")]
pub struct PyParams {
    pub(crate) inner: SearchParams,
}

#[pymethods]
impl PyParams {
    #[new]
    #[pyo3(signature = (*, exact, candidates, nprobe, expand_probes, expand_ratio, query_bits, tier1, segments, vote_top, min_votes, expansion, epsilon))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        exact: bool,
        candidates: usize,
        nprobe: usize,
        expand_probes: usize,
        expand_ratio: f32,
        query_bits: u8,
        tier1: &str,
        segments: usize,
        vote_top: usize,
        min_votes: usize,
        expansion: bool,
        epsilon: f32,
    ) -> PyResult<Self> {
        let tier1 = match tier1 {
            "asymmetric" => Tier1Mode::Asymmetric,
            "hamming" => Tier1Mode::Hamming,
            other => {
                return Err(Error::param(
                    "tier1",
                    format!("{other:?} is not \"asymmetric\" or \"hamming\""),
                )
                .into())
            }
        };
        let inner = SearchParams {
            k: 1,
            exact,
            candidates,
            nprobe,
            expand_probes,
            expand_ratio,
            query_bits,
            tier1,
            segments,
            vote_top,
            min_votes,
            expansion,
            epsilon,
        };
        inner.validate()?;
        Ok(PyParams { inner })
    }

    fn __repr__(&self) -> String {
        format!("_Params({:?})", self.inner)
    }
}
