//! Whole-pipeline latency in pure Rust (no Python), for profiling:
//!
//! `cargo bench --bench queries -- INDEX QUERIES.f32 [key=value ...]`
//!
//! `QUERIES.f32` is raw little-endian float32, `dim` values per query.
//! Keys: k, target_recall, nprobe, candidates, expand_probes, expand_ratio,
//! expansion (0/1), epsilon, reps, lock (0/1, default 1: mlock the index, as the
//! Python benchmark does, so proactive reclaim cannot turn the run into a
//! page-fault benchmark). Prints p50/p99/mean latency per query, one thread.
use std::path::Path;
use std::time::Instant;

use _svve_core::core::{Engine, SearchParams};
use _svve_core::index::LoadOptions;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [index, queries, rest @ ..] = args.as_slice() else {
        eprintln!("usage: cargo bench --bench queries -- INDEX QUERIES.f32 [key=value ...]");
        std::process::exit(2);
    };
    let engine = Engine::open(Path::new(index), LoadOptions { verify: false })
        .unwrap_or_else(|e| panic!("{e}"));
    let raw = std::fs::read(queries).unwrap_or_else(|e| panic!("{queries}: {e}"));
    let q: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mut p = SearchParams::default();
    let mut reps = 5;
    let mut lock = true;
    for kv in rest {
        let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("bad arg {kv}"));
        let num = || {
            v.parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value {kv}"))
        };
        match k {
            "k" => p.k = num() as usize,
            "target_recall" => p.target_recall = num() as f32,
            "nprobe" => p.nprobe = num() as usize,
            "candidates" => p.candidates = num() as usize,
            "expand_probes" => p.expand_probes = num() as usize,
            "expand_ratio" => p.expand_ratio = num() as f32,
            "expansion" => p.expansion = num() != 0.0,
            "epsilon" => p.epsilon = num() as f32,
            "reps" => reps = num() as usize,
            "lock" => lock = num() != 0.0,
            _ => panic!("unknown key {k}"),
        }
    }
    if lock {
        engine
            .file()
            .lock_in_memory()
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let dim = engine.dim();
    let mut lat = Vec::new();
    for _ in 0..reps {
        for query in q.chunks_exact(dim) {
            let t = Instant::now();
            let r = engine.search(query, &p).unwrap_or_else(|e| panic!("{e}"));
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(r);
        }
    }
    let mean = lat.iter().sum::<f64>() / lat.len() as f64;
    lat.sort_by(f64::total_cmp);
    let at = |f: f64| lat[((lat.len() - 1) as f64 * f) as usize];
    println!(
        "{} queries x {reps}: p50 {:.1} us, p99 {:.1} us, mean {mean:.1} us",
        lat.len() / reps,
        at(0.5),
        at(0.99)
    );
}
