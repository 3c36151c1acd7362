//! PyO3 bindings: convert, release the GIL, delegate. No algorithm here.
mod build;
mod collection;
mod engine;
mod errors;
mod gil;
mod params;

use numpy::PyArray;
use pyo3::prelude::*;

/// `(ids, scores)` as numpy arrays of dimension `D`: what every search returns.
type Results<'py, D> = (Bound<'py, PyArray<i64, D>>, Bound<'py, PyArray<f32, D>>);

/// Rows each stage touched, as `(name, count)` pairs: what `search_stats`
/// returns beside the results.
type StageCounts = [(&'static str, usize); 4];

fn stage_counts(st: &crate::core::engine::SearchStats) -> StageCounts {
    [
        ("probed", st.probed),
        ("scanned", st.scanned),
        ("survivors", st.survivors),
        ("rescored", st.rescored),
    ]
}

/// The native module `svve_core._svve_core`.
#[pymodule]
fn _svve_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", crate::VERSION)?;
    m.add("FORMAT_VERSION", crate::index::format::FORMAT_VERSION)?;
    m.add("MAX_NORM2", crate::limits::MAX_NORM2)?;
    m.add_class::<engine::PyEngine>()?;
    m.add_class::<params::PyParams>()?;
    m.add_class::<collection::PyCollection>()?;
    m.add_function(wrap_pyfunction!(params::search_param_spec, m)?)?;
    m.add_function(wrap_pyfunction!(build::build_index, m)?)?;
    m.add_function(wrap_pyfunction!(build::train_partitions, m)?)?;
    m.add_function(wrap_pyfunction!(build::assign_partitions, m)?)?;
    m.add_function(wrap_pyfunction!(build::partitions_for, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(isa, m)?)?;
    m.add_function(wrap_pyfunction!(_debug_panic, m)?)?;
    Ok(())
}

/// Test hook: panics inside the core entry helper, to prove a panic
/// surfaces as `svve_core.exceptions.InternalError`.
#[pyfunction]
fn _debug_panic(py: Python<'_>) -> PyResult<()> {
    gil::enter(py, || -> crate::Result<()> {
        panic!("deliberate panic for tests")
    })
}

/// Sets the size of the library's thread pool (0 = one per CPU).
#[pyfunction]
fn set_num_threads(n: usize) {
    crate::pool::set_threads(n);
}

/// Threads in the library's thread pool of this process.
#[pyfunction]
fn num_threads(py: Python<'_>) -> usize {
    py.detach(crate::pool::current_threads)
}

/// The instruction set the kernels were dispatched to on this CPU.
#[pyfunction]
fn isa() -> &'static str {
    crate::math::Kernels::detect().isa
}
