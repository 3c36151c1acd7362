//! The pipeline end to end against a brute-force reference.
use _svve_core::core::{Engine, SearchParams};
use _svve_core::index::format::SectionKind;
use _svve_core::index::{build_index, BuildConfig, LoadOptions, Metric};
use _svve_core::math::Kernels;
use _svve_core::pool;
use _svve_core::Error;
use rstest::rstest;

use crate::common::{clustered, TempDir, POOL_SIZE};

const N: usize = 2000;
const DIM: usize = 96;

fn engine(dir: &TempDir, metric: Metric) -> (Engine, Vec<f32>) {
    engine_with(dir, metric, 0)
}

fn engine_with(dir: &TempDir, metric: Metric, partitions: usize) -> (Engine, Vec<f32>) {
    engine_spilled(dir, metric, partitions, true)
}

/// [`engine_with`], with or without spilled entries.
fn engine_spilled(
    dir: &TempDir,
    metric: Metric,
    partitions: usize,
    spill: bool,
) -> (Engine, Vec<f32>) {
    let path = dir.file("s.svve");
    let data = clustered(N, DIM, 3);
    let ids: Vec<i64> = (0..N as i64).map(|i| 1000 + 7 * i).collect();
    let cfg = BuildConfig {
        partitions,
        spill,
        ..Default::default()
    };
    build_index(&path, &data, DIM, Some(&ids), metric, &cfg, &mut ()).unwrap();
    (Engine::open(&path, LoadOptions::default()).unwrap(), data)
}

/// Brute force in f64: (row, score) best first.
fn brute(data: &[f32], q: &[f32], metric: Metric, k: usize) -> Vec<(usize, f64)> {
    let unit = |v: &[f32]| -> Vec<f64> {
        let n = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        v.iter().map(|x| f64::from(*x) / n).collect()
    };
    let qq: Vec<f64> = if metric == Metric::Cosine {
        unit(q)
    } else {
        q.iter().map(|x| f64::from(*x)).collect()
    };
    let mut s: Vec<(usize, f64)> = data
        .chunks(DIM)
        .enumerate()
        .map(|(i, r)| {
            let r: Vec<f64> = if metric == Metric::Cosine {
                unit(r)
            } else {
                r.iter().map(|x| f64::from(*x)).collect()
            };
            let v = match metric {
                Metric::L2 => -r.iter().zip(&qq).map(|(a, b)| (a - b).powi(2)).sum::<f64>(),
                _ => r.iter().zip(&qq).map(|(a, b)| a * b).sum(),
            };
            (i, v)
        })
        .collect();
    s.sort_by(|a, b| b.1.total_cmp(&a.1));
    s.truncate(k);
    s
}

/// Held-out rows of the same distribution as the data.
fn queries(n: usize) -> Vec<f32> {
    clustered(N + n, DIM, 3)[N * DIM..].to_vec()
}

#[rstest]
fn exact_equals_brute_force(
    #[values(Metric::Cosine, Metric::Ip, Metric::L2)] metric: Metric,
    #[values(1, 16)] partitions: usize,
) {
    let dir = TempDir::new("exact");
    let (e, data) = engine_with(&dir, metric, partitions);
    let p = SearchParams {
        k: 10,
        exact: true,
        ..Default::default()
    };
    for q in queries(20).chunks(DIM) {
        let (ids, scores) = e.search(q, &p).unwrap();
        let want = brute(&data, q, metric, 10);
        let want_ids: Vec<i64> = want.iter().map(|(r, _)| 1000 + 7 * *r as i64).collect();
        assert_eq!(ids, want_ids);
        for (s, (_, w)) in scores.iter().zip(&want) {
            let w = if metric == Metric::L2 { -w } else { *w };
            assert!(
                (f64::from(*s) - w).abs() < 1e-3 * w.abs().max(1.0),
                "{s} vs {w}"
            );
        }
    }
}

#[rstest]
fn default_pipeline_has_high_recall(
    #[values(Metric::Cosine, Metric::Ip, Metric::L2)] metric: Metric,
    #[values(1, 16)] partitions: usize,
) {
    let dir = TempDir::new("recall");
    let (e, data) = engine_with(&dir, metric, partitions);
    let p = SearchParams::default();
    let mut hits = 0;
    let qs = queries(50);
    for q in qs.chunks(DIM) {
        let (ids, _) = e.search(q, &p).unwrap();
        let want: Vec<i64> = brute(&data, q, metric, 10)
            .iter()
            .map(|(r, _)| 1000 + 7 * *r as i64)
            .collect();
        hits += ids.iter().filter(|i| want.contains(i)).count();
    }
    let recall = hits as f64 / 500.0;
    assert!(recall >= 0.9, "recall@10 {recall} for {metric:?}");
}

#[rstest]
fn every_stage_combination_returns_sorted_results(
    #[values(true, false)] expansion: bool,
    #[values(1, 16)] partitions: usize,
) {
    let dir = TempDir::new("stages");
    let (e, _) = engine_with(&dir, Metric::Ip, partitions);
    let p = SearchParams {
        expansion,
        nprobe: 4,
        expand_probes: 2,
        ..Default::default()
    };
    for q in queries(5).chunks(DIM) {
        let (ids, scores, stats) = e.search_with_stats(q, &p).unwrap();
        assert_eq!(ids.len(), 10);
        assert!(scores.windows(2).all(|w| w[0] >= w[1]));
        // Expansion opens at most `expand_probes` more, only near ones.
        let probed = match (partitions, expansion) {
            (1, _) => 1..=1,
            (_, true) => 4..=6,
            (_, false) => 4..=4,
        };
        assert!(probed.contains(&stats.probed), "{}", stats.probed);
        // One partition has nowhere to spill to; otherwise each row is
        // scanned at most twice (its own and its spill partition).
        assert!(stats.scanned <= 2 * N && (partitions > 1 || stats.scanned == N));
        assert!(stats.rescored >= 10 && stats.rescored <= stats.survivors);
    }
}

#[test]
fn k_larger_than_n_returns_every_row() {
    let dir = TempDir::new("bigk");
    let (e, _) = engine(&dir, Metric::L2);
    for exact in [true, false] {
        let p = SearchParams {
            k: 10 * N,
            exact,
            ..Default::default()
        };
        let (ids, scores) = e.search(&queries(1), &p).unwrap();
        assert_eq!(ids.len(), N);
        assert!(
            scores.windows(2).all(|w| w[0] <= w[1]),
            "l2 distances ascend"
        );
    }
}

#[rstest]
fn all_partitions_probed_scans_everything_once(#[values(true, false)] spill: bool) {
    let dir = TempDir::new("allp");
    let (e, _) = engine_spilled(&dir, Metric::L2, 16, spill);
    let p = SearchParams {
        nprobe: 16,
        ..Default::default()
    };
    let (_, _, stats) = e.search_with_stats(&queries(1), &p).unwrap();
    // Every row once; spilled entries are not scanned by a plan that
    // opens more than a quarter of the partitions (blueprint 3.4).
    let spilled = e.file().entry(SectionKind::SpillRows).rows as usize;
    assert_eq!(spilled > 0, spill);
    assert_eq!((stats.probed, stats.scanned), (16, N));
    // One probe (expansion up to two more) scans its entries too.
    let one = SearchParams {
        nprobe: 1,
        expansion: false,
        ..Default::default()
    };
    let (_, _, stats) = e.search_with_stats(&queries(1), &one).unwrap();
    let partition = e.file().offsets();
    let rows_only = (0..16)
        .map(|p| (partition[p + 1] - partition[p]) as usize)
        .any(|r| r == stats.scanned);
    assert_eq!(rows_only, !spill, "{stats:?}");
}

#[test]
fn batch_equals_single_queries() {
    let dir = TempDir::new("batch");
    let (e, _) = engine_with(&dir, Metric::Cosine, 16);
    let qs = queries(33);
    let p = SearchParams::default();
    let b = e.search_batch(&qs, &p).unwrap();
    for (i, q) in qs.chunks(DIM).enumerate() {
        let (ids, scores) = e.search(q, &p).unwrap();
        assert_eq!(&b.ids[i * 10..(i + 1) * 10], ids.as_slice());
        assert_eq!(&b.scores[i * 10..(i + 1) * 10], scores.as_slice());
    }
}

#[test]
fn portable_kernels_give_the_same_answers() {
    let dir = TempDir::new("kern");
    let (e, _) = engine(&dir, Metric::Ip);
    let portable = e.clone().with_kernels(Kernels::portable());
    let p = SearchParams::default();
    for q in queries(10).chunks(DIM) {
        assert_eq!(
            e.search(q, &p).unwrap().0,
            portable.search(q, &p).unwrap().0
        );
    }
}

#[test]
fn bad_queries_and_params_are_errors() {
    let dir = TempDir::new("err");
    let (e, _) = engine(&dir, Metric::Cosine);
    let p = SearchParams::default();
    assert!(matches!(
        e.search(&[0.0; 5], &p),
        Err(Error::DimensionMismatch {
            expected: 96,
            got: 5
        })
    ));
    let mut q = queries(1);
    q[3] = f32::NAN;
    assert!(matches!(
        e.search(&q, &p),
        Err(Error::NonFinite { col: 3, .. })
    ));
    assert!(matches!(
        e.search(&[0.0; DIM], &p),
        Err(Error::InvalidVector(_))
    ));
    let bad = SearchParams {
        k: 0,
        ..Default::default()
    };
    assert!(matches!(
        e.search(&queries(1), &bad),
        Err(Error::InvalidParameter { name: "k", .. })
    ));
    let bad = SearchParams {
        query_bits: 9,
        ..Default::default()
    };
    assert!(matches!(
        e.search(&queries(1), &bad),
        Err(Error::InvalidParameter {
            name: "query_bits",
            ..
        })
    ));
}

#[test]
fn build_rejects_bad_input() {
    let dir = TempDir::new("berr");
    let path = dir.file("x.svve");
    let cfg = BuildConfig::default();
    let mut data = clustered(10, 4, 1);
    assert!(matches!(
        build_index(&path, &[], 4, None, Metric::Ip, &cfg, &mut ()),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        build_index(&path, &data, 3, None, Metric::Ip, &cfg, &mut ()),
        Err(Error::InvalidVector(_))
    ));
    assert!(matches!(
        build_index(
            &path,
            &data,
            4,
            Some(&[1, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            Metric::Ip,
            &cfg,
            &mut ()
        ),
        Err(Error::InvalidParameter { name: "ids", .. })
    ));
    data[13] = f32::INFINITY;
    assert!(matches!(
        build_index(&path, &data, 4, None, Metric::Ip, &cfg, &mut ()),
        Err(Error::NonFinite { row: 3, col: 1, .. })
    ));
    let zeros = vec![0.0f32; 8];
    assert!(matches!(
        build_index(&path, &zeros, 4, None, Metric::Cosine, &cfg, &mut ()),
        Err(Error::InvalidVector(_))
    ));
    assert!(!path.exists(), "failed builds leave no file");
}

#[test]
fn single_queries_split_over_the_pool_give_the_same_answers() {
    let dir = TempDir::new("split");
    let (e, _) = engine(&dir, Metric::L2);
    let split = e.clone().with_parallel_min_rows(0);
    let _size = POOL_SIZE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    pool::set_threads(2);
    for p in [
        SearchParams::default(),
        SearchParams {
            exact: true,
            ..SearchParams::default()
        },
    ] {
        for q in queries(10).chunks(DIM) {
            assert_eq!(e.search(q, &p).unwrap(), split.search(q, &p).unwrap());
        }
    }
    pool::set_threads(0);
}

#[test]
fn few_probes_of_small_partitions_probe_more_instead_of_brute_force() {
    // 1000 partitions of ~2 rows: one probe mostly holds fewer than k = 10.
    let dir = TempDir::new("topup");
    let (e, data) = engine_with(&dir, Metric::L2, 1000);
    let p = SearchParams {
        nprobe: 1,
        expansion: false,
        candidates: 10,
        ..Default::default()
    };
    let mut topped_up = 0;
    for q in queries(20).chunks(DIM) {
        let (ids, scores, stats) = e.search_with_stats(q, &p).unwrap();
        assert_eq!(ids.len(), 10);
        assert!(scores.windows(2).all(|w| w[0] <= w[1]), "l2: ascending");
        topped_up += usize::from(stats.probed >= 2);
        assert!(stats.scanned >= 10 && stats.scanned < N / 4, "{stats:?}");
        assert!(stats.rescored < N, "no brute-force fallback: {stats:?}");
    }
    assert!(
        topped_up >= 10,
        "only {topped_up} of 20 queries needed more probes"
    );
    // The answers are still close: the top-1 is exact for most queries.
    let mut top1 = 0;
    for q in queries(20).chunks(DIM) {
        let (ids, _) = e.search(q, &p).unwrap();
        top1 += usize::from(ids[0] == 1000 + 7 * brute(&data, q, Metric::L2, 1)[0].0 as i64);
    }
    assert!(top1 >= 10, "top-1 right for {top1} of 20 queries");
}

#[rstest]
fn cosine_and_ip_indexes_route_to_the_nearest_cells(
    #[values(Metric::Cosine, Metric::Ip)] metric: Metric,
) {
    // Partitions are L2 cells: with one probe, a query's answer must come
    // from the cell of its L2-nearest centroid. Ranking cells by <q, c>
    // (as ip and cosine indexes once did) picks long centroids over near
    // ones whenever centroid norms differ, which k-means cells do.
    let dir = TempDir::new("route");
    // Without spilled entries: an answer found in a cell is then a row of it.
    let (e, data) = engine_spilled(&dir, metric, 40, false);
    let f = e.file();
    let centroids: &[f32] = f.section(SectionKind::Centroid);
    let ids: &[i64] = f.section(SectionKind::Ids);
    let offsets = f.offsets();
    let p = SearchParams {
        k: 1,
        nprobe: 1,
        expansion: false,
        ..Default::default()
    };
    let norms: Vec<f32> = centroids
        .chunks(DIM)
        .map(|c| c.iter().map(|x| x * x).sum::<f32>().sqrt())
        .collect();
    let spread = norms.iter().cloned().fold(0.0f32, f32::max)
        / norms.iter().cloned().fold(f32::MAX, f32::min);
    assert!(
        spread > 1.05,
        "the test needs uneven centroid norms ({spread})"
    );
    let mut rng = crate::common::Rng::new(5);
    let dist2 = |c: &[f32], q: &[f32]| c.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>();
    let mut worst = 1.0f32;
    for i in (0..N).step_by(10) {
        // Near the data, as queries are: a stored row plus noise.
        let mut q: Vec<f32> = data[i * DIM..(i + 1) * DIM]
            .iter()
            .map(|x| x + 0.3 * rng.unit())
            .collect();
        if metric == Metric::Cosine {
            let n = q.iter().map(|x| x * x).sum::<f32>().sqrt();
            q.iter_mut().for_each(|x| *x /= n);
        }
        let best = centroids
            .chunks(DIM)
            .map(|c| dist2(c, &q))
            .fold(f32::MAX, f32::min);
        let (found, _) = e.search(&q, &p).unwrap();
        let row = ids.iter().position(|&i| i == found[0]).unwrap() as u64;
        let part = offsets.partition_point(|&o| o <= row) - 1;
        // The int8 ranking may swap near ties; nothing more.
        worst = worst.max(dist2(&centroids[part * DIM..(part + 1) * DIM], &q) / best);
    }
    assert!(
        worst < 1.05,
        "a query went to a cell {worst}x farther than the nearest"
    );
}
