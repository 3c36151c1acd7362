//! `_Params`: the search knobs, converted once from the pydantic model and
//! reused, so no Python object is parsed on the query path. Which knobs
//! exist, their types, bounds and defaults come from `core::params`; this
//! layer only converts values.
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

use crate::core::params::{ParamSpec, ParamValue};
use crate::core::SearchParams;
use crate::error::Error;

/// Frozen, validated search parameters (everything but `k`).
#[pyclass(frozen, name = "_Params", module = "svve_core._svve_core")]
pub struct PyParams {
    pub(crate) inner: SearchParams,
}

/// `value` as the type the knob `spec` has; a wrong type or a value that
/// does not fit is an `InvalidParameterError` naming the knob.
fn value_of(spec: &ParamSpec, value: &Bound<'_, PyAny>) -> Result<ParamValue, Error> {
    let is_bool = value.is_instance_of::<PyBool>();
    let converted = match spec.kind {
        "bool" if is_bool => value.extract::<bool>().ok().map(ParamValue::Bool),
        "int" if !is_bool => value.extract::<u64>().ok().map(ParamValue::Int),
        "float" if !is_bool => value.extract::<f64>().ok().map(ParamValue::Float),
        _ => None,
    };
    converted.ok_or_else(|| Error::InvalidParameter {
        name: spec.name,
        reason: format!("{value} is not a valid {}", spec.kind),
    })
}

impl PyParams {
    /// These knobs with `k` results.
    pub(crate) fn with_k(&self, k: usize) -> SearchParams {
        SearchParams {
            k,
            ..self.inner.clone()
        }
    }
}

#[pymethods]
impl PyParams {
    /// Knobs by name (see `search_param_spec()`); the others keep their defaults.
    #[new]
    #[pyo3(signature = (**knobs))]
    fn new(knobs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let spec = SearchParams::spec();
        let mut inner = SearchParams {
            k: 1,
            ..SearchParams::default()
        };
        for (key, value) in knobs.into_iter().flat_map(|d| d.iter()) {
            let name: String = key.extract()?;
            let Some(s) = spec.iter().find(|s| s.name == name) else {
                return Err(Error::param("params", format!("no search parameter `{name}`")).into());
            };
            inner.set(&name, value_of(s, &value)?)?;
        }
        inner.validate()?;
        Ok(PyParams { inner })
    }

    fn __repr__(&self) -> String {
        format!("_Params({:?})", self.inner)
    }
}

fn to_py<'py>(py: Python<'py>, v: ParamValue) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        ParamValue::Bool(b) => PyBool::new(py, b).to_owned().into_any(),
        ParamValue::Int(i) => i.into_pyobject(py)?.into_any(),
        ParamValue::Float(x) => x.into_pyobject(py)?.into_any(),
    })
}

/// Every search knob as a dict: `name`, `type` (`"bool"`, `"int"`,
/// `"float"`), `default`, `min`, `max` (None for flags) and `doc`.
#[pyfunction]
pub fn search_param_spec(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    SearchParams::spec()
        .into_iter()
        .map(|s| {
            let d = PyDict::new(py);
            d.set_item("name", s.name)?;
            d.set_item("type", s.kind)?;
            d.set_item("default", to_py(py, s.default)?)?;
            let bound = |b: Option<ParamValue>| b.map(|v| to_py(py, v)).transpose();
            d.set_item("min", bound(s.min)?)?;
            d.set_item("max", bound(s.max)?)?;
            d.set_item("doc", s.doc)?;
            Ok(d)
        })
        .collect()
}
