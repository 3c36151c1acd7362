//! Drift: whether new rows still fit the partitions they are added to.
//! Every segment is built on the base segment's partitions; rows unlike
//! those the partitions were trained on land far from every centroid, the
//! cells grow loose, and recall at the calibrated settings falls. The
//! writer compares the mean squared distance of new rows to their nearest
//! centroid with the base rows' own, on samples, and retrains the
//! partitions when it has grown by [`DRIFT_RATIO`].
use super::state::Segment;
use crate::index::format::SectionKind;
use crate::index::kmeans;
use crate::math::Kernels;

/// New rows this much farther (in mean squared distance) from their
/// nearest centroid than the base's rows count as drifted.
pub const DRIFT_RATIO: f64 = 1.5;

/// Rows sampled on each side.
const SAMPLE: usize = 256;

/// The base rows' mean squared distance to their nearest centroid.
#[derive(Debug, Clone, Default)]
pub struct Drift {
    reference: Option<f64>,
    dim: usize,
}

impl Drift {
    /// The reference of base segment `base`.
    pub fn of(base: &Segment) -> Self {
        let f = base.engine.file();
        let rows: &[f32] = f.section(SectionKind::Vectors);
        let centroids: &[f32] = f.section(SectionKind::Centroid);
        Drift {
            reference: mean_distance(rows, centroids, f.dim()),
            dim: f.dim(),
        }
    }

    /// Whether `rows` (prepared, `n x dim`) lie [`DRIFT_RATIO`] times
    /// farther from `centroids` than the reference rows did.
    pub fn drifted(&self, rows: &[f32], centroids: &[f32]) -> bool {
        match (self.reference, mean_distance(rows, centroids, self.dim)) {
            (Some(r), Some(d)) if r > 0.0 => d > DRIFT_RATIO * r,
            _ => false,
        }
    }
}

/// Mean squared distance of up to [`SAMPLE`] evenly spaced rows of `rows`
/// to their nearest centroid (`None` without rows).
fn mean_distance(rows: &[f32], centroids: &[f32], dim: usize) -> Option<f64> {
    let n = rows.len().checked_div(dim)?;
    if n == 0 || centroids.is_empty() {
        return None;
    }
    let kernels = Kernels::detect();
    let norms = kmeans::norms(centroids, dim, &kernels);
    let step = n.div_ceil(SAMPLE).max(1);
    let mut sum = 0.0;
    let mut count = 0usize;
    for i in (0..n).step_by(step) {
        let x = &rows[i * dim..(i + 1) * dim];
        let p = kmeans::nearest(x, centroids, &norms, &kernels);
        sum += f64::from((kernels.l2sq)(x, &centroids[p * dim..(p + 1) * dim]));
        count += 1;
    }
    Some(sum / count as f64)
}
