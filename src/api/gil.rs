//! The one way into the core from Python: release the GIL, run, catch any
//! panic (a bug, never a data error) so it surfaces as `InternalError`
//! rather than unwinding through the interpreter, and map errors.
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;

use super::errors::InternalError;
use crate::error::Result;

/// Runs `f` with the GIL released and maps its outcome to Python.
pub fn enter<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T> + Send) -> PyResult<T> {
    // The core holds no state that a panic could leave half-updated: indexes
    // are immutable and scratch buffers are reset at the start of each query.
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(result) => result.map_err(PyErr::from),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(InternalError::new_err(format!(
                "internal error in svve-core (please report it): {what}"
            )))
        }
    }
}
