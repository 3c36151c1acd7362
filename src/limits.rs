//! Limits on input values, shared by the builder and the query path.

/// Largest squared L2 norm a row or query may have (2^100, a norm of about
/// 1.1e15). Scores and Tier1 factors are float32 (largest finite value about
/// 2^128): this margin keeps every score, factor and Tier1 estimate built
/// from such vectors finite, even for 2^32 dimensions. Beyond it an overflow
/// to infinity makes a row unreachable, and results come back short.
pub const MAX_NORM2: f64 = 1_267_650_600_228_229_401_496_703_205_376.0; // 2^100

/// Squared norm of `v`, accumulated in f64 over eight independent lanes
/// (one dependent chain of f64 adds was 0.5 us for 384 dimensions).
pub fn norm2_f64(v: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = v.chunks_exact(8);
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum();
    for c in chunks {
        for i in 0..8 {
            acc[i] += f64::from(c[i]) * f64::from(c[i]);
        }
    }
    acc.iter().sum::<f64>() + tail
}
