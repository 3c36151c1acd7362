//! Row masks in the pipeline, and live collections without Python: changes,
//! commits, readers, checkpoints, merges and damaged files.
use _svve_core::collection::{Collection, CollectionConfig};
use _svve_core::core::{Engine, RowMask, SearchParams};
use _svve_core::index::{build_index, BuildConfig, LoadOptions, Metric};
use _svve_core::Error;
use rstest::rstest;

use crate::common::{clustered, TempDir};

const DIM: usize = 24;

fn exact() -> SearchParams {
    SearchParams {
        exact: true,
        ..Default::default()
    }
}

#[test]
fn row_mask_counts_and_blocks() {
    let mut m = RowMask::all(130);
    assert_eq!((m.len(), m.allowed()), (130, 130));
    assert!(m.clear(3) && !m.clear(3) && m.clear(64) && m.clear(129));
    assert_eq!(m.allowed(), 127);
    assert!(!m.get(3) && m.get(4) && !m.get(130));
    assert_eq!(m.count_range(0, 130), 127);
    assert_eq!(m.count_range(3, 4), 0);
    assert_eq!(m.count_range(4, 64), 60);
    assert_eq!(m.count_range(60, 70), 9);
    assert_eq!(m.count_range(100, 400), 29);
    assert_eq!(m.block_bits(0), 0b1111_0111);
    assert_eq!(m.block_bits(8), 0b1111_1110);
    // Rows past the end are never allowed (the last block is partial).
    assert_eq!(m.block_bits(16), 0b0000_0001);
    assert_eq!(m.cleared().collect::<Vec<_>>(), vec![3, 64, 129]);
}

fn built(dir: &TempDir, n: usize, partitions: usize) -> (Engine, Vec<f32>) {
    let path = dir.file("m.svve");
    let data = clustered(n, DIM, 5);
    let cfg = BuildConfig {
        partitions,
        ..Default::default()
    };
    build_index(&path, &data, DIM, None, Metric::L2, &cfg, &mut ()).unwrap();
    (Engine::open(&path, LoadOptions::default()).unwrap(), data)
}

/// Stored row of each id (ids are 0..n, stored in partition order).
fn stored_rows(e: &Engine) -> Vec<usize> {
    let ids: &[i64] = e
        .file()
        .section(_svve_core::index::format::SectionKind::Ids);
    let mut rows = vec![0; ids.len()];
    for (row, &id) in ids.iter().enumerate() {
        rows[id as usize] = row;
    }
    rows
}

#[rstest]
fn masked_rows_are_never_returned(#[values(1, 12)] partitions: usize) {
    let dir = TempDir::new("mask");
    let (e, data) = built(&dir, 600, partitions);
    let rows = stored_rows(&e);
    let mut mask = RowMask::all(600);
    // Mask every id but multiples of 5: 120 allowed.
    for id in (0..600).filter(|i| i % 5 != 0) {
        mask.clear(rows[id]);
    }
    for qi in 0..20 {
        let q = &data[qi * 7 * DIM..][..DIM];
        let (ids, scores, _) = e.search_masked(q, &exact(), Some(&mask)).unwrap();
        // Exact over the allowed rows.
        let mut want: Vec<(f32, i64)> = (0..600)
            .step_by(5)
            .map(|i| {
                let r = &data[i * DIM..][..DIM];
                (
                    r.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(),
                    i as i64,
                )
            })
            .collect();
        want.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(ids, want[..10].iter().map(|w| w.1).collect::<Vec<_>>());
        assert!((scores[9] - want[9].0).abs() < 1e-3);
        // Approximate: only allowed rows, always k of them.
        for nprobe in [1, 3] {
            let p = SearchParams {
                nprobe,
                ..Default::default()
            };
            let (ids, _, stats) = e.search_masked(q, &p, Some(&mask)).unwrap();
            assert_eq!(ids.len(), 10);
            assert!(ids.iter().all(|i| i % 5 == 0), "{ids:?}");
            assert!(stats.survivors <= 120);
        }
    }
    // Fewer allowed rows than k: all of them.
    let mut few = RowMask::all(600);
    for &row in &rows[3..] {
        few.clear(row);
    }
    let q = &data[..DIM];
    let (ids, _, _) = e
        .search_masked(q, &SearchParams::default(), Some(&few))
        .unwrap();
    assert_eq!(ids.len(), 3);
    let batch = e
        .search_batch_masked(&data[..2 * DIM], &SearchParams::default(), Some(&few))
        .unwrap();
    assert_eq!(batch.k, 3);
    // None allowed: empty answers.
    let mut none = RowMask::all(600);
    (0..600).for_each(|r| {
        none.clear(r);
    });
    let (ids, _, _) = e
        .search_masked(q, &SearchParams::default(), Some(&none))
        .unwrap();
    assert!(ids.is_empty());
}

fn config(fresh_rows: u64, merge_factor: u64) -> CollectionConfig {
    CollectionConfig {
        fresh_rows,
        merge_factor,
        ..Default::default()
    }
}

/// All (id, exact score) of `col` for a fixed query, by id.
fn contents(col: &Collection) -> Vec<(i64, f32)> {
    let q: Vec<f32> = (0..DIM).map(|i| i as f32 / DIM as f32 - 0.5).collect();
    let n = col.snapshot().len().max(1);
    let p = SearchParams { k: n, ..exact() };
    let (ids, scores, _) = col.search(&q, &p, None).unwrap();
    let mut v: Vec<(i64, f32)> = ids.into_iter().zip(scores).collect();
    v.sort_by_key(|x| x.0);
    v
}

#[test]
fn changes_commits_readers_and_reopen() {
    let dir = TempDir::new("col");
    let path = dir.file("c");
    let data = clustered(400, DIM, 9);
    let col = Collection::create(&path, DIM, Metric::Cosine, config(50, 2)).unwrap();
    let ro = Collection::open(&path, true, LoadOptions::default()).unwrap();
    let ids = col
        .write(|w| w.add(&data[..100 * DIM], None, None))
        .unwrap();
    assert_eq!(ids, (0..100).collect::<Vec<i64>>());
    assert_eq!(col.snapshot().len(), 100);
    assert_eq!(ro.snapshot().len(), 0);
    assert!(!ro.refresh().unwrap());
    let g = col.write(|w| w.commit()).unwrap();
    assert!(ro.refresh().unwrap());
    assert_eq!(ro.manifest().unwrap().generation, g);
    assert_eq!(contents(&ro), contents(&col));
    // Deletes and upserts, committed through the log, then a checkpoint.
    assert_eq!(col.write(|w| w.delete(&[1, 2, 3, 1000])).unwrap(), 3);
    col.write(|w| w.upsert(&data[300 * DIM..302 * DIM], &[10, 500], None))
        .unwrap();
    col.write(|w| w.commit()).unwrap();
    assert!(ro.refresh().unwrap());
    assert_eq!(contents(&ro), contents(&col));
    assert_eq!(ro.snapshot().len(), 98);
    col.write(|w| w.add(&data[100 * DIM..200 * DIM], None, None))
        .unwrap();
    col.write(|w| w.commit()).unwrap();
    assert!(ro.refresh().unwrap());
    assert_eq!(contents(&ro), contents(&col));
    // Uncommitted changes are gone after a reopen; committed ones stay.
    let before = contents(&col);
    col.write(|w| w.delete(&[20, 21])).unwrap();
    drop(col);
    let col = Collection::open(&path, false, LoadOptions::default()).unwrap();
    assert_eq!(contents(&col), before);
    // A second writer is refused while the first is open.
    assert!(matches!(
        Collection::open(&path, false, LoadOptions::default()),
        Err(Error::CollectionLocked { .. })
    ));
    assert!(matches!(
        ro.write(|w| w.commit()),
        Err(Error::ReadOnly { .. })
    ));
    col.write(|w| w.compact()).unwrap();
    assert_eq!(col.snapshot().segments.len(), 1);
    assert!(ro.refresh().unwrap());
    assert_eq!(contents(&ro), before);
}

#[test]
fn bad_changes_are_refused_and_change_nothing() {
    let dir = TempDir::new("colbad");
    let col = Collection::create(&dir.file("c"), DIM, Metric::L2, config(0, 0)).unwrap();
    let data = clustered(4, DIM, 1);
    col.write(|w| w.add(&data, Some(&[1, 2, 3, 4]), None))
        .unwrap();
    let dup = |r: Result<_, Error>| matches!(r, Err(Error::DuplicateId { .. }));
    assert!(dup(col.write(|w| w.add(&data, Some(&[5, 6, 7, 1]), None))));
    assert!(dup(col.write(|w| w.add(&data, Some(&[5, 6, 5, 7]), None))));
    assert!(dup(col.write(|w| w.delete(&[9, 9]).map(|_| Vec::new()))));
    assert!(matches!(
        col.write(|w| w.add(&data[..DIM - 1], None, None)),
        Err(Error::DimensionMismatch { .. })
    ));
    let mut nan = data.clone();
    nan[5] = f32::NAN;
    assert!(matches!(
        col.write(|w| w.add(&nan, None, None)),
        Err(Error::NonFinite { .. })
    ));
    assert_eq!(col.snapshot().len(), 4);
    assert!(matches!(
        Collection::create(&dir.file("c"), DIM, Metric::L2, config(0, 0)),
        Err(Error::CollectionExists { .. })
    ));
    assert!(matches!(
        Collection::create(&dir.file("d"), DIM, Metric::L2, config(0, 1)),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        Collection::open(&dir.file("e"), true, LoadOptions::default()),
        Err(Error::CollectionNotFound { .. })
    ));
}

#[test]
fn merges_keep_segments_few_and_answers_exact() {
    let dir = TempDir::new("colmerge");
    let path = dir.file("c");
    let data = clustered(2000, DIM, 4);
    let col = Collection::create(&path, DIM, Metric::Ip, config(100, 3)).unwrap();
    let mut live: Vec<i64> = Vec::new();
    for b in 0..20 {
        let ids: Vec<i64> = (b * 100..(b + 1) * 100).collect();
        col.write(|w| {
            w.add(
                &data[b as usize * 100 * DIM..][..100 * DIM],
                Some(&ids),
                None,
            )
        })
        .unwrap();
        live.extend(&ids);
        if b % 3 == 0 {
            let gone: Vec<i64> = live.iter().copied().filter(|i| i % 11 == b % 11).collect();
            col.write(|w| w.delete(&gone)).unwrap();
            live.retain(|i| !gone.contains(i));
        }
        col.write(|w| w.commit()).unwrap();
        // At most merge_factor - 1 segments per size tier.
        assert!(
            col.snapshot().segments.len() <= 2 * 3,
            "{}",
            col.snapshot().segments.len()
        );
    }
    let got: Vec<i64> = contents(&col).iter().map(|x| x.0).collect();
    live.sort_unstable();
    assert_eq!(got, live);
    let ro = Collection::open(&path, true, LoadOptions::default()).unwrap();
    assert_eq!(contents(&ro), contents(&col));
}

#[test]
fn damaged_files_are_refused_naming_them() {
    let dir = TempDir::new("coldamage");
    let path = dir.file("c");
    let col = Collection::create(&path, DIM, Metric::Cosine, config(1000, 0)).unwrap();
    let data = clustered(20, DIM, 2);
    col.write(|w| w.add(&data, None, None)).unwrap();
    col.write(|w| w.commit()).unwrap();
    drop(col);
    let wal = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("wal-"))
        .unwrap();
    let mut bytes = std::fs::read(&wal).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&wal, &bytes).unwrap();
    match Collection::open(&path, true, LoadOptions::default()) {
        Err(Error::CorruptIndex { path: p, reason }) => {
            assert_eq!(p, wal);
            assert!(reason.contains("checksum"), "{reason}");
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("a damaged log was accepted"),
    }
}

/// A merge gives the rows of the segments it rewrites their known
/// partitions (only new rows are compared with the centroids): the file is
/// the one a build comparing every row makes.
#[test]
fn known_partitions_build_the_same_file() {
    use _svve_core::index::build::{build_on_partitions, BuildInput};
    use _svve_core::index::format::SectionKind;
    use _svve_core::index::partitions::{assign_partitions, UNKNOWN};
    let dir = TempDir::new("known-partitions");
    let (base, data) = built(&dir, 600, 12);
    let centroids: Vec<f32> = base.file().section::<f32>(SectionKind::Centroid).to_vec();
    let found = assign_partitions(&data, DIM, Metric::L2, &centroids).unwrap();
    // Every third row left to the build, the others given.
    let known: Vec<u32> = (0..found.len())
        .map(|i| if i % 3 == 0 { UNKNOWN } else { found[i] })
        .collect();
    let cfg = BuildConfig::default();
    let (a, b) = (dir.file("a.svve"), dir.file("b.svve"));
    build_on_partitions(
        &a,
        BuildInput::new(&data, DIM),
        Metric::L2,
        &cfg,
        &centroids,
    )
    .unwrap();
    let input = BuildInput::new(&data, DIM).known(Some(&known));
    build_on_partitions(&b, input, Metric::L2, &cfg, &centroids).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // The given partitions are taken as they are: every row put in the
    // first makes another file.
    let first = vec![0u32; data.len() / DIM];
    let input = BuildInput::new(&data, DIM).known(Some(&first));
    build_on_partitions(&b, input, Metric::L2, &cfg, &centroids).unwrap();
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // A partition that does not exist is refused, not stored.
    let bad = vec![12u32; data.len() / DIM];
    let input = BuildInput::new(&data, DIM).known(Some(&bad));
    let err = build_on_partitions(&dir.file("c.svve"), input, Metric::L2, &cfg, &centroids);
    assert!(
        matches!(err, Err(Error::InvalidParameter { .. })),
        "{err:?}"
    );
}

/// Every segment a merge writes is the file a build on the base's
/// partitions makes of its rows in id order, comparing every row with the
/// centroids: the partitions a merge keeps for the rows it rewrites are
/// the ones they would be given.
#[test]
fn merged_segments_equal_a_build_on_the_base_partitions() {
    use _svve_core::index::build::{build_on_partitions, BuildInput};
    use _svve_core::index::format::SectionKind;
    let dir = TempDir::new("merged-known");
    let path = dir.file("c");
    let data = clustered(900, DIM, 4);
    // Partitions enough that a wrong one shows (a base of 100 rows would
    // get one).
    let cfg = CollectionConfig {
        segment: BuildConfig {
            partitions: 8,
            ..Default::default()
        },
        ..config(50, 2)
    };
    let col = Collection::create(&path, DIM, Metric::L2, cfg).unwrap();
    let cfg = col.manifest().unwrap().config.segment;
    assert_eq!(cfg.partitions, 8);
    let mut checked = 0;
    for batch in data.chunks(100 * DIM) {
        col.write(|w| w.add(batch, None, None)).unwrap();
        col.write(|w| w.commit()).unwrap();
        let state = col.snapshot();
        let base: &[f32] = state.segments[0]
            .engine
            .file()
            .section(SectionKind::Centroid);
        for s in state.segments.iter().skip(1).filter(|s| s.rows() > 100) {
            let f = s.engine.file();
            let ids: &[i64] = f.section(SectionKind::Ids);
            let vectors: &[f32] = f.section(SectionKind::Vectors);
            let mut order: Vec<usize> = (0..ids.len()).collect();
            order.sort_by_key(|&r| ids[r]);
            let sorted_ids: Vec<i64> = order.iter().map(|&r| ids[r]).collect();
            let rows: Vec<f32> = order
                .iter()
                .flat_map(|&r| &vectors[r * DIM..(r + 1) * DIM])
                .copied()
                .collect();
            let again = dir.file(&format!("again-{checked}.svve"));
            let input = BuildInput::new(&rows, DIM).ids(Some(&sorted_ids));
            build_on_partitions(&again, input, Metric::L2, &cfg, base).unwrap();
            let (a, b) = (
                std::fs::read(f.path()).unwrap(),
                std::fs::read(&again).unwrap(),
            );
            assert!(
                a == b,
                "{} differs from a build of its rows",
                f.path().display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} merged segments seen");
}
