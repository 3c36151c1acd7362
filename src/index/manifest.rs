//! The JSON manifest stored in the index's first section. Python validates
//! it with pydantic; [`Manifest::check`] validates it again here against the
//! binary section entries, so neither side trusts the other blindly.
use serde::{Deserialize, Serialize};

use super::build::BuildConfig;
use super::format::FORMAT_VERSION;

/// Similarity measure an index is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine similarity: vectors are normalised at build and query time.
    Cosine,
    /// Inner product (higher is better).
    Ip,
    /// Squared Euclidean distance (lower is better).
    L2,
}

impl Metric {
    /// Parses `"cosine" | "ip" | "l2"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cosine" => Some(Metric::Cosine),
            "ip" => Some(Metric::Ip),
            "l2" => Some(Metric::L2),
            _ => None,
        }
    }

    /// The lowercase name used in manifests and the Python API.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Ip => "ip",
            Metric::L2 => "l2",
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
    /// Number of partitions (collection segments); rows are stored
    /// partition by partition.
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

    /// Internal consistency of the manifest on its own.
    pub fn check(&self) -> Result<(), String> {
        if self.format != "svve-core" {
            return Err(format!(
                "manifest format is {:?}, not \"svve-core\"",
                self.format
            ));
        }
        if self.format_version != FORMAT_VERSION {
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
        if self.partitions == 0 || self.partitions > self.n {
            return Err(format!(
                "manifest has {} partitions for {} rows",
                self.partitions, self.n
            ));
        }
        Ok(())
    }
}
