//! `build_index`: hands a contiguous float32 matrix to the core builder
//! with the GIL released; progress is reported to an optional Python
//! callable, which can cancel the build by raising.
use std::path::PathBuf;

use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use super::gil::enter;
use crate::core::calibrated::build_index as core_build;
use crate::error::Error;
use crate::index::{BuildConfig, Metric, Progress};

/// Calls back into Python between chunks; remembers the first exception.
/// The callback cancels by raising (that exception propagates) or by
/// returning `False` (`BuildCancelledError`).
struct PyProgress {
    callback: Option<Py<PyAny>>,
    error: Option<PyErr>,
}

impl Progress for PyProgress {
    fn report(&mut self, done: usize, total: usize) -> bool {
        Python::attach(|py| {
            let outcome = py.check_signals().and_then(|()| match &self.callback {
                // Exactly `False` cancels; any other return value continues.
                Some(cb) => cb
                    .call1(py, (done, total))
                    .map(|r| !matches!(r.extract::<bool>(py), Ok(false))),
                None => Ok(true),
            });
            match outcome {
                Ok(go_on) => go_on,
                Err(e) => {
                    self.error = Some(e);
                    false
                }
            }
        })
    }
}

/// Builds an index file at `path`; returns the manifest JSON. `config` is
/// the JSON of the manifest's build configuration (`IndexConfig`).
///
/// The arrays are read in place while the GIL is released: callers must
/// not mutate them from another thread during the call.
#[pyfunction]
#[pyo3(signature = (path, vectors, ids, metric, config, progress=None))]
pub fn build_index(
    py: Python<'_>,
    path: PathBuf,
    vectors: PyReadonlyArray2<'_, f32>,
    ids: Option<PyReadonlyArray1<'_, i64>>,
    metric: &str,
    config: &str,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let metric = Metric::parse(metric)
        .ok_or_else(|| Error::param("metric", format!("{metric:?} is not cosine, ip or l2")))?;
    let config: BuildConfig =
        serde_json::from_str(config).map_err(|e| Error::param("config", e.to_string()))?;
    let dim = vectors.shape()[1];
    let data = vectors.as_slice()?;
    let ids = match &ids {
        Some(a) => Some(a.as_slice()?),
        None => None,
    };
    let mut sink = PyProgress {
        callback: progress,
        error: None,
    };
    let result = enter(py, || {
        let manifest = core_build(&path, data, dim, ids, metric, &config, &mut sink)?;
        serde_json::to_string(&manifest).map_err(|e| Error::param("manifest", e.to_string()))
    });
    match (result, sink.error) {
        // A callback's own exception wins over the generic cancellation.
        (Err(_), Some(py_err)) => Err(py_err),
        (result, _) => result,
    }
}
