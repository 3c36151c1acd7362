//! Filters in the core, without Python: attributes written by a build,
//! parsed filters evaluated into masks equal to a plain scan of the values,
//! filtered searches exact over the matching rows, typed errors naming the
//! part of the filter, and a damaged attribute section refused at open.
use _svve_core::core::{Engine, Filter, SearchParams};
use _svve_core::index::attributes::{AttributesInput, ColumnInput};
use _svve_core::index::build::{build_pending_input, BuildInput};
use _svve_core::index::{BuildConfig, LoadOptions, Metric};
use _svve_core::Error;
use rstest::rstest;

use crate::common::{clustered, TempDir};

const N: usize = 2000;
const DIM: usize = 24;

struct Rows {
    tenant: Vec<i64>,
    price: Vec<f64>,
    flag: Vec<bool>,
    lang: Vec<&'static str>,
    tags: Vec<Vec<&'static str>>,
}

fn rows() -> Rows {
    let langs = ["en", "de", "fr"];
    let tagset = ["a", "b", "c"];
    Rows {
        tenant: (0..N as i64).map(|i| (i * 7919) % 50).collect(),
        price: (0..N).map(|i| ((i * 31) % 1000) as f64 / 10.0).collect(),
        flag: (0..N).map(|i| i % 3 == 0).collect(),
        lang: (0..N).map(|i| langs[(i * 13) % 3]).collect(),
        tags: (0..N)
            .map(|i| {
                tagset
                    .iter()
                    .copied()
                    .filter(|t| (i + t.len() * i / 7) % (t.as_bytes()[0] as usize % 4 + 2) == 0)
                    .collect()
            })
            .collect(),
    }
}

fn encode(r: &Rows) -> AttributesInput {
    let dict = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
    let langs = ["en", "de", "fr"];
    let tagset = ["a", "b", "c"];
    let mut offsets = vec![0u64];
    let mut codes = vec![];
    for t in &r.tags {
        codes.extend(
            t.iter()
                .map(|s| tagset.iter().position(|x| x == s).unwrap() as u32),
        );
        offsets.push(codes.len() as u64);
    }
    AttributesInput {
        columns: vec![
            ("tenant".into(), ColumnInput::Int(r.tenant.clone())),
            ("price".into(), ColumnInput::Float(r.price.clone())),
            ("flag".into(), ColumnInput::Bool(r.flag.clone())),
            (
                "lang".into(),
                ColumnInput::Str {
                    dict: dict(&langs),
                    codes: r
                        .lang
                        .iter()
                        .map(|s| langs.iter().position(|x| x == s).unwrap() as u32)
                        .collect(),
                },
            ),
            (
                "tags".into(),
                ColumnInput::Tags {
                    dict: dict(&tagset),
                    offsets,
                    codes,
                },
            ),
        ],
    }
}

fn build(dir: &TempDir) -> (Engine, Vec<f32>, Vec<i64>, Rows) {
    let data = clustered(N, DIM, 3);
    let ids: Vec<i64> = (0..N as i64).map(|i| 10 * i + 1).collect();
    let r = rows();
    let attrs = encode(&r);
    let path = dir.file("f.svve");
    let input = BuildInput::new(&data, DIM)
        .ids(Some(&ids))
        .attributes(Some(&attrs));
    let (_, pending) =
        build_pending_input(&path, input, Metric::L2, &BuildConfig::default(), &mut ()).unwrap();
    pending.commit().unwrap();
    (
        Engine::open(&path, LoadOptions::default()).unwrap(),
        data,
        ids,
        r,
    )
}

/// Input rows (ids `10 i + 1`) that the filter should match, by a plain scan.
fn expected(r: &Rows, which: &str) -> Vec<bool> {
    (0..N)
        .map(|i| match which {
            "tenant7" => r.tenant[i] == 7,
            "price" => r.price[i] >= 10.0 && r.price[i] < 20.5,
            "flag" => r.flag[i],
            "lang" => r.lang[i] == "en" || r.lang[i] == "fr",
            "tags" => r.tags[i].contains(&"b"),
            "or" => r.tenant[i] < 3 || r.lang[i] == "de",
            "not" => !(r.tags[i].contains(&"a") && r.flag[i]),
            "nin" => ![1, 2, 3].contains(&r.tenant[i]),
            "ids" => (100..110).contains(&i),
            _ => unreachable!(),
        })
        .collect()
}

#[rstest]
#[case("tenant7", r#"{"tenant": 7}"#)]
#[case("price", r#"{"price": {"$gte": 10, "$lt": 20.5}}"#)]
#[case("flag", r#"{"flag": true}"#)]
#[case("lang", r#"{"lang": {"$in": ["en", "fr"]}}"#)]
#[case("tags", r#"{"tags": {"$contains": "b"}}"#)]
#[case("or", r#"{"$or": [{"tenant": {"$lt": 3}}, {"lang": "de"}]}"#)]
#[case("not", r#"{"$not": {"tags": "a", "flag": true}}"#)]
#[case("nin", r#"{"tenant": {"$nin": [1, 2, 3]}}"#)]
#[case("ids", r#"{"id": {"$gte": 1001, "$lte": 1091}}"#)]
fn masks_and_exact_search_equal_a_scan(#[case] which: &str, #[case] text: &str) {
    let dir = TempDir::new("filter");
    let (engine, data, ids, r) = build(&dir);
    let filter = Filter::parse(text).unwrap();
    let mask = engine.filter_mask(Some(&filter)).unwrap().unwrap();
    let want = expected(&r, which);
    let stored: &[i64] = engine
        .file()
        .section(_svve_core::index::format::SectionKind::Ids);
    for (row, id) in stored.iter().enumerate() {
        let input = ((id - 1) / 10) as usize;
        assert_eq!(
            mask.get(row),
            want[input],
            "{which}: row {row} (input {input})"
        );
    }
    let q = &data[5 * DIM..6 * DIM];
    let exact = SearchParams {
        k: 10,
        exact: true,
        ..SearchParams::default()
    };
    let (got, _, _) = engine.search_filtered(q, &exact, Some(&filter)).unwrap();
    let mut truth: Vec<(f32, i64)> = (0..N)
        .filter(|&i| want[i])
        .map(|i| {
            let d: f32 = q
                .iter()
                .zip(&data[i * DIM..(i + 1) * DIM])
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            (d, ids[i])
        })
        .collect();
    truth.sort_by(|a, b| a.0.total_cmp(&b.0));
    let truth: Vec<i64> = truth.iter().take(10).map(|t| t.1).collect();
    assert_eq!(got, truth, "{which}");
    // Approximate: only matching rows, min(k, matching) of them.
    let (approx, _, _) = engine
        .search_filtered(
            q,
            &SearchParams {
                k: 10,
                ..SearchParams::default()
            },
            Some(&filter),
        )
        .unwrap();
    assert_eq!(approx.len(), truth.len());
    assert!(approx.iter().all(|id| want[((id - 1) / 10) as usize]));
}

#[rstest]
#[case(r#"{"nope": 1}"#, r#"filter["nope"]: unknown attribute"#)]
#[case(
    r#"{"tenant": "x"}"#,
    r#"filter["tenant"]: "tenant" is int: expected a number"#
)]
#[case(r#"{"lang": {"$lt": 3}}"#, r#"filter["lang"]["$lt"]"#)]
#[case(
    r#"{"$or": [{"tenant": 1}, {"tags": {"$bad": 1}}]}"#,
    r#"filter["$or"][1]["tags"]["$bad"]"#
)]
#[case(r#"[1]"#, "filter: must be a dict")]
#[case(r#"{"a": "#, "not valid JSON")]
fn bad_filters_are_typed_errors(#[case] text: &str, #[case] needle: &str) {
    let dir = TempDir::new("filter");
    let (engine, data, _, _) = build(&dir);
    let err = Filter::parse(text)
        .and_then(|f| engine.search_filtered(&data[..DIM], &SearchParams::default(), Some(&f)))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidFilter(_)), "{err:?}");
    assert!(err.to_string().contains(needle), "{err}");
}

#[test]
fn a_damaged_attribute_header_is_refused_unverified() {
    let dir = TempDir::new("filter");
    let (engine, _, _, _) = build(&dir);
    let path = engine.file().path().to_path_buf();
    let e = engine
        .file()
        .entry(_svve_core::index::format::SectionKind::Attributes)
        .clone();
    drop(engine);
    let mut bytes = std::fs::read(&path).unwrap();
    // The header's row count, "n":2000 -> "n":2001.
    let at = e.offset as usize;
    let text = String::from_utf8_lossy(&bytes[at + 8..at + 40]).to_string();
    let pos = text.find("2000").expect("n in the header") + at + 8;
    bytes[pos + 3] = b'1';
    let bad = dir.file("bad.svve");
    std::fs::write(&bad, &bytes).unwrap();
    let err = Engine::open(&bad, LoadOptions { verify: false })
        .err()
        .expect("refused");
    assert!(matches!(err, Error::CorruptIndex { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("attribute section covers 2001 rows"),
        "{err}"
    );
}
