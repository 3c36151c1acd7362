//! Spilled entries (blueprint 3.4): every row's code a second time in the
//! partition SOAR picks. The file holds them right, a search through them
//! returns each row once and exactly what brute force does at full effort,
//! and damaged spill sections are refused.
use _svve_core::core::{Engine, SearchParams};
use _svve_core::index::format::SectionKind;
use _svve_core::index::{build_index, BuildConfig, LoadOptions, Metric};
use rstest::rstest;

use crate::common::{clustered, Rng, TempDir};
use crate::corruption::search_survives;
use crate::craft::{assemble, expect_refused, layout, parse, Fixture, Sec};

const N: usize = 1500;
const DIM: usize = 72;
const PARTS: usize = 12;

fn build(dir: &TempDir, metric: Metric, spill: bool) -> (Engine, Vec<f32>) {
    let path = dir.file("sp.svve");
    let data = clustered(N, DIM, 11);
    let cfg = BuildConfig {
        partitions: PARTS,
        spill,
        calibrate: false,
        ..BuildConfig::default()
    };
    build_index(&path, &data, DIM, None, metric, &cfg, &mut ()).unwrap();
    (Engine::open(&path, LoadOptions::default()).unwrap(), data)
}

fn queries(count: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let base = clustered(count, DIM, seed);
    base.iter().map(|x| x + 0.2 * rng.unit()).collect()
}

/// Exact internal scores (higher is better) of every row, best first.
fn brute(data: &[f32], q: &[f32], metric: Metric) -> Vec<(f32, i64)> {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut s: Vec<(f32, i64)> = data
        .chunks(DIM)
        .enumerate()
        .map(|(i, x)| {
            let dot: f32 = x.iter().zip(q).map(|(a, b)| a * b).sum();
            let v = match metric {
                Metric::Ip => dot,
                Metric::Cosine => dot / (norm(x) * norm(q)),
                Metric::L2 => -x.iter().zip(q).map(|(a, b)| (a - b).powi(2)).sum::<f32>(),
            };
            (v, i as i64)
        })
        .collect();
    s.sort_by(|a, b| b.0.total_cmp(&a.0));
    s
}

#[test]
fn rows_are_spilled_at_most_once_into_another_partition() {
    let dir = TempDir::new("sp-layout");
    let (e, _) = build(&dir, Metric::L2, true);
    let f = e.file();
    let rows: &[u32] = f.section(SectionKind::SpillRows);
    let soff: &[u64] = f.section(SectionKind::SpillOffsets);
    let off = f.offsets();
    let mut seen = vec![false; N];
    for p in 0..PARTS {
        let entries = &rows[soff[p] as usize..soff[p + 1] as usize];
        // The cap: at most max(own rows, mean rows) copies per partition.
        let own = (off[p + 1] - off[p]) as usize;
        assert!(entries.len() <= own.max(N.div_ceil(PARTS)), "partition {p}");
        for &r in entries {
            assert!(!seen[r as usize], "row {r} spilled twice");
            seen[r as usize] = true;
            let home = off.partition_point(|&o| o <= u64::from(r)) - 1;
            assert_ne!(home, p, "row {r} spilled into its own partition");
        }
    }
    // Rows between clusters get copies, those deep inside one do not.
    let spilled = seen.iter().filter(|&&s| s).count();
    assert!(
        spilled > N / 10 && spilled < N,
        "{spilled} of {N} rows spilled"
    );
    assert_eq!(f.version(), 4);
}

#[test]
fn a_build_without_spill_has_no_spill_sections() {
    let dir = TempDir::new("sp-off");
    let (e, _) = build(&dir, Metric::L2, false);
    for kind in SectionKind::SPILL {
        assert_eq!(e.file().entry(kind).len, 0, "{kind:?}");
    }
    // Format 2 (no attributes, no spill): older readers still open it.
    assert_eq!(e.file().version(), 2);
    assert!(!e.file().manifest().build.spill);
}

#[rstest]
fn every_survivor_through_spilled_entries_is_scored_exactly(
    #[values(Metric::L2, Metric::Ip, Metric::Cosine)] metric: Metric,
) {
    // Three probes of twelve (spilled entries scanned: at most a quarter
    // of the partitions) and every entry a survivor: the answer is exactly
    // the top-k of the rows whose own or spill partition was probed.
    let dir = TempDir::new("sp-exact");
    let (e, data) = build(&dir, metric, true);
    let f = e.file();
    let centroids: &[f32] = f.section(SectionKind::Centroid);
    let (off, rows): (&[u64], &[u32]) = (f.offsets(), f.section(SectionKind::SpillRows));
    let soff: &[u64] = f.section(SectionKind::SpillOffsets);
    let ids: &[i64] = f.section(SectionKind::Ids);
    let p = SearchParams {
        k: 15,
        nprobe: 3,
        candidates: 2 * N,
        expansion: false,
        ..SearchParams::default()
    };
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut checked = 0;
    for q in queries(100, 3).chunks(DIM) {
        // Routing is by L2 to the centroids (of the unit query for cosine).
        let routed: Vec<f32> = match metric {
            Metric::Cosine => q.iter().map(|x| x / norm(q)).collect(),
            _ => q.to_vec(),
        };
        let mut near: Vec<(f32, usize)> = centroids
            .chunks(DIM)
            .enumerate()
            .map(|(c, v)| (v.iter().zip(&routed).map(|(a, b)| (a - b).powi(2)).sum(), c))
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Skip queries whose third and fourth partitions are nearly tied:
        // the int8 ranking may swap them.
        if near[3].0 < 1.05 * near[2].0 {
            continue;
        }
        checked += 1;
        let probed: Vec<usize> = near[..3].iter().map(|n| n.1).collect();
        let mut reach = vec![false; N];
        for &c in &probed {
            for r in off[c]..off[c + 1] {
                reach[ids[r as usize] as usize] = true;
            }
            for &r in &rows[soff[c] as usize..soff[c + 1] as usize] {
                reach[ids[r as usize] as usize] = true;
            }
        }
        let want: Vec<(f32, i64)> = brute(&data, q, metric)
            .into_iter()
            .filter(|w| reach[w.1 as usize])
            .take(15)
            .collect();
        let (got, scores) = e.search(q, &p).unwrap();
        let want_ids: Vec<i64> = want.iter().map(|w| w.1).collect();
        assert_eq!(got, want_ids);
        let flip = if metric == Metric::L2 { -1.0 } else { 1.0 };
        for (s, w) in scores.iter().zip(&want) {
            assert!(
                (flip * s - w.0).abs() <= 1e-3 * w.0.abs().max(1.0),
                "{s} vs {}",
                w.0
            );
        }
    }
    assert!(checked >= 20, "{checked} queries checked");
}

#[rstest]
fn each_row_is_returned_once(#[values(1, 10, 40)] k: usize, #[values(1, 3)] nprobe: usize) {
    // Few survivors and probes: rows found through both their partitions
    // crowd the survivors, and must still come back k distinct rows.
    let dir = TempDir::new("sp-once");
    let (e, _) = build(&dir, Metric::Ip, true);
    let p = SearchParams {
        k,
        nprobe,
        candidates: k,
        ..SearchParams::default()
    };
    for q in queries(30, 5).chunks(DIM) {
        let (ids, _, stats) = e.search_with_stats(q, &p).unwrap();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), k, "{ids:?}");
        assert!(stats.rescored < N, "no brute-force fallback: {stats:?}");
    }
}

#[test]
fn spill_finds_more_of_the_top_ten_at_equal_probes() {
    // The point of spilling: at one probe a query also reaches the rows
    // spilled into its partition, whose own partition it did not open.
    let dir = TempDir::new("sp-recall");
    let recall = |spill: bool| {
        let (e, data) = build(&dir, Metric::L2, spill);
        let p = SearchParams {
            nprobe: 1,
            expansion: false,
            candidates: 200,
            ..SearchParams::default()
        };
        let mut hits = 0;
        for q in queries(40, 9).chunks(DIM) {
            let (ids, _) = e.search(q, &p).unwrap();
            let want: Vec<i64> = brute(&data, q, Metric::L2)
                .iter()
                .take(10)
                .map(|w| w.1)
                .collect();
            hits += ids.iter().filter(|i| want.contains(i)).count();
        }
        hits
    };
    let (with, without) = (recall(true), recall(false));
    assert!(with > without, "spilled {with} vs not {without} of 400");
}

fn fixture() -> Fixture {
    Fixture::new("sp-craft", 300, 70, 4, Metric::L2)
}

fn with_payload(secs: &[Sec], kind: SectionKind, change: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut secs = secs.to_vec();
    let s = secs.iter_mut().find(|s| s.kind == kind).unwrap();
    change(&mut s.payload);
    assemble(&secs)
}

#[test]
fn damaged_spill_sections_are_refused() {
    let f = fixture();
    let secs = parse(&f.bytes);
    assert!(secs.iter().any(|s| s.kind == SectionKind::SpillRows));
    let refused = |bytes: Vec<u8>, needle: &str| {
        let p = f.write("bad.svve", &bytes);
        for verify in [true, false] {
            let msg = expect_refused(&p, verify);
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
    };
    // An entry copying a row the file does not have (checksums recomputed).
    refused(
        with_payload(&secs, SectionKind::SpillRows, |b| {
            b[4..8].copy_from_slice(&300u32.to_le_bytes())
        }),
        "copies row 300",
    );
    // Two entries copying one row (both could survive and be answered).
    refused(
        with_payload(&secs, SectionKind::SpillRows, |b| {
            let first: [u8; 4] = b[0..4].try_into().unwrap();
            b[4..8].copy_from_slice(&first)
        }),
        "more than one spilled entry",
    );
    // Offsets that go backwards, or do not end at the entry count.
    refused(
        with_payload(&secs, SectionKind::SpillOffsets, |b| {
            b[8..16].copy_from_slice(&299u64.to_le_bytes())
        }),
        "spill offsets",
    );
    refused(
        with_payload(&secs, SectionKind::SpillOffsets, |b| {
            let at = b.len() - 8;
            b[at..].copy_from_slice(&7u64.to_le_bytes())
        }),
        "spill offsets",
    );
    // Each spill section dropped in turn (the file re-laid out without it).
    for kind in SectionKind::SPILL {
        let fewer: Vec<Sec> = secs.iter().filter(|s| s.kind != kind).cloned().collect();
        refused(assemble(&fewer), "incomplete");
    }
    // A spill section of the wrong shape.
    let mut short = secs.clone();
    let s = short
        .iter_mut()
        .find(|s| s.kind == SectionKind::SpillRows)
        .unwrap();
    s.rows -= 1;
    s.payload.truncate(s.payload.len() - 4);
    refused(assemble(&short), "manifest implies");
    assert_eq!(layout(&secs).len(), secs.len());
}

#[test]
fn garbage_in_spilled_codes_and_factors_still_searches() {
    // Without checksum verification, damaged codes or factors load (their
    // shapes are right): searches must still answer min(k, n) rows.
    let f = fixture();
    let secs = parse(&f.bytes);
    for kind in [SectionKind::SpillCodes, SectionKind::SpillFactors] {
        for fill in [0x00u8, 0xFF, 0x7F] {
            let bytes = with_payload(&secs, kind, |b| b.iter_mut().for_each(|x| *x = fill));
            let p = f.write("garbage.svve", &bytes);
            search_survives(&p, f.n, f.dim);
        }
    }
}
