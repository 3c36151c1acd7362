//! The on-disk index: format, manifest, builder, atomic writer and mmap reader.
pub mod attributes;
pub mod build;
pub mod calibration;
pub mod copy;
pub mod format;
pub mod kmeans;
pub mod locate;
pub mod manifest;
pub mod partitions;
pub mod reader;
pub mod writer;

pub use build::{build_index, build_pending, Progress};
pub use calibration::{Calibration, CalibrationPoint};
pub use manifest::{BuildConfig, Manifest, Metric};
pub use reader::{IndexFile, LoadOptions};
pub use writer::{sync_parent, write_small};
