//! Frozen files of every format version (`tests/data/frozen_v1.svve`,
//! written by svve-core 0.1.0 before the core remodel; `frozen_v2.svve`, the
//! first with a recall calibration; `frozen_v4.svve`, the first with spilled
//! entries) must open and answer exactly as recorded
//! in their `frozen_v*_answers.json`: the file format and the pipeline's
//! answers cannot change silently. `tests/data/make_frozen_v*.py` record how
//! the files were made; never regenerate them to make this test pass.
use std::path::PathBuf;

use _svve_core::core::{Engine, SearchParams};
use _svve_core::index::{LoadOptions, Metric};
use serde_json::Value;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The recorded parameters (only those that differ from the defaults).
fn params(k: usize, recorded: &Value) -> SearchParams {
    for key in recorded.as_object().unwrap().keys() {
        let known = [
            "nprobe",
            "candidates",
            "expansion",
            "exact",
            "target_recall",
        ];
        assert!(
            known.contains(&key.as_str()),
            "unhandled recorded parameter {key}"
        );
    }
    let mut p = SearchParams {
        k,
        ..SearchParams::default()
    };
    let uint = |key: &str| recorded.get(key).and_then(Value::as_u64);
    if let Some(v) = uint("nprobe") {
        p.nprobe = v as usize;
    }
    if let Some(v) = uint("candidates") {
        p.candidates = v as usize;
    }
    if let Some(v) = recorded.get("expansion").and_then(Value::as_bool) {
        p.expansion = v;
    }
    if let Some(v) = recorded.get("exact").and_then(Value::as_bool) {
        p.exact = v;
    }
    if let Some(v) = recorded.get("target_recall").and_then(Value::as_f64) {
        p.target_recall = v as f32;
    }
    p
}

#[test]
fn frozen_v1_file_answers_as_recorded() {
    let engine = Engine::open(&data("frozen_v1.svve"), LoadOptions::default())
        .expect("the frozen v1 file must open");
    assert!(engine.file().calibration().is_none());
    check_answers(&engine, 1, "frozen_v1_answers.json", 4);
}

#[test]
fn frozen_v2_file_answers_as_recorded() {
    let engine = Engine::open(&data("frozen_v2.svve"), LoadOptions::default())
        .expect("the frozen v2 file must open");
    let cal = engine
        .file()
        .calibration()
        .expect("a v2 file is calibrated");
    assert_eq!(cal.points.len(), 8);
    check_answers(&engine, 2, "frozen_v2_answers.json", 6);
}

#[test]
fn frozen_v4_file_answers_as_recorded() {
    use _svve_core::index::format::SectionKind;
    let engine = Engine::open(&data("frozen_v4.svve"), LoadOptions::default())
        .expect("the frozen v4 file must open");
    assert!(
        engine.file().entry(SectionKind::SpillRows).rows > 0,
        "spilled entries"
    );
    assert!(engine.file().calibration().is_some());
    check_answers(&engine, 4, "frozen_v4_answers.json", 6);
}

fn check_answers(engine: &Engine, version: u16, answers: &str, count: usize) {
    let file = engine.file();
    assert_eq!(file.manifest().format_version, version);
    assert_eq!((file.len(), file.dim()), (1200, 40));
    assert_eq!(file.metric(), Metric::L2);
    assert_eq!(file.manifest().partitions, 5);

    let text = std::fs::read_to_string(data(answers)).unwrap();
    let answers: Value = serde_json::from_str(&text).unwrap();
    let k = answers["k"].as_u64().unwrap() as usize;
    let queries: Vec<Vec<f32>> = serde_json::from_value(answers["queries"].clone()).unwrap();
    let settings = answers["settings"].as_object().unwrap();
    assert_eq!(settings.len(), count);
    for (name, rec) in settings {
        let p = params(k, &rec["params"]);
        let want_ids: Vec<Vec<i64>> = serde_json::from_value(rec["ids"].clone()).unwrap();
        let want_scores: Vec<Vec<f32>> = serde_json::from_value(rec["scores"].clone()).unwrap();
        for (i, q) in queries.iter().enumerate() {
            let (ids, scores) = engine.search(q, &p).unwrap();
            assert_eq!(ids, want_ids[i], "{name}: query {i} ids");
            for (got, want) in scores.iter().zip(&want_scores[i]) {
                // Float kernels of another instruction set may round the last bits differently.
                let tol = 1e-5 * want.abs().max(1.0);
                assert!(
                    (got - want).abs() <= tol,
                    "{name}: query {i}: {got} vs {want}"
                );
            }
        }
    }
}
