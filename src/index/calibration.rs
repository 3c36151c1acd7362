//! The recall calibration stored in an index file (format version 2): for
//! each recall target, the search settings that reached it on queries
//! sampled from the index's own rows, and what they measured. The
//! procedure that produces it is `core::calibrate`; this module only holds
//! the record and its encoding, so the reader needs nothing from `core`.
//!
//! The section has a fixed size ([`SLOT_BYTES`]): the builder writes the
//! file with a placeholder (`null`), opens it to calibrate, and overwrites
//! the placeholder before the file is renamed into place, so no file that
//! anyone may have mapped is ever modified.
use serde::{Deserialize, Serialize};

/// Bytes reserved for the calibration JSON (padded with spaces).
pub const SLOT_BYTES: usize = 16 << 10;

/// The recall targets every calibration records, ascending. A query asking
/// for a target between two uses the settings of the higher one; above the
/// highest, it is answered exactly (300 calibration queries cannot tell
/// 0.999 from 0.998).
pub const TARGETS: [f64; 8] = [0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995];

/// What it takes to reach one recall target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationPoint {
    /// The recall@k target.
    pub target: f64,
    /// No approximate setting reached the target within the cost of brute
    /// force: answer exactly.
    pub exact: bool,
    /// Partitions always probed.
    pub nprobe: usize,
    /// Centroid expansion ratio (0: no expansion).
    pub expand_ratio: f32,
    /// Most extra partitions expansion may open.
    pub expand_probes: usize,
    /// Tier1 survivors at `k` = [`Calibration::k`].
    pub candidates: usize,
    /// Mean recall@k measured on the calibration queries.
    pub recall: f64,
    /// 10th percentile of the per-query recall.
    pub recall_p10: f64,
    /// Modelled cost per query, microseconds (see `core::calibrate`).
    pub cost_us: f64,
    /// What the Tier2 error bound (`epsilon` standard deviations of the
    /// estimate's modelled error) is multiplied by at this target: the
    /// error model is empirical (codes are not rotated), and how tight a
    /// bound still reaches the target depends on the data. 1 in files
    /// calibrated before it was measured; written only when not 1, so a
    /// calibration that keeps the full bound is byte for byte the old one.
    #[serde(default = "unit_scale", skip_serializing_if = "is_unit")]
    pub error_scale: f32,
}

/// [`CalibrationPoint::error_scale`] of files that do not record one.
fn unit_scale() -> f32 {
    1.0
}

/// Whether an error scale is the full bound (not written).
fn is_unit(scale: &f32) -> bool {
    *scale == 1.0
}

/// A calibration: how it was made and one point per target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// The `k` of recall@k.
    pub k: usize,
    /// Calibration queries.
    pub queries: usize,
    /// Where the queries came from.
    pub source: String,
    /// Search settings tried.
    pub settings_tried: usize,
    /// Wall-clock seconds the calibration took.
    pub seconds: f64,
    /// One point per target of [`TARGETS`], ascending.
    pub points: Vec<CalibrationPoint>,
    /// For a file with spilled entries: the points measured without
    /// scanning them, for queries that do not (under a sparse filter,
    /// blueprint 3.4). Empty otherwise (and in files calibrated before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unspilled: Vec<CalibrationPoint>,
}

impl Calibration {
    /// The JSON padded to [`SLOT_BYTES`]; `None` writes the placeholder.
    pub fn encode_slot(cal: Option<&Calibration>) -> Result<Vec<u8>, String> {
        let mut bytes = serde_json::to_vec(&cal).map_err(|e| e.to_string())?;
        if bytes.len() > SLOT_BYTES {
            return Err(format!(
                "calibration is {} bytes, more than the {SLOT_BYTES} reserved",
                bytes.len()
            ));
        }
        bytes.resize(SLOT_BYTES, b' ');
        Ok(bytes)
    }

    /// Decodes a slot: `None` for the placeholder of an uncalibrated build.
    pub fn decode_slot(bytes: &[u8]) -> Result<Option<Calibration>, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "calibration is not UTF-8")?;
        let cal: Option<Calibration> =
            serde_json::from_str(text.trim_end()).map_err(|e| format!("calibration: {e}"))?;
        Ok(cal)
    }

    /// Consistency with an index of `partitions` partitions.
    pub fn check(&self, partitions: usize) -> Result<(), String> {
        if self.k == 0 || self.points.is_empty() {
            return Err("calibration has no points or k = 0".into());
        }
        for points in [&self.points, &self.unspilled] {
            let sorted = points.windows(2).all(|w| w[0].target < w[1].target);
            if !sorted {
                return Err("calibration targets are not ascending".into());
            }
        }
        for p in self.points.iter().chain(&self.unspilled) {
            let valid = p.target > 0.0
                && p.target <= 1.0
                && p.candidates >= 1
                && (1..=partitions).contains(&p.nprobe)
                && p.expand_ratio.is_finite()
                && p.expand_ratio >= 0.0
                && p.error_scale.is_finite()
                && p.error_scale > 0.0;
            if !valid {
                return Err(format!("calibration point for {} is invalid", p.target));
            }
        }
        Ok(())
    }

    /// The settings for `target`: the first point whose target is at least
    /// `target`; `None` above the highest (answer exactly). Compared in
    /// f32, the type of `SearchParams::target_recall` (0.97 as f32 is
    /// 0.9700000286, above the stored f64 0.97).
    ///
    /// `spill` says whether the query may scan spilled entries; one that
    /// may not takes the [`Calibration::unspilled`] points where there are
    /// some.
    pub fn point_for(&self, target: f32, spill: bool) -> Option<&CalibrationPoint> {
        let points = if spill || self.unspilled.is_empty() {
            &self.points
        } else {
            &self.unspilled
        };
        points.iter().find(|p| p.target as f32 >= target)
    }
}
