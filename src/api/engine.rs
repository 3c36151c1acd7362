//! `_Engine`: a loaded index. Every search copies its (small) query out of
//! numpy, releases the GIL for the whole pipeline, and moves the result
//! vectors into numpy arrays without copying them again.
use std::path::PathBuf;

use numpy::{
    IntoPyArray, Ix1, Ix2, PyArray, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::gil::enter;
use super::params::PyParams;
use crate::core::{Engine, SearchParams};
use crate::error::Error;
use crate::index::format::SectionKind;
use crate::index::LoadOptions;

/// Rows each stage touched, as `(name, count)` pairs.
type StageCounts = [(&'static str, usize); 5];

/// `(ids, scores)` as numpy arrays of dimension `D`.
type Results<'py, D> = (Bound<'py, PyArray<i64, D>>, Bound<'py, PyArray<f32, D>>);

/// The native engine behind `svve_core.SearchEngine`.
#[pyclass(frozen, name = "_Engine", module = "svve_core._svve_core")]
pub struct PyEngine {
    inner: Engine,
}

fn with_k(params: &PyParams, k: usize) -> SearchParams {
    SearchParams {
        k,
        ..params.inner.clone()
    }
}

#[pymethods]
impl PyEngine {
    #[new]
    #[pyo3(signature = (path, verify=true, lock_pages=false))]
    fn new(py: Python<'_>, path: PathBuf, verify: bool, lock_pages: bool) -> PyResult<Self> {
        let inner = enter(py, || {
            let engine = Engine::open(&path, LoadOptions { verify })?;
            if lock_pages {
                engine.file().lock_in_memory()?;
            }
            Ok(engine)
        })?;
        Ok(PyEngine { inner })
    }

    /// Top-k of one query: `(ids int64 (k,), scores float32 (k,))`.
    fn search<'py>(
        &self,
        py: Python<'py>,
        query: PyReadonlyArray1<'py, f32>,
        k: usize,
        params: &PyParams,
    ) -> PyResult<Results<'py, Ix1>> {
        let q = query.as_slice()?.to_vec();
        let p = with_k(params, k);
        let (ids, scores) = enter(py, || self.inner.search(&q, &p))?;
        Ok((ids.into_pyarray(py), scores.into_pyarray(py)))
    }

    /// Like `search`, plus a dict of what each stage did.
    fn search_stats<'py>(
        &self,
        py: Python<'py>,
        query: PyReadonlyArray1<'py, f32>,
        k: usize,
        params: &PyParams,
    ) -> PyResult<(Results<'py, Ix1>, StageCounts)> {
        let q = query.as_slice()?.to_vec();
        let p = with_k(params, k);
        let (ids, scores, st) = enter(py, || self.inner.search_with_stats(&q, &p))?;
        let stats = [
            ("probed", st.probed),
            ("scanned", st.scanned),
            ("survivors", st.survivors),
            ("rescued", st.rescued),
            ("rescored", st.rescored),
        ];
        Ok(((ids.into_pyarray(py), scores.into_pyarray(py)), stats))
    }

    /// Top-k of each row: `(ids int64 (b, k), scores float32 (b, k))`.
    fn search_batch<'py>(
        &self,
        py: Python<'py>,
        queries: PyReadonlyArray2<'py, f32>,
        k: usize,
        params: &PyParams,
    ) -> PyResult<Results<'py, Ix2>> {
        let b = queries.shape()[0];
        let q = queries.as_slice()?.to_vec();
        let p = with_k(params, k);
        let r = enter(py, || self.inner.search_batch(&q, &p))?;
        let ids = r.ids.into_pyarray(py).reshape([b, r.k])?;
        let scores = r.scores.into_pyarray(py).reshape([b, r.k])?;
        Ok((ids, scores))
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Dimensions per vector.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// The manifest JSON as stored in the file.
    fn manifest_json(&self) -> String {
        self.inner.file().manifest_json().to_owned()
    }

    /// Bytes per part: `{"tier1": ..., "tier2": ..., "ids": ..., "file": ...}`.
    fn section_bytes(&self) -> [(&'static str, usize); 4] {
        let f = self.inner.file();
        let len = |k: SectionKind| f.entry(k).len as usize;
        [
            (
                "tier1",
                len(SectionKind::Codes) + len(SectionKind::Factors) + len(SectionKind::Centroid),
            ),
            ("tier2", len(SectionKind::Vectors)),
            ("ids", len(SectionKind::Ids)),
            ("file", f.file_len()),
        ]
    }

    /// Path of the index file.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.file().path().to_path_buf()
    }

    /// Kernel instruction set in use.
    #[getter]
    fn isa(&self) -> &'static str {
        self.inner.kernels().isa
    }
}

impl From<numpy::NotContiguousError> for Error {
    fn from(e: numpy::NotContiguousError) -> Self {
        Error::InvalidVector(e.to_string())
    }
}
