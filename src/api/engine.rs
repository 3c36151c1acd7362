//! `_Engine`: a loaded index. Every search copies its (small) query out of
//! numpy, releases the GIL for the whole pipeline, and moves the result
//! vectors into numpy arrays without copying them again.
use std::path::PathBuf;

use numpy::ndarray::{ArrayView, Dimension, IntoDimension};
use numpy::{
    Element, IntoPyArray, Ix1, Ix2, PyArray, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::gil::enter;
use super::params::PyParams;
use super::{stage_counts, Results, StageCounts};
use crate::core::calibrated::recalibrate;
use crate::core::{Engine, Filter};
use crate::error::Error;
use crate::index::format::SectionKind;
use crate::index::LoadOptions;

/// The native engine behind `svve_core.SearchEngine`.
#[pyclass(frozen, name = "_Engine", module = "svve_core._svve_core")]
pub struct PyEngine {
    inner: Engine,
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

    /// Top-k of one query: `(ids int64 (k,), scores float32 (k,))`, over
    /// the rows `filter` (JSON text) matches.
    #[pyo3(signature = (query, k, params, filter=None))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        query: PyReadonlyArray1<'py, f32>,
        k: usize,
        params: &PyParams,
        filter: Option<&str>,
    ) -> PyResult<Results<'py, Ix1>> {
        // The same search; the stage counts cost four integers.
        Ok(self.search_stats(py, query, k, params, filter)?.0)
    }

    /// Like `search`, plus a dict of what each stage did.
    #[pyo3(signature = (query, k, params, filter=None))]
    fn search_stats<'py>(
        &self,
        py: Python<'py>,
        query: PyReadonlyArray1<'py, f32>,
        k: usize,
        params: &PyParams,
        filter: Option<&str>,
    ) -> PyResult<(Results<'py, Ix1>, StageCounts)> {
        let q = query.as_slice()?.to_vec();
        let p = params.with_k(k);
        let (ids, scores, st) = enter(py, || {
            let f = filter.map(Filter::parse).transpose()?;
            self.inner.search_filtered(&q, &p, f.as_ref())
        })?;
        Ok((
            (ids.into_pyarray(py), scores.into_pyarray(py)),
            stage_counts(&st),
        ))
    }

    /// Top-k of each row: `(ids int64 (b, k), scores float32 (b, k))`.
    #[pyo3(signature = (queries, k, params, filter=None))]
    fn search_batch<'py>(
        &self,
        py: Python<'py>,
        queries: PyReadonlyArray2<'py, f32>,
        k: usize,
        params: &PyParams,
        filter: Option<&str>,
    ) -> PyResult<Results<'py, Ix2>> {
        let b = queries.shape()[0];
        let q = queries.as_slice()?.to_vec();
        let p = params.with_k(k);
        let r = enter(py, || {
            let f = filter.map(Filter::parse).transpose()?;
            self.inner.search_batch_filtered(&q, &p, f.as_ref())
        })?;
        let ids = r.ids.into_pyarray(py).reshape([b, r.k])?;
        let scores = r.scores.into_pyarray(py).reshape([b, r.k])?;
        Ok((ids, scores))
    }

    /// Recalibrates on `queries` (b, dim) and writes the index with that
    /// calibration to `dst`; returns the calibration as JSON.
    fn recalibrate(
        &self,
        py: Python<'_>,
        queries: PyReadonlyArray2<'_, f32>,
        dst: PathBuf,
    ) -> PyResult<String> {
        let q = queries.as_slice()?;
        let cal = enter(py, || recalibrate(&self.inner, q, &dst, &mut ()))?;
        Ok(serde_json::to_string(&cal).map_err(|e| Error::param("calibration", e.to_string()))?)
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

    /// The recall calibration as JSON (`None`: a version 1 file or an
    /// uncalibrated build).
    fn calibration_json(&self) -> Option<String> {
        let c = self.inner.file().calibration()?;
        serde_json::to_string(c).ok()
    }

    /// `(name, type)` of each attribute column, in stored order.
    fn attribute_schema(&self) -> Vec<(String, &'static str)> {
        let a = self.inner.file().attributes();
        a.schema().into_iter().map(|(n, t)| (n, t.name())).collect()
    }

    /// Checks `filter` (JSON text) against this index's attributes without
    /// searching: raises `InvalidFilterError` where a search would.
    fn check_filter(&self, filter: &str) -> PyResult<()> {
        Ok(Filter::parse(filter)?.check(self.inner.file())?)
    }

    /// Bytes per part: `{"tier1": ..., "tier2": ..., "ids": ..., "file": ...}`.
    fn section_bytes(&self) -> [(&'static str, usize); 5] {
        let f = self.inner.file();
        let len = |k: SectionKind| f.entry(k).len as usize;
        let spill: usize = SectionKind::SPILL.iter().map(|&k| len(k)).sum();
        [
            (
                "tier1",
                len(SectionKind::Codes)
                    + len(SectionKind::Factors)
                    + len(SectionKind::Centroid)
                    + spill,
            ),
            ("tier2", len(SectionKind::Vectors)),
            ("ids", len(SectionKind::Ids)),
            ("file", f.file_len()),
            // Not bytes: the spilled entries (blueprint 3.4).
            ("spilled", f.entry(SectionKind::SpillRows).rows as usize),
        ]
    }

    /// Read-only numpy views of the stored sections, zero-copy over the
    /// mapping (each view keeps this engine, and so the mapping, alive):
    /// `centroids (L, dim) f32`, `offsets (L + 1,) u64`, `vectors (n, dim)
    /// f32` and `ids (n,) i64`, rows in stored (partition) order.
    fn arrays<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let f = slf.get().inner.file().clone();
        let (n, dim) = (f.len(), f.dim());
        let parts = f.offsets().len().saturating_sub(1);
        let out = PyDict::new(py);
        let owner = slf.into_any();
        let path = f.path();
        out.set_item(
            "centroids",
            view(
                &owner,
                path,
                f.section::<f32>(SectionKind::Centroid),
                (parts, dim),
            )?,
        )?;
        out.set_item("offsets", view(&owner, path, f.offsets(), parts + 1)?)?;
        out.set_item(
            "vectors",
            view(
                &owner,
                path,
                f.section::<f32>(SectionKind::Vectors),
                (n, dim),
            )?,
        )?;
        out.set_item(
            "ids",
            view(&owner, path, f.section::<i64>(SectionKind::Ids), n)?,
        )?;
        Ok(out)
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

/// A read-only numpy array over `data` (shape `shape`), owned by `owner`.
fn view<'py, T: Element, D: Dimension>(
    owner: &Bound<'py, PyAny>,
    path: &std::path::Path,
    data: &[T],
    shape: impl IntoDimension<Dim = D>,
) -> PyResult<Bound<'py, PyArray<T, D>>> {
    let a = ArrayView::from_shape(shape, data)
        .map_err(|e| Error::corrupt(path, format!("section shape: {e}")))?;
    // SAFETY: `data` lies in the read-only mapping held by the engine's
    // `Arc<IndexFile>`; `owner` (that engine) becomes the array's base
    // object, so the mapping outlives the array, and it is never remapped
    // or written (index files are write-once).
    let arr = unsafe { PyArray::borrow_from_array(&a, owner.clone()) };
    // The pages are mapped read-only: a write through numpy would fault.
    arr.call_method1("setflags", (false,))?;
    Ok(arr)
}

impl From<numpy::NotContiguousError> for Error {
    fn from(e: numpy::NotContiguousError) -> Self {
        Error::InvalidVector(e.to_string())
    }
}
