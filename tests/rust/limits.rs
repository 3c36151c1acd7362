//! Numeric limits at the edges of the API: huge `k`, huge magnitudes, and
//! the smallest indexes.
use _svve_core::core::{Engine, SearchParams};
use _svve_core::index::{build_index, BuildConfig, LoadOptions, Metric};
use _svve_core::limits::MAX_NORM2;
use _svve_core::Error;
use rstest::rstest;

use crate::common::{clustered, TempDir};

const DIM: usize = 16;

fn engine(dir: &TempDir, data: &[f32], metric: Metric) -> Engine {
    let path = dir.file("l.svve");
    build_index(
        &path,
        data,
        DIM,
        None,
        metric,
        &BuildConfig::default(),
        &mut (),
    )
    .expect("build");
    Engine::open(&path, LoadOptions::default()).expect("open")
}

#[rstest]
fn rows_with_overflowing_norms_are_refused_at_build(
    #[values(Metric::Cosine, Metric::Ip, Metric::L2)] metric: Metric,
    #[values(1e16f32, 1e19, 1e30, f32::MAX)] value: f32,
) {
    let dir = TempDir::new("norm");
    let mut data = clustered(100, DIM, 1);
    data[7 * DIM + 3] = value;
    let err = build_index(
        &dir.file("x.svve"),
        &data,
        DIM,
        None,
        metric,
        &BuildConfig::default(),
        &mut (),
    )
    .expect_err("a row whose squared norm overflows float32 scores");
    match err {
        Error::InvalidVector(msg) => assert!(msg.contains("row 7"), "{msg}"),
        other => panic!("{other}"),
    }
    assert_eq!(
        std::fs::read_dir(&dir.0).unwrap().count(),
        0,
        "nothing written"
    );
}

#[rstest]
fn rows_just_below_the_norm_limit_are_found(
    #[values(Metric::Cosine, Metric::Ip, Metric::L2)] metric: Metric,
) {
    // One row at the limit among ordinary ones: it is reachable, every
    // score is finite, and results have min(k, n) entries.
    let dir = TempDir::new("norm-ok");
    let mut data = clustered(100, DIM, 2);
    let big = ((MAX_NORM2 / DIM as f64).sqrt() * 0.999) as f32;
    data[7 * DIM..8 * DIM].fill(big);
    let e = engine(&dir, &data, metric);
    let q = data[7 * DIM..8 * DIM].to_vec();
    for exact in [false, true] {
        let p = SearchParams {
            k: 100,
            exact,
            ..SearchParams::default()
        };
        let (ids, scores) = e.search(&q, &p).unwrap();
        assert_eq!(ids.len(), 100, "exact={exact}");
        assert!(scores.iter().all(|s| s.is_finite()), "exact={exact}");
        assert_eq!(ids[0], 7, "exact={exact}: the row itself ranks first");
    }
}

#[rstest]
fn huge_k_returns_every_row(
    #[values(Metric::Cosine, Metric::L2)] metric: Metric,
    // usize::MAX / 20 is the largest k that src/core survives in debug
    // builds (see huge_k_does_not_overflow below).
    #[values(101, 1 << 40, usize::MAX / 20)] k: usize,
) {
    let dir = TempDir::new("k");
    let data = clustered(100, DIM, 3);
    let e = engine(&dir, &data, metric);
    for exact in [false, true] {
        let p = SearchParams {
            k,
            exact,
            ..SearchParams::default()
        };
        let (ids, _) = e.search(&data[..DIM], &p).unwrap();
        assert_eq!(ids.len(), 100);
        let b = e.search_batch(&data[..3 * DIM], &p).unwrap();
        assert_eq!((b.k, b.ids.len()), (100, 300));
    }
}

#[test]
fn huge_k_does_not_overflow() {
    let dir = TempDir::new("k-max");
    let data = clustered(100, DIM, 3);
    let e = engine(&dir, &data, Metric::Ip);
    for k in [usize::MAX / 20 + 1, 1 << 62, usize::MAX] {
        let p = SearchParams {
            k,
            ..SearchParams::default()
        };
        assert_eq!(e.search(&data[..DIM], &p).unwrap().0.len(), 100);
    }
}

#[test]
fn short_approximate_results_in_a_batch() {
    let dir = TempDir::new("short");
    let data = clustered(100, DIM, 4);
    let e = engine(&dir, &data, Metric::L2);
    let q: Vec<f32> = data[..DIM].iter().map(|x| x * 1e20).collect();
    let p = SearchParams {
        k: 10,
        ..SearchParams::default()
    };
    // Either refused as an invalid vector, or answered in full.
    match e.search(&q, &p) {
        Err(Error::InvalidVector(_)) => {}
        Ok((ids, _)) => assert_eq!(ids.len(), 10),
        Err(other) => panic!("{other}"),
    }
    let batch = [q.clone(), data[DIM..2 * DIM].to_vec()].concat();
    match e.search_batch(&batch, &p) {
        Err(Error::InvalidVector(_)) => {}
        Ok(b) => assert_eq!(b.ids.len(), 20),
        Err(other) => panic!("{other}"),
    }
}

#[rstest]
fn one_row_index(#[values(Metric::Cosine, Metric::Ip, Metric::L2)] metric: Metric) {
    let dir = TempDir::new("one");
    let data = clustered(1, DIM, 5);
    let e = engine(&dir, &data, metric);
    for k in [1, 2, 1000] {
        for exact in [false, true] {
            let p = SearchParams {
                k,
                exact,
                ..SearchParams::default()
            };
            let (ids, _) = e.search(&data, &p).unwrap();
            assert_eq!(ids, vec![0]);
        }
    }
}

#[test]
fn zero_rows_are_refused() {
    let dir = TempDir::new("zero");
    let err = build_index(
        &dir.file("z.svve"),
        &[],
        DIM,
        None,
        Metric::Ip,
        &BuildConfig::default(),
        &mut (),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0);
}
