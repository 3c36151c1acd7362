//! The on-disk index: format, manifest, builder, atomic writer and mmap reader.
pub mod build;
pub mod format;
pub mod kmeans;
pub mod manifest;
pub mod reader;
pub mod writer;

pub use build::{build_index, Progress};
pub use manifest::{BuildConfig, Manifest, Metric};
pub use reader::{IndexFile, LoadOptions};
