//! Calibrated index files: a build that calibrates before its file is
//! renamed into place, and a copy of an index recalibrated on the user's
//! own queries. The procedure itself is [`super::calibrate`].
use std::path::Path;

use super::calibrate::{calibrate, QuerySource};
use super::engine::Engine;
use crate::error::{Error, Result};
use crate::index::build::{build_pending_input, BuildInput};
use crate::index::calibration::Calibration;
use crate::index::copy::copy_pending;
use crate::index::format::SectionKind;
use crate::index::{BuildConfig, IndexFile, LoadOptions, Manifest, Metric, Progress};

/// Builds a calibrated index at `path` (see `index::build_index` for the
/// rest): the file is written under a temporary name, opened and calibrated,
/// and only then renamed into place. Progress runs over four phases of `n`
/// units each, calibration being the fourth.
pub fn build_index(
    path: &Path,
    vectors: &[f32],
    dim: usize,
    ids: Option<&[i64]>,
    metric: Metric,
    config: &BuildConfig,
    progress: &mut dyn Progress,
) -> Result<Manifest> {
    let input = BuildInput::new(vectors, dim).ids(ids);
    build_input(path, input, metric, config, progress)
}

/// [`build_index`] of a [`BuildInput`] (rows with attributes).
pub fn build_input(
    path: &Path,
    input: BuildInput<'_>,
    metric: Metric,
    config: &BuildConfig,
    progress: &mut dyn Progress,
) -> Result<Manifest> {
    let (manifest, mut pending) = build_pending_input(path, input, metric, config, progress)?;
    if config.calibrate {
        let cal = {
            let file = IndexFile::open_pending(pending.temp_path(), LoadOptions { verify: false })?;
            let engine = Engine::from_file(file);
            let n = engine.len();
            let total = crate::index::build::work_units(n, true);
            let mut report = |f: f64| progress.report(3 * n + (f * n as f64) as usize, total);
            calibrate(
                &engine,
                QuerySource::Rows { seed: config.seed },
                &mut report,
            )?
        };
        let slot =
            Calibration::encode_slot(Some(&cal)).map_err(|e| Error::param("calibration", e))?;
        pending.replace_section(SectionKind::Calibration, &slot)?;
    }
    pending.commit()?;
    Ok(manifest)
}

/// Recalibrates the index of `engine` on `queries` (`b x dim`, at least
/// `MIN_GIVEN_QUERIES`, e.g. a sample of the service's query log) and
/// writes it, with that calibration and otherwise unchanged, to `dst`
/// atomically (`dst` may be the engine's own file: the mapped copy stays
/// valid for queries in flight). `progress(done, total)` as for a build.
pub fn recalibrate(
    engine: &Engine,
    queries: &[f32],
    dst: &Path,
    progress: &mut dyn Progress,
) -> Result<Calibration> {
    const UNITS: usize = 1000;
    let mut report = |f: f64| progress.report((f * UNITS as f64) as usize, UNITS);
    let cal = calibrate(engine, QuerySource::Given(queries), &mut report)?;
    copy_pending(engine.file(), dst, &cal)?.commit()?;
    Ok(cal)
}
