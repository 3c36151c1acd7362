//! Float32 kernels for exact (Tier2) scoring.
//!
//! Eight independent accumulators let the compiler vectorise the loop and
//! hide FMA latency; the AVX2 build is the same code with wider registers.

#[inline(always)]
fn dot_impl(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn l2sq_impl(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| (x - y) * (x - y)).sum();
    acc.iter().sum::<f32>() + tail
}

/// Portable inner product.
pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    dot_impl(a, b)
}

/// Portable squared L2 distance.
pub fn l2sq_portable(a: &[f32], b: &[f32]) -> f32 {
    l2sq_impl(a, b)
}

/// Euclidean norm, accumulated in f64 so long vectors stay accurate.
pub fn norm(a: &[f32]) -> f32 {
    a.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt() as f32
}

/// x86_64 builds with AVX2 and FMA enabled.
#[cfg(target_arch = "x86_64")]
pub mod x86 {
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_inner(a: &[f32], b: &[f32]) -> f32 {
        super::dot_impl(a, b)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn l2sq_inner(a: &[f32], b: &[f32]) -> f32 {
        super::l2sq_impl(a, b)
    }

    /// AVX2 inner product; handed out only after run-time detection.
    pub fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `Kernels::detect` checked avx2 and fma before handing this out.
        unsafe { dot_inner(a, b) }
    }

    /// AVX2 squared L2 distance; handed out only after run-time detection.
    pub fn l2sq_avx2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as above.
        unsafe { l2sq_inner(a, b) }
    }
}
