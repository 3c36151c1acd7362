//! svve-core: Segmented Vector Voting & Expansion.
//!
//! A two-tier vector search core. Tier1 holds 1-bit codes that are scanned
//! with popcount kernels; Tier2 holds float32 vectors for exact rescoring.
//! Both live in one memory-mapped, read-only index file. Rows are grouped
//! into k-means **partitions**, which a query routes to.
//!
//! - [`math`]: bit and float kernels with run-time SIMD dispatch.
//! - [`index`]: the file format, the builder and the mmap reader.
//! - [`core`]: the query pipeline (plan, encode, route, Tier1 scan, rescore).
//! - [`metric`]: what a score means under each metric.
//! - [`pool`]: the process's thread pool, shared by builds and queries.
//! - `api` (feature `python`): the PyO3 bindings, nothing else.
//!
//! Dependencies run one way: `api -> core -> index -> math`; `metric`,
//! `limits`, `pool` and `error` are leaves that any of them may use.

// Index files are memory-mapped and read in place as little-endian words
// (no byte swapping on the query path), so a big-endian build would read
// garbage: refuse it at compile time rather than build a crate that lies.
#[cfg(target_endian = "big")]
compile_error!(
    "svve-core supports little-endian targets only: index files are read in place \
     as little-endian data (x86-64, aarch64, riscv64 and wasm32 are all little-endian)"
);

pub mod collection;
pub mod core;
pub mod error;
pub mod index;
pub mod limits;
pub mod math;
pub mod metric;
pub mod pool;

#[cfg(feature = "python")]
mod api;

pub use error::{Error, Result};

/// Version of this library, as written into every index manifest.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
