//! svve-core: Segmented Vector Voting & Expansion.
//!
//! A two-tier vector search core. Tier1 holds 1-bit codes that are scanned
//! with popcount kernels; Tier2 holds float32 vectors for exact rescoring.
//! Both live in one memory-mapped, read-only index file.
//!
//! - [`math`]: bit and float kernels with run-time SIMD dispatch.
//! - [`index`]: the file format, the builder and the mmap reader.
//! - [`core`]: the query pipeline (encode, scan, vote, expand, rescore).
//! - `api` (feature `python`): the PyO3 bindings, nothing else.
#![cfg(target_endian = "little")]

pub mod core;
pub mod error;
pub mod index;
pub mod math;

#[cfg(feature = "python")]
mod api;

pub use error::{Error, Result};

/// Version of this library, as written into every index manifest.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
