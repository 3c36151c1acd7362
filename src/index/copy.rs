//! A copy of an index file with a new calibration: the same sections (read
//! from the mapped source, optional ones where it has them), the current
//! format version, and the new `CALI`
//! slot, written atomically like a build. Recalibrating from a query log
//! uses it; the source is only read, so it may stay mapped and in service.
use std::path::Path;

use super::calibration::{Calibration, SLOT_BYTES};
use super::format::{version_for, SectionKind};
use super::reader::IndexFile;
use super::writer::{write_pending, Pending, SectionPlan};
use crate::error::{Error, Result};

/// Writes `src` with `calibration` to `dst` under a temporary name (commit
/// it to rename it into place). `dst` may be `src`'s own path: the rename
/// replaces the name, never the mapped bytes.
pub fn copy_pending(src: &IndexFile, dst: &Path, calibration: &Calibration) -> Result<Pending> {
    let kinds: Vec<SectionKind> = SectionKind::ALL
        .into_iter()
        .filter(|k| !k.optional() || src.entry(*k).len > 0)
        .collect();
    let mut manifest = src.manifest().clone();
    manifest.format_version = version_for(kinds.iter().copied());
    manifest.build.calibrate = true;
    let manifest_json =
        serde_json::to_vec(&manifest).map_err(|e| Error::param("manifest", e.to_string()))?;
    let slot =
        Calibration::encode_slot(Some(calibration)).map_err(|e| Error::param("calibration", e))?;
    let plans: Vec<SectionPlan> = kinds
        .iter()
        .map(|&kind| {
            let (rows, cols) = match kind {
                SectionKind::Manifest => (manifest_json.len() as u64, 1),
                SectionKind::Calibration => (SLOT_BYTES as u64, 1),
                _ => (src.entry(kind).rows, src.entry(kind).cols),
            };
            SectionPlan { kind, rows, cols }
        })
        .collect();
    write_pending(dst, &plans, |kind, sink| match kind {
        SectionKind::Manifest => sink.write(&manifest_json),
        SectionKind::Calibration => sink.write(&slot),
        _ => sink.write(src.section::<u8>(kind)),
    })
}
