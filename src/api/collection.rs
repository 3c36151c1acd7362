//! `_Collection`: a live collection (`collection::Collection`). Converts,
//! releases the GIL, delegates.
use std::path::PathBuf;

use numpy::{
    IntoPyArray, Ix1, Ix2, PyArray, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::build::{attributes_of, AttributeColumn};
use super::gil::enter;
use super::params::PyParams;
use super::{stage_counts, Results, StageCounts};
use crate::collection::{Collection, CollectionConfig};
use crate::core::Filter;
use crate::error::Error;
use crate::index::{LoadOptions, Metric};

/// `stats()`: generation, live rows, segments as `(rows, deleted)`, fresh
/// rows, uncommitted changes, manifest JSON, the last merge's error.
type Stats = (
    u64,
    usize,
    Vec<(usize, usize)>,
    usize,
    bool,
    String,
    Option<String>,
);

/// The native collection behind `svve_core.Collection`.
#[pyclass(frozen, name = "_Collection", module = "svve_core._svve_core")]
pub struct PyCollection {
    inner: Collection,
}

fn ids_of<'a>(ids: &'a Option<PyReadonlyArray1<'_, i64>>) -> PyResult<Option<&'a [i64]>> {
    Ok(match ids {
        Some(a) => Some(a.as_slice()?),
        None => None,
    })
}

#[pymethods]
impl PyCollection {
    /// Creates an empty collection in `path`; `config` is the JSON of a
    /// `CollectionConfig`.
    #[staticmethod]
    fn create(
        py: Python<'_>,
        path: PathBuf,
        dim: usize,
        metric: &str,
        config: &str,
    ) -> PyResult<Self> {
        let metric = Metric::parse(metric)
            .ok_or_else(|| Error::param("metric", format!("{metric:?} is not cosine, ip or l2")))?;
        let config: CollectionConfig =
            serde_json::from_str(config).map_err(|e| Error::param("config", e.to_string()))?;
        let inner = enter(py, || Collection::create(&path, dim, metric, config))?;
        Ok(PyCollection { inner })
    }

    /// Opens the collection in `path` (its writer unless `readonly`).
    #[staticmethod]
    #[pyo3(signature = (path, readonly=false, verify=true))]
    fn open(py: Python<'_>, path: PathBuf, readonly: bool, verify: bool) -> PyResult<Self> {
        let inner = enter(py, || {
            Collection::open(&path, readonly, LoadOptions { verify })
        })?;
        Ok(PyCollection { inner })
    }

    /// Adds rows with their attributes (columns as `build_index` takes
    /// them); returns their ids (int64).
    #[pyo3(signature = (vectors, ids=None, attributes=None))]
    fn add<'py>(
        &self,
        py: Python<'py>,
        vectors: PyReadonlyArray2<'py, f32>,
        ids: Option<PyReadonlyArray1<'py, i64>>,
        attributes: Option<Vec<AttributeColumn<'py>>>,
    ) -> PyResult<Bound<'py, PyArray<i64, Ix1>>> {
        let v = vectors.as_slice()?;
        let ids = ids_of(&ids)?;
        let attrs = attributes.map(attributes_of).transpose()?;
        let out = enter(py, || self.inner.write(|w| w.add(v, ids, attrs.as_ref())))?;
        Ok(out.into_pyarray(py))
    }

    /// Inserts or replaces rows.
    #[pyo3(signature = (vectors, ids, attributes=None))]
    fn upsert<'py>(
        &self,
        py: Python<'py>,
        vectors: PyReadonlyArray2<'py, f32>,
        ids: PyReadonlyArray1<'py, i64>,
        attributes: Option<Vec<AttributeColumn<'py>>>,
    ) -> PyResult<()> {
        let v = vectors.as_slice()?;
        let ids = ids.as_slice()?;
        let attrs = attributes.map(attributes_of).transpose()?;
        enter(py, || {
            self.inner.write(|w| w.upsert(v, ids, attrs.as_ref()))
        })
    }

    /// Deletes rows by id; returns how many existed.
    fn delete(&self, py: Python<'_>, ids: PyReadonlyArray1<'_, i64>) -> PyResult<usize> {
        let ids = ids.as_slice()?;
        enter(py, || self.inner.write(|w| w.delete(ids)))
    }

    /// Makes queued changes durable and visible; returns the generation.
    fn commit(&self, py: Python<'_>) -> PyResult<u64> {
        enter(py, || self.inner.commit())
    }

    /// Merges every segment (after committing); returns the generation.
    fn compact(&self, py: Python<'_>) -> PyResult<u64> {
        enter(py, || self.inner.compact())
    }

    /// Moves a reader to the newest generation; `True` if it moved.
    fn refresh(&self, py: Python<'_>) -> PyResult<bool> {
        enter(py, || self.inner.refresh())
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

    /// Like `search`, plus a dict of what each stage did (fresh rows are
    /// counted as rescored).
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
            self.inner.search(&q, &p, f.as_ref())
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
            self.inner.search_batch(&q, &p, f.as_ref())
        })?;
        let ids = r.ids.into_pyarray(py).reshape([b, r.k])?;
        let scores = r.scores.into_pyarray(py).reshape([b, r.k])?;
        Ok((ids, scores))
    }

    /// `(name, type)` of each attribute column (empty: none yet).
    fn attribute_schema(&self) -> Vec<(String, &'static str)> {
        let s = self.inner.snapshot();
        s.schema
            .iter()
            .map(|(n, t)| (n.clone(), t.name()))
            .collect()
    }

    /// Live rows searches see now.
    fn __len__(&self) -> usize {
        self.inner.snapshot().len()
    }

    /// Facts for `info()`: generation (committed), live rows, segments as
    /// `(rows, deleted)`, fresh rows, uncommitted changes, and the
    /// committed manifest's JSON.
    fn stats(&self) -> PyResult<Stats> {
        let s = self.inner.snapshot();
        let m = self.inner.manifest()?;
        let segments = s.segments.iter().map(|g| (g.rows(), g.deleted())).collect();
        let pending = self.inner.has_changes();
        let json =
            serde_json::to_string(&m).map_err(|e| Error::param("manifest", e.to_string()))?;
        Ok((
            m.generation,
            s.len(),
            segments,
            s.fresh.len(),
            pending,
            json,
            self.inner.merge_error(),
        ))
    }

    /// The last committed generation (a reader's: the one it refreshed to).
    #[getter]
    fn generation(&self) -> u64 {
        self.inner.snapshot().generation
    }

    /// Dimensions per vector.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.snapshot().dim
    }

    /// The metric's name.
    #[getter]
    fn metric(&self) -> &'static str {
        self.inner.snapshot().metric.as_str()
    }

    /// Whether this handle is read-only.
    #[getter]
    fn readonly(&self) -> bool {
        self.inner.readonly()
    }

    /// The collection's directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.dir().to_path_buf()
    }
}
