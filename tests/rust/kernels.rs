//! Every kernel against its bit-by-bit or scalar reference.
use _svve_core::math::bits::{plane_scan_reference, to_blocked, word_of, CodeBlocks, BLOCK};
use _svve_core::math::estimate::{EstimateParams, RowFactors};
use _svve_core::math::quantize::{words_for, QueryPlanes};
use _svve_core::math::Kernels;
use rstest::rstest;

use crate::common::Rng;

fn kernel_sets() -> Vec<Kernels> {
    Kernels::all_supported()
}

#[rstest]
fn plane_scan_matches_reference(
    // 65600: past the NEON kernel's u16 accumulators (its portable fallback).
    #[values(1, 63, 64, 65, 384, 768, 1536, 65600)] dim: usize,
    #[values(1, 2, 3, 4, 5, 6, 7, 8)] bits: usize,
) {
    let mut rng = Rng::new(dim as u64 * 31 + bits as u64);
    let words = words_for(dim);
    let rows = 37;
    let mut codes: Vec<u64> = (0..rows * words).map(|_| rng.next_u64()).collect();
    // Bits past `dim` are zero in real codes.
    if !dim.is_multiple_of(64) {
        for r in 0..rows {
            codes[r * words + words - 1] &= (1u64 << (dim % 64)) - 1;
        }
    }
    let q: Vec<f32> = (0..dim).map(|_| rng.unit()).collect();
    let mut planes = QueryPlanes::default();
    planes.encode(&q, bits);
    let levels: Vec<u32> = (0..dim)
        .map(|i| {
            (0..bits)
                .map(|j| (((planes.planes[j * words + i / 64] >> (i % 64)) & 1) as u32) << j)
                .sum()
        })
        .collect();
    let mut want = vec![0u32; rows * 2];
    plane_scan_reference(&codes, words, &levels, &mut want);
    let blocked = to_blocked(&codes, words);
    let padded = rows.div_ceil(BLOCK) * BLOCK;
    let code_blocks = CodeBlocks {
        blocks: &blocked,
        words,
    };
    for k in kernel_sets() {
        let mut got = vec![0u32; padded * 2];
        (k.plane_scan)(code_blocks, planes.as_planes(), &mut got);
        assert_eq!(
            &got[..rows * 2],
            &want[..],
            "kernel {} dim {dim} bits {bits}",
            k.isa
        );
        // Padding rows are all-zero codes.
        assert!(got[rows * 2..].iter().all(|&x| x == 0), "{}", k.isa);
    }
}

#[rstest]
fn estimate_scan_matches_plane_scan_and_formula(
    #[values(1, 64, 65, 384, 1536)] dim: usize,
    #[values(1, 2, 3, 4, 5, 6, 7, 8)] bits: usize,
    #[values(37, 40)] rows: usize,
) {
    let mut rng = Rng::new(dim as u64 * 17 + bits as u64);
    let words = words_for(dim);
    let codes: Vec<u64> = (0..rows * words).map(|_| rng.next_u64()).collect();
    let q: Vec<f32> = (0..dim).map(|_| rng.unit()).collect();
    let mut planes = QueryPlanes::default();
    planes.encode(&q, bits);
    let scale: Vec<f32> = (0..rows).map(|_| rng.unit() + 1.5).collect();
    let bias: Vec<f32> = (0..rows).map(|_| rng.unit()).collect();
    let blocked = to_blocked(&codes, words);
    let nb = rows.div_ceil(BLOCK);
    let code_blocks = CodeBlocks {
        blocks: &blocked,
        words,
    };
    let mut pairs = vec![0u32; nb * BLOCK * 2];
    (Kernels::portable().plane_scan)(code_blocks, planes.as_planes(), &mut pairs);
    let p = EstimateParams {
        offset: 0.25,
        threshold: 0.0,
        ..EstimateParams::for_query(&planes, 2.0)
    };
    assert_eq!(
        p.all,
        planes.lo * dim as f32 + planes.delta * planes.level_sum as f32
    );
    let want: Vec<f32> = (0..rows)
        .map(|r| {
            let t = p.lo2 * pairs[2 * r + 1] as f32 + p.d2 * pairs[2 * r] as f32 - p.all;
            p.offset + bias[r] + p.g * scale[r] * t
        })
        .collect();
    for k in kernel_sets() {
        let mut est = vec![f32::NAN; nb * BLOCK];
        let mut mask = vec![0xAAu8; nb];
        let factors = RowFactors {
            scale: &scale,
            bias: &bias,
        };
        let planes = planes.as_planes();
        (k.estimate_scan)(code_blocks, planes, factors, &p, &mut est, &mut mask);
        for r in 0..nb * BLOCK {
            let bit = (mask[r / BLOCK] >> (r % BLOCK)) & 1 == 1;
            if r >= rows {
                assert_eq!(est[r], f32::NEG_INFINITY, "{} padding row {r}", k.isa);
                assert!(!bit, "{} padding row {r} passed", k.isa);
                continue;
            }
            // FMA may round differently from the scalar formula; the
            // error scales with the terms that cancel, not with the result.
            let terms = (p.lo2 * pairs[2 * r + 1] as f32).abs()
                + (p.d2 * pairs[2 * r] as f32).abs()
                + p.all.abs();
            let tol = 1e-5 * (1.0 + want[r].abs() + p.g * scale[r] * terms);
            assert!(
                (est[r] - want[r]).abs() <= tol,
                "{} row {r}: {} vs {}",
                k.isa,
                est[r],
                want[r]
            );
            assert_eq!(bit, est[r] > p.threshold, "{} row {r} mask", k.isa);
        }
    }
}

#[rstest]
fn quantized_levels_reconstruct_the_query(#[values(4, 8)] bits: usize) {
    let mut rng = Rng::new(7);
    let q: Vec<f32> = (0..300).map(|_| rng.unit()).collect();
    let mut p = QueryPlanes::default();
    p.encode(&q, bits);
    let words = words_for(q.len());
    // With every code bit set, <q, s> = sum(q); with none, -sum(q).
    let all_ones: Vec<u64> = (0..words)
        .map(|w| {
            if (w + 1) * 64 <= q.len() {
                u64::MAX
            } else {
                (1u64 << (q.len() % 64)) - 1
            }
        })
        .collect();
    let mut out = vec![0u32; 2 * BLOCK];
    let blocked = to_blocked(&all_ones, words);
    let code_blocks = CodeBlocks {
        blocks: &blocked,
        words,
    };
    (Kernels::portable().plane_scan)(code_blocks, p.as_planes(), &mut out);
    // The estimate's t = <q, s> with offset 0, bias 0, scale 1, weight 1.
    let e = EstimateParams::for_query(&p, 1.0);
    let est = e.lo2 * out[1] as f32 + e.d2 * out[0] as f32 - e.all;
    let exact: f32 = q.iter().sum();
    let tol = p.delta * q.len() as f32 / 2.0;
    assert!((est - exact).abs() <= tol, "{est} vs {exact} (tol {tol})");
}

#[rstest]
fn float_kernels_match_f64_reference(#[values(1, 7, 8, 9, 384, 1537)] dim: usize) {
    let mut rng = Rng::new(dim as u64);
    let a: Vec<f32> = (0..dim).map(|_| rng.unit()).collect();
    let b: Vec<f32> = (0..dim).map(|_| rng.unit()).collect();
    let dot: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let l2: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    for k in kernel_sets() {
        assert!(
            ((k.dot)(&a, &b) as f64 - dot).abs() < 1e-4 * dim as f64,
            "{}",
            k.isa
        );
        assert!(
            ((k.l2sq)(&a, &b) as f64 - l2).abs() < 1e-4 * dim as f64,
            "{}",
            k.isa
        );
    }
}

#[rstest]
fn blocked_layout_round_trips(#[values(1, 6, 24)] words: usize, #[values(1, 8, 13)] rows: usize) {
    let mut rng = Rng::new(99);
    let codes: Vec<u64> = (0..rows * words).map(|_| rng.next_u64()).collect();
    let blocked = to_blocked(&codes, words);
    assert_eq!(blocked.len(), rows.div_ceil(BLOCK) * BLOCK * words);
    for r in 0..rows {
        for w in 0..words {
            assert_eq!(word_of(&blocked, words, r, w), codes[r * words + w]);
        }
    }
}

#[rstest]
fn int8_block_dot_matches_reference(
    #[values(1, 15, 16, 31, 32, 63, 64, 65, 384, 1536, 1537)] dim: usize,
    #[values(1, 7, 16)] rows: usize,
) {
    use _svve_core::math::int8::{
        bias_query, dot_block_portable, dot_quads_portable, interleave, interleave_quads,
        quantize_i8, widen_query, DotBlockFn, DotQuadsFn, LANES,
    };
    let mut rng = Rng::new(dim as u64 * 17 + rows as u64);
    let mut byte = || (rng.next_u64() % 256) as u8 as i8;
    let mut cases: Vec<(Vec<i8>, Vec<i8>)> = (0..4)
        .map(|_| {
            let q = (0..dim).map(|_| byte()).collect();
            let c = (0..rows * dim).map(|_| byte()).collect();
            (q, c)
        })
        .collect();
    // The extremes: every product at its largest magnitude, both signs.
    cases.push((vec![-128; dim], vec![-128; rows * dim]));
    cases.push((vec![127; dim], vec![-128; rows * dim]));
    // The reference: exact dots per lane, zero for a missing lane.
    let reference = |q: &[i8], c: &[i8]| -> Vec<i64> {
        (0..LANES)
            .map(
                |l| match c.get(l * dim..(l + 1) * dim).filter(|_| l < rows) {
                    Some(row) => q
                        .iter()
                        .zip(row)
                        .map(|(&x, &y)| i64::from(x) * i64::from(y))
                        .sum(),
                    None => 0,
                },
            )
            .collect()
    };
    let mut variants: Vec<(&str, DotBlockFn)> = vec![("portable", dot_block_portable)];
    #[cfg(target_arch = "x86_64")]
    {
        use _svve_core::math::int8::x86;
        if std::arch::is_x86_feature_detected!("avx2") {
            variants.push(("avx2", x86::dot_block_avx2));
        }
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            variants.push(("avx512bw", x86::dot_block_avx512));
        }
    }
    variants.extend(kernel_sets().into_iter().map(|k| (k.isa, k.dot_i8_block)));
    for (q, c) in &cases {
        let (mut block, mut q16) = (Vec::new(), Vec::new());
        interleave(c, dim, &mut block);
        widen_query(q, &mut q16);
        let want = reference(q, c);
        for (name, f) in &variants {
            let mut out = [7i32; LANES];
            f(&block, &q16, &mut out);
            for (l, &got) in out.iter().enumerate() {
                assert_eq!(i64::from(got), want[l], "{name} dim {dim} lane {l}");
            }
        }
    }
    // The quad layout (AVX-512 VNNI): the biased sums, less 128 times the
    // code sums, are the same exact dot products.
    let mut quads: Vec<(&str, DotQuadsFn)> = vec![("portable", dot_quads_portable)];
    #[cfg(target_arch = "x86_64")]
    {
        use _svve_core::math::int8::x86;
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
        {
            quads.push(("vnni", x86::dot_quads_vnni));
        }
    }
    quads.extend(
        kernel_sets()
            .into_iter()
            .filter_map(|k| k.dot_i8_quads.map(|f| (k.isa, f))),
    );
    for (q, c) in &cases {
        let (mut block, mut qu8) = (Vec::new(), Vec::new());
        let sums = interleave_quads(c, dim, &mut block);
        bias_query(q, &mut qu8);
        let want = reference(q, c);
        for (name, f) in &quads {
            let mut out = [7i32; LANES];
            f(&block, &qu8, &mut out);
            for (l, (&got, &sum)) in out.iter().zip(&sums).enumerate() {
                assert_eq!(
                    i64::from(got) - 128 * i64::from(sum),
                    want[l],
                    "{name} dim {dim} lane {l}"
                );
            }
        }
    }
    let mut rng = Rng::new(dim as u64 + 5);
    // Quantization: v ~= scale * code, within half a step per component.
    let v: Vec<f32> = (0..dim).map(|_| rng.unit() * 3.0).collect();
    let mut code = Vec::new();
    let scale = quantize_i8(&v, &mut code);
    for (x, c) in v.iter().zip(&code) {
        assert!((x - scale * f32::from(*c)).abs() <= 0.5 * scale + 1e-6);
    }
    assert_eq!(quantize_i8(&vec![0.0; dim], &mut code), 1.0);
    assert!(code.iter().all(|&c| c == 0));
}

#[rstest]
fn query_planes_hold_each_dimensions_level(
    #[values(1, 7, 64, 65, 384, 1000)] dim: usize,
    #[values(1, 4, 8)] bits: usize,
) {
    let mut rng = Rng::new(dim as u64 * 3 + bits as u64);
    let q: Vec<f32> = (0..dim).map(|_| rng.unit() * 2.0).collect();
    let mut p = QueryPlanes::default();
    p.encode(&q, bits);
    let words = words_for(dim);
    let top = (1u32 << bits) - 1;
    let mut sum = 0;
    for (i, &x) in q.iter().enumerate() {
        let want = if p.delta > 0.0 {
            (((x - p.lo) / p.delta + 0.5) as u32).min(top)
        } else {
            0
        };
        let got: u32 = (0..bits)
            .map(|j| (((p.planes[j * words + i / 64] >> (i % 64)) & 1) as u32) << j)
            .sum();
        // Division and multiplication by the inverse may round a level
        // that sits exactly on a half step either way.
        assert!(got.abs_diff(want) <= 1, "dim {i}: level {got} vs {want}");
        sum += got;
    }
    assert_eq!(sum, p.level_sum);
    // Bits past `dim` stay clear.
    for j in 0..bits {
        for i in dim..words * 64 {
            assert_eq!((p.planes[j * words + i / 64] >> (i % 64)) & 1, 0);
        }
    }
}

#[rstest]
fn dot_rows_matches_dot(
    #[values(1, 7, 8, 9, 384, 1537)] dim: usize,
    #[values(1, 3, 4, 5, 64)] rows: usize,
) {
    let mut rng = Rng::new(dim as u64 * 11 + rows as u64);
    let x: Vec<f32> = (0..dim).map(|_| rng.unit()).collect();
    let m: Vec<f32> = (0..rows * dim).map(|_| rng.unit()).collect();
    for k in kernel_sets() {
        let mut out = vec![f32::NAN; rows];
        (k.dot_rows)(&x, &m, &mut out);
        for (r, &got) in out.iter().enumerate() {
            let want: f64 = x
                .iter()
                .zip(&m[r * dim..(r + 1) * dim])
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            assert!(
                (f64::from(got) - want).abs() < 1e-4 * dim as f64,
                "{} row {r}",
                k.isa
            );
        }
    }
}

/// On aarch64 the kernels a query uses are the NEON ones (run under
/// qemu-aarch64 by `.ci/cross`; blueprint section 12), so the tests above
/// check them.
#[cfg(target_arch = "aarch64")]
#[test]
fn aarch64_detects_the_neon_kernels() {
    assert_eq!(Kernels::detect().isa, "aarch64+neon");
}

/// The routing of scattered filtered queries reads each partition's spread
/// back from the Tier1 factors instead of the float32 rows: the inversion
/// must give `||r||^2` of the residual the factors were made from.
#[rstest]
fn residual_norms_are_read_back_from_the_factors(#[values(2, 32, 384, 1536)] dim: usize) {
    use _svve_core::index::build::{residual_norm2, row_factors};
    use _svve_core::index::Metric;
    let mut rng = Rng::new(dim as u64);
    for scale in [1e-3f32, 0.3, 5.0] {
        let r: Vec<f32> = (0..dim).map(|_| rng.unit() * scale).collect();
        let mu: Vec<f32> = (0..dim).map(|_| rng.unit()).collect();
        let (s, _, e) = row_factors(&r, &mu, Metric::Cosine);
        let want: f64 = r.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        let got = f64::from(residual_norm2(s, e, dim));
        assert!(
            (got - want).abs() <= 1e-3 * want,
            "dim {dim}: {got} vs {want}"
        );
    }
    assert_eq!(residual_norm2(0.0, 0.0, dim), 0.0);
}

/// k-means on well-separated clusters: a random start leaves some
/// clusters without a centroid, and their rows pile into one cell that
/// Lloyd steps never split; rebalancing moves the smallest cells' centroids
/// into such cells, so no cell ends far above the mean.
#[test]
fn kmeans_splits_cells_that_hold_several_clusters() {
    use _svve_core::index::kmeans::{nearest, norms, train};
    // As the clustered 1M set: unit centres in many dimensions (all about
    // equally far apart), uneven cluster sizes, rows spread 0.5 around them.
    let (clusters, dim) = (256, 384);
    let mut rng = Rng::new(7);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| {
            let c: Vec<f32> = (0..dim).map(|_| rng.unit()).collect();
            let norm = c.iter().map(|v| v * v).sum::<f32>().sqrt();
            c.into_iter().map(|v| v / norm).collect()
        })
        .collect();
    let sizes: Vec<usize> = (0..clusters)
        .map(|_| (32.0 * (1.5 * rng.unit()).exp()) as usize + 1)
        .collect();
    let per = sizes.iter().sum::<usize>() / clusters;
    let noise = 0.5 * 3f32.sqrt() / (dim as f32).sqrt();
    let mut rows = Vec::new();
    for (c, &size) in centres.iter().zip(&sizes) {
        for _ in 0..size {
            rows.extend(c.iter().map(|&v| v + noise * rng.unit()));
        }
    }
    let kernels = Kernels::detect();
    let c = train(&rows, dim, clusters, 3, &kernels);
    let cn = norms(&c, dim, &kernels);
    let mut counts = vec![0usize; clusters];
    // The training sample is every row here (the build samples 32 a cell).
    for x in rows.chunks_exact(dim) {
        counts[nearest(x, &c, &cn, &kernels)] += 1;
    }
    // A cell may hold the largest cluster and a small one, not a pile of
    // clusters (without rebalancing: 415 rows, the largest cluster 142).
    let (largest, cluster) = (*counts.iter().max().unwrap(), *sizes.iter().max().unwrap());
    assert!(
        2 * largest <= 3 * cluster,
        "largest cell {largest} rows, largest cluster {cluster}, mean {per}"
    );
}

#[test]
fn word_popcount_equals_counting_bit_by_bit() {
    let mut rng = Rng::new(7);
    for len in [0usize, 1, 7, 8, 9, 63, 64, 65, 1000] {
        let words: Vec<u64> = (0..len).map(|_| rng.next_u64()).collect();
        let naive: usize = words
            .iter()
            .map(|w| (0..64).filter(|b| w >> b & 1 == 1).count())
            .sum();
        assert_eq!(
            _svve_core::math::bits::count_ones(&words),
            naive,
            "len {len}"
        );
        assert_eq!(_svve_core::math::bits::count_ones_portable(&words), naive);
    }
}

#[test]
fn set_bits_sets_exactly_the_rows_given_in_any_order() {
    let mut rng = Rng::new(11);
    for n in [1usize, 64, 200, 1000] {
        // Ascending runs, scattered rows, repeats, descending, past the end.
        let mut rows: Vec<u32> = (0..n as u32 / 3).collect();
        rows.extend((0..n / 4).map(|_| (rng.next_u64() % (n as u64 + 70)) as u32));
        rows.extend((0..n as u32).rev().step_by(5));
        let mut words = vec![0u64; n.div_ceil(64)];
        _svve_core::math::bits::set_bits(&mut words, &rows);
        for r in 0..words.len() * 64 {
            let want = rows.contains(&(r as u32));
            assert_eq!(words[r / 64] >> (r % 64) & 1 == 1, want, "n {n}, row {r}");
        }
    }
}
