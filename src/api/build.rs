//! `build_index`: hands a contiguous float32 matrix to the core builder
//! with the GIL released; progress is reported to an optional Python
//! callable, which can cancel the build by raising.
use std::path::PathBuf;

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::gil::enter;
use crate::core::calibrated::build_input as core_build;
use crate::error::Error;
use crate::index::attributes::{AttributesInput, ColumnInput};
use crate::index::build::BuildInput;
use crate::index::partitions::{assign_partitions as assign, train_partitions as train};
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
#[pyo3(signature = (path, vectors, ids, metric, config, progress=None, attributes=None, centroids=None))]
#[allow(clippy::too_many_arguments)]
pub fn build_index(
    py: Python<'_>,
    path: PathBuf,
    vectors: PyReadonlyArray2<'_, f32>,
    ids: Option<PyReadonlyArray1<'_, i64>>,
    metric: &str,
    config: &str,
    progress: Option<Py<PyAny>>,
    attributes: Option<Vec<AttributeColumn<'_>>>,
    centroids: Option<PyReadonlyArray2<'_, f32>>,
) -> PyResult<String> {
    let attributes = attributes.map(attributes_of).transpose()?;
    let metric = metric_of(metric)?;
    let config: BuildConfig =
        serde_json::from_str(config).map_err(|e| Error::param("config", e.to_string()))?;
    let dim = vectors.shape()[1];
    let data = vectors.as_slice()?;
    let ids = match &ids {
        Some(a) => Some(a.as_slice()?),
        None => None,
    };
    let centroids = match &centroids {
        Some(c) if c.shape()[1] != dim => {
            return Err(Error::param(
                "centroids",
                format!("{} columns for dimension {dim}", c.shape()[1]),
            )
            .into())
        }
        Some(c) => Some(c.as_slice()?),
        None => None,
    };
    let mut sink = PyProgress {
        callback: progress,
        error: None,
    };
    let result = enter(py, || {
        let input = BuildInput::new(data, dim)
            .ids(ids)
            .attributes(attributes.as_ref())
            .centroids(centroids);
        let manifest = core_build(&path, input, metric, &config, &mut sink)?;
        serde_json::to_string(&manifest).map_err(|e| Error::param("manifest", e.to_string()))
    });
    match (result, sink.error) {
        // A callback's own exception wins over the generic cancellation.
        (Err(_), Some(py_err)) => Err(py_err),
        (result, _) => result,
    }
}

/// The partitions (`L x dim`) a build of `vectors` with `config` (JSON of
/// `IndexConfig`) would train; a sharded build trains once for all shards.
#[pyfunction]
pub fn train_partitions<'py>(
    py: Python<'py>,
    vectors: PyReadonlyArray2<'py, f32>,
    metric: &str,
    config: &str,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let metric = metric_of(metric)?;
    let config: BuildConfig =
        serde_json::from_str(config).map_err(|e| Error::param("config", e.to_string()))?;
    let dim = vectors.shape()[1];
    let data = vectors.as_slice()?;
    let c = enter(py, || train(data, dim, metric, &config))?;
    let rows = c.len() / dim.max(1);
    PyArray1::from_vec(py, c).reshape([rows, dim])
}

/// The partitions a build of `n` rows makes (`configured`, or the
/// automatic count for 0), for builds that train on a sample.
#[pyfunction]
pub fn partitions_for(n: usize, configured: usize) -> usize {
    crate::index::build::partitions_for(n, configured)
}

/// The partition of each row of `vectors` among `centroids`, as a build on
/// those centroids assigns it.
#[pyfunction]
pub fn assign_partitions<'py>(
    py: Python<'py>,
    vectors: PyReadonlyArray2<'py, f32>,
    metric: &str,
    centroids: PyReadonlyArray2<'py, f32>,
) -> PyResult<Bound<'py, PyArray1<u32>>> {
    let metric = metric_of(metric)?;
    let dim = vectors.shape()[1];
    if centroids.shape()[1] != dim {
        return Err(Error::param(
            "centroids",
            format!("{} columns for dimension {dim}", centroids.shape()[1]),
        )
        .into());
    }
    let (data, c) = (vectors.as_slice()?, centroids.as_slice()?);
    let assigned = enter(py, || assign(data, dim, metric, c))?;
    Ok(PyArray1::from_vec(py, assigned))
}

fn metric_of(metric: &str) -> Result<Metric, Error> {
    Metric::parse(metric)
        .ok_or_else(|| Error::param("metric", format!("{metric:?} is not cosine, ip or l2")))
}

/// One attribute column as `svve_core.attributes` encodes it: `(name,
/// type, values, dictionary, offsets)`: `int` i64 values, `float` f64,
/// `bool` u8, `str` u32 codes into the dictionary, `tags` u32 codes with
/// i64 row offsets into them.
pub type AttributeColumn<'py> = (
    String,
    String,
    Bound<'py, PyAny>,
    Option<Vec<String>>,
    Option<PyReadonlyArray1<'py, i64>>,
);

/// Copies the columns out of numpy (they are small next to the vectors).
pub fn attributes_of(columns: Vec<AttributeColumn<'_>>) -> PyResult<AttributesInput> {
    let mut out = AttributesInput::default();
    for (name, ty, values, dict, offsets) in columns {
        let col = match (ty.as_str(), dict, offsets) {
            ("int", None, None) => ColumnInput::Int(
                values
                    .extract::<PyReadonlyArray1<'_, i64>>()?
                    .as_slice()?
                    .to_vec(),
            ),
            ("float", None, None) => ColumnInput::Float(
                values
                    .extract::<PyReadonlyArray1<'_, f64>>()?
                    .as_slice()?
                    .to_vec(),
            ),
            ("bool", None, None) => ColumnInput::Bool(
                values
                    .extract::<PyReadonlyArray1<'_, u8>>()?
                    .as_slice()?
                    .iter()
                    .map(|&b| b != 0)
                    .collect(),
            ),
            ("str", Some(dict), None) => ColumnInput::Str {
                dict,
                codes: values
                    .extract::<PyReadonlyArray1<'_, u32>>()?
                    .as_slice()?
                    .to_vec(),
            },
            ("tags", Some(dict), Some(offsets)) => ColumnInput::Tags {
                dict,
                offsets: offsets
                    .as_slice()?
                    .iter()
                    .map(|&o| o.max(0) as u64)
                    .collect(),
                codes: values
                    .extract::<PyReadonlyArray1<'_, u32>>()?
                    .as_slice()?
                    .to_vec(),
            },
            (t, _, _) => {
                return Err(Error::param(
                    "attributes",
                    format!("column {name:?}: bad encoding of type {t:?}"),
                )
                .into())
            }
        };
        out.columns.push((name, col));
    }
    Ok(out)
}
