//! Many rows against many centroids at once: k-means assignment, spill
//! assignment and the calibration's brute force score blocks of rows
//! against a matrix, where a register-blocked matrix product (the
//! `matrixmultiply` crate, which picks AVX2/FMA, AVX or SSE2 kernels at
//! run time) reads each operand a few times per block instead of once
//! per pair, as [`super::Kernels::dot_rows`] must.

/// `out[i * c + j] = <xs[i], cs[j]>` for the `m` rows of `xs` and the `c`
/// rows of `cs`, both row-major with `dim` columns; `out` holds `m x c`.
pub fn dots(xs: &[f32], cs: &[f32], dim: usize, out: &mut [f32]) {
    if dim == 0 {
        out.fill(0.0);
        return;
    }
    let (m, c) = (xs.len() / dim, cs.len() / dim);
    assert!(
        xs.len() == m * dim && cs.len() == c * dim && out.len() == m * c,
        "gemm::dots: shapes do not match"
    );
    if m == 0 || c == 0 {
        return;
    }
    // SAFETY: the asserts above bound every index the product reads (`xs`
    // as m x dim with row stride dim, `cs` read transposed as dim x c
    // with column stride dim) and writes (`out` as m x c, row stride c).
    unsafe {
        matrixmultiply::sgemm(
            m,
            dim,
            c,
            1.0,
            xs.as_ptr(),
            dim as isize,
            1,
            cs.as_ptr(),
            1,
            dim as isize,
            0.0,
            out.as_mut_ptr(),
            c as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_equal_pairwise_inner_products() {
        let dim = 37;
        let xs: Vec<f32> = (0..5 * dim).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let cs: Vec<f32> = (0..9 * dim)
            .map(|i| ((i * 5) % 11) as f32 * 0.5 - 2.0)
            .collect();
        let mut out = vec![f32::NAN; 5 * 9];
        dots(&xs, &cs, dim, &mut out);
        for i in 0..5 {
            for j in 0..9 {
                let want: f32 = (0..dim).map(|t| xs[i * dim + t] * cs[j * dim + t]).sum();
                assert!((out[i * 9 + j] - want).abs() <= 1e-3 * want.abs().max(1.0));
            }
        }
    }
}
