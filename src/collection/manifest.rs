//! One generation of a collection: which segments (with which deletion
//! files) and how much of which write-ahead log make up its rows. Written
//! once per commit under a new name and published by rename; the newest
//! one is the collection.
//!
//! On disk: the JSON, a newline, and the CRC-32 of the JSON in 8 hex
//! digits. A rename is atomic, so a crash leaves a complete manifest or
//! none; the checksum catches damage after the fact.
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files::manifest_name;
use crate::error::{Error, Result};
use crate::index::attributes::AttrType;
use crate::index::{write_small, BuildConfig, Calibration, Metric};

/// Version of the manifest's layout.
pub const MANIFEST_FORMAT: u32 = 1;

/// How a collection checkpoints and merges, and how its segments are built.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionConfig {
    /// Build options of every segment.
    #[serde(default)]
    pub segment: BuildConfig,
    /// Fresh rows (searched exactly) that trigger a checkpoint into a new
    /// segment at commit; 0 = automatic (`writer::fresh_limit`).
    #[serde(default)]
    pub fresh_rows: u64,
    /// Segments of one size tier merged at once; 0 = automatic (2).
    #[serde(default)]
    pub merge_factor: u64,
}

impl CollectionConfig {
    /// Checks the values a user may set.
    pub fn check(&self) -> Result<()> {
        if self.merge_factor == 1 {
            return Err(Error::param(
                "merge_factor",
                "must be 0 (automatic) or at least 2, got 1",
            ));
        }
        Ok(())
    }
}

/// One segment as of a generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentEntry {
    /// File number: the segment is `seg-{no}.svve`.
    pub no: u64,
    /// Rows in the segment file.
    pub rows: u64,
    /// Deletion file (`del-{n}.bin`) holding its deleted rows, if any.
    pub deletes: Option<u64>,
    /// Rows that deletion file deletes.
    pub deleted: u64,
}

/// A generation of the collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionManifest {
    /// Always [`MANIFEST_FORMAT`] for files this build writes.
    pub format: u32,
    /// The library version that wrote it.
    pub library_version: String,
    /// Generation number: one more than the previous commit's.
    pub generation: u64,
    /// Dimensions per vector.
    pub dim: u64,
    /// Metric of every segment.
    pub metric: Metric,
    /// Checkpoint, merge and segment build options.
    pub config: CollectionConfig,
    /// Segments, oldest first.
    pub segments: Vec<SegmentEntry>,
    /// Write-ahead log number (`wal-{n}.log`).
    pub wal: u64,
    /// Bytes of that log that are committed.
    pub wal_len: u64,
    /// Next number for a new file.
    pub next_file: u64,
    /// Smallest id `add` may assign: above every id ever stored.
    pub next_id: i64,
    /// The segments' own recall calibration, measured on all of them
    /// (`collection::calibrate`); `None`: the base segment's serves.
    #[serde(default)]
    pub calibration: Option<Calibration>,
    /// Live rows when that calibration was measured (or the base built).
    #[serde(default)]
    pub calibrated_rows: u64,
    /// The rows' attribute columns, `(name, type)`: fixed by the first
    /// `add` with attributes into an empty collection (empty: none).
    #[serde(default)]
    pub attributes: Vec<(String, AttrType)>,
}

impl CollectionManifest {
    /// Writes this generation's manifest in `dir` atomically.
    pub fn publish(&self, dir: &Path) -> Result<()> {
        let json =
            serde_json::to_string(self).map_err(|e| Error::param("manifest", e.to_string()))?;
        let crc = crc32fast::hash(json.as_bytes());
        let body = format!("{json}\n{crc:08x}\n");
        write_small(&dir.join(manifest_name(self.generation)), body.as_bytes())
    }

    /// Reads and checks generation `g`'s manifest in `dir`.
    pub fn read(dir: &Path, g: u64) -> Result<Self> {
        let path = dir.join(manifest_name(g));
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let bad = |why: String| Error::corrupt(&path, format!("collection manifest: {why}"));
        let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8".into()))?;
        let (json, crc) = text
            .trim_end_matches('\n')
            .rsplit_once('\n')
            .ok_or_else(|| bad("no checksum line".into()))?;
        let want = u32::from_str_radix(crc, 16).map_err(|_| bad("bad checksum line".into()))?;
        if crc32fast::hash(json.as_bytes()) != want {
            return Err(bad("checksum mismatch".into()));
        }
        let m: Self = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
        if m.format != MANIFEST_FORMAT {
            return Err(bad(format!(
                "layout version {} (this build reads {MANIFEST_FORMAT})",
                m.format
            )));
        }
        if m.generation != g || m.dim == 0 || m.dim > u64::from(u32::MAX) {
            return Err(bad("generation or dimension out of range".into()));
        }
        m.config.check().map_err(|e| bad(e.to_string()))?;
        Ok(m)
    }

    /// Rows the segments hold, deleted ones excluded (the log's changes
    /// are not counted).
    pub fn segment_rows(&self) -> u64 {
        self.segments.iter().map(|s| s.rows - s.deleted).sum()
    }
}
