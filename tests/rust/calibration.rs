//! Recall calibration: what a calibrated build stores, how the plan uses
//! it, and that the recall asked for is delivered on queries the
//! calibration never saw.
use _svve_core::core::calibrated::build_index as build_calibrated;
use _svve_core::core::{Engine, QueryPlan, SearchParams};
use _svve_core::index::calibration::{Calibration, SLOT_BYTES, TARGETS};
use _svve_core::index::format::HEADER_LEN;
use _svve_core::index::{build_index, build_pending, BuildConfig, IndexFile, LoadOptions, Metric};
use _svve_core::Error;
use rstest::rstest;

use crate::common::{clustered, TempDir};

const DIM: usize = 32;

/// `n` rows to index and `q` held-out queries from the same distribution.
fn split(n: usize, q: usize) -> (Vec<f32>, Vec<f32>) {
    let mut all = clustered(n + q, DIM, 11);
    let queries = all.split_off(n * DIM);
    (all, queries)
}

fn calibrated(dir: &TempDir, data: &[f32], metric: Metric) -> Engine {
    let path = dir.file("cal.svve");
    let cfg = BuildConfig::default();
    build_calibrated(&path, data, DIM, None, metric, &cfg, &mut ()).expect("build");
    Engine::open(&path, LoadOptions::default()).expect("open")
}

/// Exact top-k ids of `q` by brute force over `data` (ids = row numbers).
fn truth(data: &[f32], q: &[f32], metric: Metric, k: usize) -> Vec<i64> {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut scored: Vec<(f32, i64)> = data
        .chunks_exact(DIM)
        .enumerate()
        .map(|(i, x)| {
            let dot: f32 = x.iter().zip(q).map(|(a, b)| a * b).sum();
            let s = match metric {
                Metric::Ip => dot,
                Metric::Cosine => dot / (norm(x) * norm(q)),
                Metric::L2 => -x.iter().zip(q).map(|(a, b)| (a - b).powi(2)).sum::<f32>(),
            };
            (s, i as i64)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.iter().take(k).map(|s| s.1).collect()
}

#[test]
fn a_calibrated_build_stores_one_point_per_target() {
    let dir = TempDir::new("cal-points");
    let (data, _) = split(6000, 0);
    let engine = calibrated(&dir, &data, Metric::L2);
    let cal = engine.file().calibration().expect("calibrated");
    assert_eq!(engine.file().version(), 4, "spilled entries are version 4");
    assert_eq!(cal.k, 10);
    assert_eq!(cal.queries, 300);
    assert!(cal.settings_tried > 0 && cal.seconds > 0.0);
    let targets: Vec<f64> = cal.points.iter().map(|p| p.target).collect();
    assert_eq!(targets, TARGETS);
    let parts = engine.file().offsets().len() - 1;
    assert!(parts > 1, "6000 rows are partitioned");
    for p in &cal.points {
        if !p.exact {
            assert!(p.recall >= p.target, "{p:?}");
            assert!((1..=parts).contains(&p.nprobe), "{p:?}");
        }
    }
    // Probing every partition with enough survivors reaches any target on
    // these rows for less than brute force, so no point may fall back to
    // it: a calibration that stops searching too early (a line stopped on
    // a screen that over-read once left a 1536-d set's 0.995 exact) shows
    // here as an exact point.
    for p in cal.points.iter().chain(&cal.unspilled) {
        assert!(!p.exact, "no setting found for {p:?}");
    }
    assert_eq!(cal.unspilled.len(), TARGETS.len());
    // Effort grows with the target, in both passes: a point dearer than the
    // next target's is replaced by it.
    for points in [&cal.points, &cal.unspilled] {
        let cost: Vec<f64> = points.iter().map(|p| p.cost_us).collect();
        assert!(cost.windows(2).all(|w| w[0] <= w[1]), "{cost:?}");
    }
}

#[rstest]
fn the_recall_asked_for_is_met_on_held_out_queries(
    #[values(Metric::Cosine, Metric::L2)] metric: Metric,
    #[values(0.9, 0.95)] target: f32,
) {
    let dir = TempDir::new("cal-met");
    let (data, queries) = split(8000, 200);
    let engine = calibrated(&dir, &data, metric);
    let params = SearchParams {
        target_recall: target,
        ..SearchParams::default()
    };
    let mut hits = 0;
    for q in queries.chunks_exact(DIM) {
        let (ids, _) = engine.search(q, &params).expect("search");
        let want = truth(&data, q, metric, 10);
        hits += ids.iter().filter(|i| want.contains(i)).count();
    }
    let recall = hits as f64 / (10.0 * 200.0);
    // The calibration's own margin is a 95% bound on 300 queries; 200 fresh
    // ones may fall a little below the target, not far.
    assert!(
        recall >= f64::from(target) - 0.02,
        "{metric:?} target {target}: recall {recall}"
    );
}

#[test]
fn the_plan_takes_calibrated_knobs_unless_set() {
    let dir = TempDir::new("cal-plan");
    let (data, _) = split(6000, 0);
    let engine = calibrated(&dir, &data, Metric::Ip);
    let f = engine.file();
    let cal = f.calibration().expect("calibrated");
    let parts = f.offsets().len() - 1;
    let plan = |p: &SearchParams| {
        QueryPlan::new(p, f.len(), parts, f.metric(), usize::MAX, Some(cal), true).expect("plan")
    };
    let point = cal.point_for(0.9f32, true).expect("0.9 is calibrated");
    let at = |t: f32| SearchParams {
        target_recall: t,
        ..SearchParams::default()
    };
    // A query that may not scan spilled entries (a sparse filter) takes
    // the points measured without them.
    let plain = cal.point_for(0.9f32, false).expect("0.9 is calibrated");
    assert_eq!(plain, &cal.unspilled[2]);
    let p = QueryPlan::new(
        &at(0.9),
        f.len(),
        parts,
        f.metric(),
        usize::MAX,
        Some(cal),
        false,
    )
    .expect("plan");
    assert_eq!(
        (p.nprobe, p.candidates, p.spill),
        (plain.nprobe, plain.candidates, false)
    );
    let p = plan(&at(0.9));
    assert_eq!(p.nprobe, point.nprobe);
    assert_eq!(p.candidates, point.candidates);
    assert_eq!(p.extra_probes, point.expand_probes);
    // A target between two calibrated ones takes the higher one's settings.
    assert_eq!(plan(&at(0.86)), plan(&at(0.9)));
    // An explicit knob wins; the others stay calibrated.
    let p = plan(&SearchParams {
        nprobe: 1,
        ..at(0.9)
    });
    assert_eq!((p.nprobe, p.candidates), (1, point.candidates));
    assert!(!p.exact);
    // Beyond the highest calibrated target, or at 1, only brute force delivers.
    assert!(plan(&at(0.999)).exact);
    assert!(plan(&at(1.0)).exact);
    // More results need proportionally more survivors.
    let p = plan(&SearchParams { k: 40, ..at(0.9) });
    assert_eq!(p.candidates, (point.candidates * 4).min(f.len()));
    // The calibrated error bound goes with the calibrated settings only.
    assert!(point.error_scale > 0.0 && point.error_scale <= 1.0);
    let full = SearchParams::default().epsilon;
    let margin = |p: &SearchParams| plan(p).bound_margin.expect("expansion on");
    assert_eq!(margin(&at(0.9)), full * point.error_scale);
    assert_eq!(
        margin(&SearchParams {
            nprobe: 1,
            ..at(0.9)
        }),
        full
    );
    assert_eq!(
        margin(&SearchParams {
            epsilon: 1.0,
            ..at(0.9)
        }),
        point.error_scale
    );
}

#[test]
fn a_calibration_without_error_scales_reads_as_the_full_bound() {
    let dir = TempDir::new("cal-scale");
    let (data, _) = split(5000, 0);
    let engine = calibrated(&dir, &data, Metric::Ip);
    let mut cal: Calibration = engine.file().calibration().unwrap().clone();
    cal.points[0].error_scale = 0.5;
    let text = serde_json::to_string(&cal).unwrap();
    assert!(text.contains("\"error_scale\":0.5"), "{text}");
    // Files calibrated before the field existed do not write it.
    let old = text.replacen(",\"error_scale\":0.5", "", 1);
    let back: Calibration = serde_json::from_str(&old).unwrap();
    assert_eq!(back.points[0].error_scale, 1.0);
    // A scale of 1 is not written: such a calibration is byte for byte the old one.
    cal.points
        .iter_mut()
        .chain(cal.unspilled.iter_mut())
        .for_each(|p| p.error_scale = 1.0);
    assert!(!serde_json::to_string(&cal).unwrap().contains("error_scale"));
    // A scale that is not a positive number is refused.
    cal.points[0].error_scale = 0.0;
    assert!(cal.check(engine.file().offsets().len() - 1).is_err());
    // So is one in the unspilled points.
    cal.points[0].error_scale = 1.0;
    assert!(
        !cal.unspilled.is_empty(),
        "a spilled file is calibrated twice"
    );
    cal.unspilled[0].error_scale = -1.0;
    assert!(cal.check(engine.file().offsets().len() - 1).is_err());
}

#[test]
fn target_one_answers_exactly() {
    let dir = TempDir::new("cal-exact");
    let (data, queries) = split(5000, 20);
    let engine = calibrated(&dir, &data, Metric::Cosine);
    let one = SearchParams {
        target_recall: 1.0,
        ..SearchParams::default()
    };
    let exact = SearchParams {
        exact: true,
        ..SearchParams::default()
    };
    for q in queries.chunks_exact(DIM) {
        assert_eq!(
            engine.search(q, &one).unwrap(),
            engine.search(q, &exact).unwrap()
        );
    }
}

#[test]
fn an_uncalibrated_file_uses_the_fixed_rules() {
    let dir = TempDir::new("cal-none");
    let (data, _) = split(5000, 0);
    let path = dir.file("plain.svve");
    build_index(
        &path,
        &data,
        DIM,
        None,
        Metric::L2,
        &BuildConfig::default(),
        &mut (),
    )
    .unwrap();
    let f = IndexFile::open(&path, LoadOptions::default()).unwrap();
    assert!(f.calibration().is_none());
    let parts = f.offsets().len() - 1;
    let p = QueryPlan::new(
        &SearchParams::default(),
        f.len(),
        parts,
        f.metric(),
        usize::MAX,
        None,
        true,
    )
    .unwrap();
    assert_eq!(p.nprobe, (parts / 10).max(8).min(parts));
    assert_eq!(p.candidates, 200);
}

#[test]
fn a_pending_build_never_loads_and_vanishes_when_dropped() {
    let dir = TempDir::new("cal-pending");
    let (data, _) = split(500, 0);
    let path = dir.file("p.svve");
    let cfg = BuildConfig::default();
    let (_, pending) = build_pending(&path, &data, DIM, None, Metric::Ip, &cfg, &mut ()).unwrap();
    let tmp = pending.temp_path().to_path_buf();
    match IndexFile::open(&tmp, LoadOptions::default()) {
        Err(Error::CorruptIndex { reason, .. }) => {
            assert!(reason.contains("unfinished"), "{reason}")
        }
        other => panic!("a pending file loaded: {other:?}"),
    }
    assert!(IndexFile::open_pending(&tmp, LoadOptions::default()).is_ok());
    assert!(!path.exists());
    drop(pending);
    assert!(!tmp.exists(), "a dropped pending build leaves nothing");
}

/// Rewrites the calibration slot of `bytes` with `text` (padded) and fixes
/// its checksum, so only the content is wrong.
fn with_calibration(bytes: &[u8], text: &str) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let count = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
    let at = (1..=count)
        .map(|i| HEADER_LEN * i)
        .find(|&at| &b[at + 4..at + 8] == b"CALI")
        .expect("calibration entry");
    let offset = u64::from_le_bytes(b[at + 32..at + 40].try_into().unwrap()) as usize;
    let mut slot = text.as_bytes().to_vec();
    slot.resize(SLOT_BYTES, b' ');
    b[offset..offset + SLOT_BYTES].copy_from_slice(&slot);
    let crc = crc32fast::hash(&slot);
    b[at + 48..at + 52].copy_from_slice(&crc.to_le_bytes());
    let seal = crc32fast::hash(&b[at..at + 60]);
    b[at + 60..at + 64].copy_from_slice(&seal.to_le_bytes());
    b
}

#[test]
fn a_damaged_calibration_is_refused_by_name() {
    let dir = TempDir::new("cal-bad");
    let (data, _) = split(5000, 0);
    let engine = calibrated(&dir, &data, Metric::L2);
    let good: Calibration = engine.file().calibration().unwrap().clone();
    let bytes = std::fs::read(engine.file().path()).unwrap();
    let json = |c: &Calibration| serde_json::to_string(c).unwrap();
    let mut zero_probes = good.clone();
    zero_probes.points[0].nprobe = 0;
    let mut unsorted = good.clone();
    unsorted.points.swap(0, 1);
    let mut no_points = good.clone();
    no_points.points.clear();
    let cases = [
        ("not json", "{\"k\": 10,".to_owned()),
        ("unknown field", json(&good).replacen('{', "{\"x\":1,", 1)),
        ("nprobe 0", json(&zero_probes)),
        ("unsorted", json(&unsorted)),
        ("no points", json(&no_points)),
    ];
    for (what, text) in cases {
        let p = dir.file("bad.svve");
        std::fs::write(&p, with_calibration(&bytes, &text)).unwrap();
        match IndexFile::open(&p, LoadOptions::default()) {
            Err(Error::CorruptIndex { reason, .. }) => {
                assert!(reason.contains("calibration"), "{what}: {reason}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // Control: the same rewrite with the good JSON loads.
    let p = dir.file("good.svve");
    std::fs::write(&p, with_calibration(&bytes, &json(&good))).unwrap();
    let f = IndexFile::open(&p, LoadOptions::default()).unwrap();
    assert_eq!(f.calibration(), Some(&good));
}
