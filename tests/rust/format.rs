//! The file format: round trip, and every kind of damage refused at open
//! with an error that names the file.
use std::path::Path;

use _svve_core::index::format::{
    FileHeader, SectionEntry, SectionKind, FORMAT_VERSION, HEADER_LEN,
};
use _svve_core::index::{build_index, BuildConfig, IndexFile, LoadOptions, Metric};
use _svve_core::Error;
use rstest::rstest;

use crate::common::{clustered, TempDir};

const DIM: usize = 70;

fn build(dir: &TempDir, metric: Metric) -> std::path::PathBuf {
    let path = dir.file("idx.svve");
    let data = clustered(300, DIM, 1);
    build_index(
        &path,
        &data,
        DIM,
        None,
        metric,
        &BuildConfig::default(),
        &mut (),
    )
    .expect("build");
    path
}

fn open(path: &Path, verify: bool) -> Result<std::sync::Arc<IndexFile>, Error> {
    IndexFile::open(path, LoadOptions { verify })
}

fn expect_corrupt(path: &Path, verify: bool, needle: &str) {
    match open(path, verify) {
        Err(Error::CorruptIndex { path: p, reason }) => {
            assert_eq!(p, path);
            assert!(
                reason.contains(needle),
                "reason {reason:?} lacks {needle:?}"
            );
            let msg = Error::CorruptIndex { path: p, reason }.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
        }
        Err(e) => panic!("expected CorruptIndex({needle}), got {e}"),
        Ok(_) => panic!("expected CorruptIndex({needle}), the file loaded"),
    }
}

fn patch(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).expect("read");
    f(&mut bytes);
    std::fs::write(path, bytes).expect("write");
}

fn entry_at(bytes: &[u8], i: usize) -> SectionEntry {
    let raw: [u8; HEADER_LEN] = bytes[HEADER_LEN * (1 + i)..HEADER_LEN * (2 + i)]
        .try_into()
        .unwrap();
    SectionEntry::decode(&raw, i).unwrap()
}

fn find_entry(bytes: &[u8], kind: SectionKind) -> (usize, SectionEntry) {
    (0..SectionKind::ALL.len())
        .map(|i| (i, entry_at(bytes, i)))
        .find(|(_, e)| e.kind == kind)
        .unwrap()
}

#[rstest]
fn round_trip_keeps_manifest(#[values(Metric::Cosine, Metric::Ip, Metric::L2)] metric: Metric) {
    let dir = TempDir::new("rt");
    let path = build(&dir, metric);
    let f = open(&path, true).expect("open");
    let m = f.manifest();
    assert_eq!(
        (m.n, m.dim, m.metric, m.code_words),
        (300, DIM as u64, metric, 2)
    );
    assert_eq!(
        f.section::<i64>(SectionKind::Ids),
        (0..300).collect::<Vec<i64>>().as_slice()
    );
    assert_eq!(f.file_len() as u64, std::fs::metadata(&path).unwrap().len());
    for kind in SectionKind::ALL {
        assert_eq!(f.entry(kind).offset % 64, 0, "{kind:?} alignment");
    }
}

#[test]
fn missing_file_is_not_found() {
    let dir = TempDir::new("nf");
    assert!(matches!(
        open(&dir.file("nope.svve"), true),
        Err(Error::IndexNotFound { .. })
    ));
}

#[test]
fn directory_and_empty_files_are_refused() {
    let dir = TempDir::new("dir");
    expect_corrupt(&dir.0, true, "directory");
    let empty = dir.file("empty.svve");
    std::fs::write(&empty, b"").unwrap();
    expect_corrupt(&empty, true, "shorter than");
}

#[rstest]
#[case::magic(0, "magic")]
#[case::version_byte_without_reseal(9, "checksum")]
#[case::file_len(25, "checksum")]
#[case::header_crc(61, "checksum")]
#[case::table_entry(HEADER_LEN + 20, "checksum")]
fn header_bit_flips_are_refused(#[case] offset: usize, #[case] needle: &str) {
    let dir = TempDir::new("flip");
    let path = build(&dir, Metric::Ip);
    patch(&path, |b| b[offset] ^= 0x10);
    expect_corrupt(&path, false, needle);
}

#[rstest]
fn payload_bit_flips_fail_verification(
    #[values(
        SectionKind::Manifest,
        SectionKind::Centroid,
        SectionKind::Codes,
        SectionKind::Factors,
        SectionKind::Vectors,
        SectionKind::Ids
    )]
    kind: SectionKind,
) {
    let dir = TempDir::new("payload");
    let path = build(&dir, Metric::Cosine);
    patch(&path, |b| {
        let (_, e) = find_entry(b, kind);
        b[(e.offset + e.len / 2) as usize] ^= 0x01;
    });
    expect_corrupt(&path, true, "checksum mismatch");
}

#[test]
fn truncated_and_extended_files_are_refused() {
    let dir = TempDir::new("len");
    let path = build(&dir, Metric::L2);
    patch(&path, |b| b.truncate(b.len() - 1));
    expect_corrupt(&path, false, "truncated or extended");
    patch(&path, |b| b.extend_from_slice(&[0, 0]));
    expect_corrupt(&path, false, "truncated or extended");
    patch(&path, |b| b.truncate(100));
    expect_corrupt(&path, false, "truncated or extended");
}

#[test]
fn future_version_is_a_version_mismatch() {
    let dir = TempDir::new("ver");
    let path = build(&dir, Metric::Ip);
    patch(&path, |b| {
        let raw: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().unwrap();
        let mut h = FileHeader::decode(&raw).unwrap();
        h.version = 9;
        b[..HEADER_LEN].copy_from_slice(&h.encode());
    });
    match open(&path, true) {
        Err(Error::VersionMismatch {
            found: 9,
            supported: FORMAT_VERSION,
            ..
        }) => {}
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
}

#[test]
fn resealed_huge_section_fails_fast() {
    // A header that claims 2^60 rows must be refused by size checks before
    // anything is allocated or sliced.
    let dir = TempDir::new("huge");
    let path = build(&dir, Metric::Ip);
    patch(&path, |b| {
        let (i, mut e) = find_entry(b, SectionKind::Vectors);
        e.rows = 1 << 40;
        e.len = e.rows * e.cols * 4;
        b[HEADER_LEN * (1 + i)..HEADER_LEN * (2 + i)].copy_from_slice(&e.encode());
    });
    expect_corrupt(&path, false, "outside");
}

#[test]
fn manifest_disagreeing_with_sections_is_refused() {
    let dir = TempDir::new("mani");
    let path = build(&dir, Metric::Ip);
    patch(&path, |b| {
        let (i, mut e) = find_entry(b, SectionKind::Manifest);
        let start = e.offset as usize;
        let text = String::from_utf8(b[start..start + e.len as usize].to_vec()).unwrap();
        let changed = text.replace("\"n\":300", "\"n\":301");
        assert_eq!(changed.len(), text.len());
        b[start..start + e.len as usize].copy_from_slice(changed.as_bytes());
        e.crc = crc32fast::hash(changed.as_bytes());
        b[HEADER_LEN * (1 + i)..HEADER_LEN * (2 + i)].copy_from_slice(&e.encode());
    });
    expect_corrupt(&path, true, "manifest implies");
}

#[test]
fn rebuild_replaces_atomically_and_old_mapping_survives() {
    let dir = TempDir::new("swap");
    let path = build(&dir, Metric::Ip);
    let old = open(&path, true).unwrap();
    let data = clustered(50, DIM, 2);
    build_index(
        &path,
        &data,
        DIM,
        None,
        Metric::Ip,
        &BuildConfig::default(),
        &mut (),
    )
    .unwrap();
    assert_eq!(old.len(), 300, "the old mapping still reads the old file");
    assert_eq!(open(&path, true).unwrap().len(), 50);
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left behind");
}

/// The share of `path`'s pages in the page cache (`mincore` over a
/// mapping of it), or `None` on tmpfs, where the cache is the storage.
#[cfg(target_os = "linux")]
fn cached_share(path: &Path) -> Option<f64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `statfs` is plain old data, all-zero a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path; `st` is written by the call.
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut st) }, 0);
    // The field's and the constant's types differ between targets.
    #[allow(clippy::unnecessary_cast)]
    if st.f_type as i64 == libc::TMPFS_MAGIC as i64 {
        return None;
    }
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: a read-only mapping of a file no one modifies during the test.
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    let page = 4096;
    let mut vec = vec![0u8; map.len().div_ceil(page)];
    // SAFETY: the range is the mapping; `vec` has a byte per 4 KiB page
    // (pages are 4 KiB or larger, so it is long enough).
    let rc = unsafe { libc::mincore(map.as_ptr() as *mut _, map.len(), vec.as_mut_ptr()) };
    assert_eq!(rc, 0);
    let pages = map.len().div_ceil(page) as f64;
    Some(vec.iter().filter(|&&b| b & 1 == 1).count() as f64 / pages)
}

/// A committed file from `DROP_CACHED_FROM` bytes on leaves the page cache
/// (so that the next verified open reads it back in 2 MiB folios); a
/// smaller one stays cached; both open verified and answer exactly.
#[cfg(target_os = "linux")]
#[test]
fn large_committed_files_leave_the_page_cache() {
    use _svve_core::core::{Engine, SearchParams};
    use _svve_core::index::writer::DROP_CACHED_FROM;
    let dir = TempDir::new("dropcache");
    let dim = 256;
    for (name, n) in [
        ("small.svve", 300),
        ("large.svve", DROP_CACHED_FROM as usize / (4 * dim) + 500),
    ] {
        let path = dir.file(name);
        let data = clustered(n, dim, 3);
        let config = BuildConfig::default();
        build_index(&path, &data, dim, None, Metric::L2, &config, &mut ()).expect("build");
        let large = std::fs::metadata(&path).unwrap().len() >= DROP_CACHED_FROM;
        assert_eq!(large, name == "large.svve");
        let Some(before) = cached_share(&path) else {
            return; // tmpfs: nothing to drop
        };
        if large {
            assert!(before < 0.2, "{name}: {before} of the pages still cached");
        } else {
            assert!(before > 0.8, "{name}: only {before} of the pages cached");
        }
        let engine = Engine::from_file(open(&path, true).expect("open"));
        assert!(
            cached_share(&path).unwrap() > 0.9,
            "{name}: verified open reads all"
        );
        let q = &data[7 * dim..8 * dim];
        let p = SearchParams {
            k: 1,
            exact: true,
            ..SearchParams::default()
        };
        let (ids, _) = engine.search(q, &p).expect("search");
        assert_eq!(ids, vec![7], "{name}");
    }
}
