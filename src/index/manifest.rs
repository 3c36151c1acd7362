//! The JSON manifest stored in the index's first section. Python validates
//! it with pydantic; [`Manifest::check`] validates it again here against the
//! binary section entries, so neither side trusts the other blindly.
use serde::{Deserialize, Serialize};

use super::format::FORMAT_VERSION;
pub use crate::metric::Metric;

/// Build-time options, stored in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildConfig {
    /// Subtract the partition centroid before taking signs. Embeddings are
    /// rarely centred; without this many dimensions have the same sign in
    /// most rows and their bits carry little information.
    #[serde(default = "yes")]
    pub center: bool,
    /// k-means partitions for Tier1 routing; 0 = automatic (see
    /// `build::partitions_for`).
    #[serde(default)]
    pub partitions: usize,
    /// Seed of the k-means sample and initialisation.
    #[serde(default)]
    pub seed: u64,
    /// Calibrate recall targets at build (`core::calibrate`).
    #[serde(default = "yes")]
    pub calibrate: bool,
    /// Store each row's Tier1 code a second time in one more partition
    /// (SOAR spilling, blueprint 3.4). Absent in files written before it
    /// existed, which have no spilled entries.
    #[serde(default)]
    pub spill: bool,
}

fn yes() -> bool {
    true
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            center: true,
            partitions: 0,
            seed: 0,
            calibrate: true,
            spill: true,
        }
    }
}

/// Everything a reader needs to interpret the sections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `"svve-core"`.
    pub format: String,
    /// Same as the file header's version.
    pub format_version: u16,
    /// The library version that wrote the file.
    pub library_version: String,
    /// Number of vectors.
    pub n: u64,
    /// Dimensions per vector.
    pub dim: u64,
    /// Metric the index answers.
    pub metric: Metric,
    /// `u64` words per Tier1 code (`ceil(dim / 64)`).
    pub code_words: u64,
    /// Number of k-means partitions; rows are stored partition by partition.
    pub partitions: u64,
    /// The build configuration, for `info()`.
    pub build: BuildConfig,
}

impl Manifest {
    /// The manifest for a fresh build.
    pub fn new(
        n: usize,
        dim: usize,
        partitions: usize,
        metric: Metric,
        build: BuildConfig,
    ) -> Self {
        Manifest {
            format: "svve-core".into(),
            format_version: FORMAT_VERSION,
            library_version: crate::VERSION.into(),
            n: n as u64,
            dim: dim as u64,
            metric,
            code_words: crate::math::quantize::words_for(dim) as u64,
            partitions: partitions as u64,
            build,
        }
    }

    /// Internal consistency of the manifest, in a file of format `version`.
    pub fn check(&self, version: u16) -> Result<(), String> {
        if self.format != "svve-core" {
            return Err(format!(
                "manifest format is {:?}, not \"svve-core\"",
                self.format
            ));
        }
        if self.format_version != version {
            return Err(format!(
                "manifest format_version {} disagrees with the file header",
                self.format_version
            ));
        }
        if self.dim == 0 || self.dim > u64::from(u32::MAX) {
            return Err(format!("manifest dim {} is out of range", self.dim));
        }
        if self.code_words != self.dim.div_ceil(64) {
            return Err(format!(
                "manifest code_words {} does not fit dim {}",
                self.code_words, self.dim
            ));
        }
        // More partitions than rows is fine: a live collection's segments
        // are built on the partitions of a larger one (`build_on_partitions`).
        if self.partitions == 0 || self.partitions > u64::from(u32::MAX) {
            return Err(format!(
                "manifest has {} partitions for {} rows",
                self.partitions, self.n
            ));
        }
        Ok(())
    }
}
