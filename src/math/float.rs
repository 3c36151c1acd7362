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

/// Portable `out[i] = <x, rows[i]>` for the rows of a row-major matrix
/// (`rows.len() == out.len() * x.len()`).
pub fn dot_rows_portable(x: &[f32], rows: &[f32], out: &mut [f32]) {
    for (o, r) in out.iter_mut().zip(rows.chunks_exact(x.len().max(1))) {
        *o = dot_impl(x, r);
    }
}

/// Euclidean norm, accumulated in f64 so long vectors stay accurate.
pub fn norm(a: &[f32]) -> f32 {
    a.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt() as f32
}

/// x86_64 builds with AVX2 and FMA: explicit intrinsics, four 8-lane
/// accumulators. (The portable loop, compiled for AVX2, kept one register
/// and was bound by the add latency, ~3 cycles per 8 dimensions; an
/// auto-vectorised 32-lane version came out as 2-lane code.)
#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use std::arch::x86_64::*;

    /// Horizontal sum of 8 lanes.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// `sum f(a[i], b[i])`: `step` folds 8 lanes of each into an
    /// accumulator, `tail` scores the last `n % 8` pairs.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn fold(
        a: &[f32],
        b: &[f32],
        step: impl Fn(__m256, __m256, __m256) -> __m256,
        tail: impl Fn(f32, f32) -> f32,
    ) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, r) in acc.iter_mut().enumerate() {
                // SAFETY: `i + 8 j + 8 <= n`: 8 lanes of both slices in bounds.
                let (x, y) = unsafe {
                    (
                        _mm256_loadu_ps(pa.add(i + 8 * j)),
                        _mm256_loadu_ps(pb.add(i + 8 * j)),
                    )
                };
                *r = step(x, y, *r);
            }
            i += 32;
        }
        while i + 8 <= n {
            // SAFETY: `i + 8 <= n`.
            let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
            acc[0] = step(x, y, acc[0]);
            i += 8;
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        hsum(v)
            + a[i..n]
                .iter()
                .zip(&b[i..n])
                .map(|(&x, &y)| tail(x, y))
                .sum::<f32>()
    }

    #[target_feature(enable = "avx2,fma")]
    fn dot_inner(a: &[f32], b: &[f32]) -> f32 {
        fold(a, b, |x, y, acc| _mm256_fmadd_ps(x, y, acc), |x, y| x * y)
    }

    #[target_feature(enable = "avx2,fma")]
    fn l2sq_inner(a: &[f32], b: &[f32]) -> f32 {
        fold(
            a,
            b,
            |x, y, acc| {
                let d = _mm256_sub_ps(x, y);
                _mm256_fmadd_ps(d, d, acc)
            },
            |x, y| (x - y) * (x - y),
        )
    }

    /// Four rows at a time: each 8-lane load of `x` serves four FMAs, so the
    /// loop streams the rows instead of reloading `x` (k-means assignment:
    /// about half the load traffic of one `dot` per row).
    #[target_feature(enable = "avx2,fma")]
    fn dot_rows_inner(x: &[f32], rows: &[f32], out: &mut [f32]) {
        let dim = x.len();
        let n8 = dim / 8 * 8;
        let px = x.as_ptr();
        let mut quads = rows.chunks_exact(4 * dim.max(1));
        let mut outs = out.chunks_exact_mut(4);
        for (quad, o) in (&mut quads).zip(&mut outs) {
            let pr = quad.as_ptr();
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i < n8 {
                // SAFETY: `i + 8 <= dim`: 8 lanes of `x` and of each of the
                // four rows of `quad` (4 * dim values) are in bounds.
                let xv = unsafe { _mm256_loadu_ps(px.add(i)) };
                for (r, a) in acc.iter_mut().enumerate() {
                    // SAFETY: as above.
                    let rv = unsafe { _mm256_loadu_ps(pr.add(r * dim + i)) };
                    *a = _mm256_fmadd_ps(xv, rv, *a);
                }
                i += 8;
            }
            for (r, (a, o)) in acc.iter().zip(o.iter_mut()).enumerate() {
                let row = &quad[r * dim..(r + 1) * dim];
                let tail: f32 = x[n8..].iter().zip(&row[n8..]).map(|(p, q)| p * q).sum();
                *o = hsum(*a) + tail;
            }
        }
        let rest = quads.remainder();
        for (o, r) in outs
            .into_remainder()
            .iter_mut()
            .zip(rest.chunks_exact(dim.max(1)))
        {
            *o = dot_inner(x, r);
        }
    }

    /// AVX2 `out[i] = <x, rows[i]>`; handed out only after run-time detection.
    pub fn dot_rows_avx2(x: &[f32], rows: &[f32], out: &mut [f32]) {
        // SAFETY: `Kernels::detect` checked avx2 and fma before handing this out.
        unsafe { dot_rows_inner(x, rows, out) }
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

/// aarch64 builds: NEON is part of the aarch64 baseline, so these need no
/// run-time detection. Four 4-lane accumulators, as on x86, so the loop is
/// bound by loads rather than by the FMA latency.
#[cfg(target_arch = "aarch64")]
pub mod neon {
    use std::arch::aarch64::*;

    /// `sum f(a[i], b[i])`: `step` folds 4 lanes of each into an
    /// accumulator, `tail` scores the last `n % 4` pairs.
    #[target_feature(enable = "neon")]
    #[inline]
    fn fold(
        a: &[f32],
        b: &[f32],
        step: impl Fn(float32x4_t, float32x4_t, float32x4_t) -> float32x4_t,
        tail: impl Fn(f32, f32) -> f32,
    ) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [vdupq_n_f32(0.0); 4];
        let mut i = 0;
        while i + 16 <= n {
            for (j, r) in acc.iter_mut().enumerate() {
                // SAFETY: `i + 4 j + 4 <= n`: 4 lanes of both slices in bounds.
                let (x, y) =
                    unsafe { (vld1q_f32(pa.add(i + 4 * j)), vld1q_f32(pb.add(i + 4 * j))) };
                *r = step(x, y, *r);
            }
            i += 16;
        }
        while i + 4 <= n {
            // SAFETY: `i + 4 <= n`.
            let (x, y) = unsafe { (vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i))) };
            acc[0] = step(x, y, acc[0]);
            i += 4;
        }
        let v = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
        vaddvq_f32(v)
            + a[i..n]
                .iter()
                .zip(&b[i..n])
                .map(|(&x, &y)| tail(x, y))
                .sum::<f32>()
    }

    #[target_feature(enable = "neon")]
    fn dot_inner(a: &[f32], b: &[f32]) -> f32 {
        fold(a, b, |x, y, acc| vfmaq_f32(acc, x, y), |x, y| x * y)
    }

    #[target_feature(enable = "neon")]
    fn l2sq_inner(a: &[f32], b: &[f32]) -> f32 {
        fold(
            a,
            b,
            |x, y, acc| {
                let d = vsubq_f32(x, y);
                vfmaq_f32(acc, d, d)
            },
            |x, y| (x - y) * (x - y),
        )
    }

    /// Four rows at a time, so each load of `x` serves four FMAs (as the
    /// AVX2 twin).
    #[target_feature(enable = "neon")]
    fn dot_rows_inner(x: &[f32], rows: &[f32], out: &mut [f32]) {
        let dim = x.len();
        let n4 = dim / 4 * 4;
        let px = x.as_ptr();
        let mut quads = rows.chunks_exact(4 * dim.max(1));
        let mut outs = out.chunks_exact_mut(4);
        for (quad, o) in (&mut quads).zip(&mut outs) {
            let pr = quad.as_ptr();
            let mut acc = [vdupq_n_f32(0.0); 4];
            let mut i = 0;
            while i < n4 {
                // SAFETY: `i + 4 <= dim`: 4 lanes of `x` and of each of the
                // four rows of `quad` (4 * dim values) are in bounds.
                let xv = unsafe { vld1q_f32(px.add(i)) };
                for (r, a) in acc.iter_mut().enumerate() {
                    // SAFETY: as above.
                    let rv = unsafe { vld1q_f32(pr.add(r * dim + i)) };
                    *a = vfmaq_f32(*a, xv, rv);
                }
                i += 4;
            }
            for (r, (a, o)) in acc.iter().zip(o.iter_mut()).enumerate() {
                let row = &quad[r * dim..(r + 1) * dim];
                let tail: f32 = x[n4..].iter().zip(&row[n4..]).map(|(p, q)| p * q).sum();
                *o = vaddvq_f32(*a) + tail;
            }
        }
        let rest = quads.remainder();
        for (o, r) in outs
            .into_remainder()
            .iter_mut()
            .zip(rest.chunks_exact(dim.max(1)))
        {
            *o = dot_inner(x, r);
        }
    }

    /// NEON inner product.
    pub fn dot_neon(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: NEON is in the baseline of every aarch64 target.
        unsafe { dot_inner(a, b) }
    }

    /// NEON squared L2 distance.
    pub fn l2sq_neon(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: NEON is in the baseline of every aarch64 target.
        unsafe { l2sq_inner(a, b) }
    }

    /// NEON `out[i] = <x, rows[i]>`.
    pub fn dot_rows_neon(x: &[f32], rows: &[f32], out: &mut [f32]) {
        // SAFETY: NEON is in the baseline of every aarch64 target.
        unsafe { dot_rows_inner(x, rows, out) }
    }
}
