//! Tier1 kernel throughput next to a memory-bandwidth baseline, both
//! measured in the same run: `cargo bench --bench kernels`.
//!
//! For each kernel set this CPU supports, scans `rows` random 384-bit codes
//! with a 4-bit query and reports ns/row and GB/s of code bytes, beside a
//! `copy_from_slice` (memcpy) and a plain `u64` sum over the same bytes.
//! Two kernels: the bare bit-plane popcounts, and the fused estimate scan
//! the query path runs (popcounts, estimates and pass mask; it also reads
//! two f32 factors per row, counted in its bytes). Two sizes: one that fits
//! in cache and one that does not.
use std::hint::black_box;
use std::time::Instant;

use _svve_core::math::bits::CodeBlocks;
use _svve_core::math::estimate::{EstimateParams, RowFactors};
use _svve_core::math::quantize::{words_for, QueryPlanes};
use _svve_core::math::Kernels;

fn rng_codes(n: usize, seed: u64) -> Vec<u64> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect()
}

/// Median seconds of `reps` runs of `f`.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn main() {
    let dim = 384;
    let words = words_for(dim);
    let bits = 4;
    let q: Vec<f32> = (0..dim)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let mut planes = QueryPlanes::default();
    planes.encode(&q, bits);
    println!("command: cargo bench --bench kernels");
    println!("dim {dim}, {bits}-bit query, {} bytes per code", words * 8);
    for rows in [60_000usize, 4_000_000] {
        let codes = rng_codes(rows * words, 7);
        let bytes = (rows * words * 8) as f64;
        let reps = if rows > 1_000_000 { 7 } else { 51 };
        let mut dst = vec![0u64; codes.len()];
        let copy = time(reps, || {
            dst.copy_from_slice(black_box(&codes));
            black_box(&dst);
        });
        let sum = time(reps, || {
            black_box(
                black_box(&codes)
                    .iter()
                    .fold(0u64, |a, &b| a.wrapping_add(b)),
            );
        });
        println!(
            "\nrows {rows} ({:.1} MB): memcpy {:.1} GB/s (read+write), u64 sum {:.1} GB/s",
            bytes / 1e6,
            2.0 * bytes / copy / 1e9,
            bytes / sum / 1e9
        );
        for k in Kernels::all_supported() {
            let mut out = vec![0u32; 2 * 256];
            let t = time(reps, || {
                for block in codes.chunks(256 * words) {
                    let o = &mut out[..2 * block.len() / words];
                    let cb = CodeBlocks {
                        blocks: block,
                        words,
                    };
                    (k.plane_scan)(cb, planes.as_planes(), o);
                    black_box(&o);
                }
            });
            report("plane_scan", k.isa, t, rows, bytes, bytes / sum);
        }
        let scale = vec![0.01f32; rows];
        let bias = vec![0.5f32; rows];
        let p = EstimateParams {
            offset: 0.1,
            all: 3.0,
            threshold: f32::INFINITY, // the mask stays empty, as for most blocks
            ..EstimateParams::for_query(&planes, 1.0)
        };
        let fused_bytes = bytes + 8.0 * rows as f64;
        for k in Kernels::all_supported() {
            let (mut est, mut mask) = (vec![0f32; 256], vec![0u8; 32]);
            let t = time(reps, || {
                for (b, block) in codes.chunks(256 * words).enumerate() {
                    let m = block.len() / words;
                    let f = b * 256..b * 256 + m;
                    let cb = CodeBlocks {
                        blocks: block,
                        words,
                    };
                    let rows = RowFactors {
                        scale: &scale[f.clone()],
                        bias: &bias[f],
                    };
                    let planes = planes.as_planes();
                    (k.estimate_scan)(cb, planes, rows, &p, &mut est[..m], &mut mask[..m / 8]);
                    black_box((&est, &mask));
                }
            });
            report("estimate_scan", k.isa, t, rows, fused_bytes, bytes / sum);
        }
    }
}

/// One kernel's line: ns/row, GB/s of the bytes it reads, and that as a
/// share of the `u64` sum's bandwidth (same bytes per second basis).
fn report(kernel: &str, isa: &str, t: f64, rows: usize, bytes: f64, sum_bw: f64) {
    println!(
        "  {kernel:<13} {isa:<40} {:>6.2} ns/row {:>6.1} GB/s ({:.0}% of u64-sum bandwidth)",
        t / rows as f64 * 1e9,
        bytes / t / 1e9,
        100.0 * (bytes / t) / sum_bw
    );
}
