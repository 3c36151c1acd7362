//! What the fuzz targets share: write the input as a file, open it the way
//! the library does, and if it loads, search it every way the API can.
//!
//! Invariants (a panic is a finding):
//! - opening returns `Ok` or an `Error` naming the file; it never panics,
//!   never reads outside the file, never allocates from a header claim;
//! - a file that loads searches without panicking, and every answer (single,
//!   batch, exact, approximate) has `min(k, n)` rows with unique positions;
//!   a batch row equals the single query.
use std::path::{Path, PathBuf};

use _svve_core::core::{Engine, SearchParams};
use _svve_core::index::format::{SectionEntry, HEADER_LEN, MAX_SECTIONS};
use _svve_core::index::{IndexFile, LoadOptions};
use _svve_core::Error;

/// A per-process scratch file, on tmpfs when there is one.
pub fn scratch_path() -> PathBuf {
    let dir = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("svve-fuzz-{}.svve", std::process::id()))
}

/// Writes `bytes` to the scratch file and runs [`exercise`] on it.
pub fn run(bytes: &[u8]) {
    let path = scratch_path();
    std::fs::write(&path, bytes).expect("write scratch file");
    exercise(&path);
}

/// Recomputes every checksum the format has: the header's, each table
/// entry's, and the payload CRC of each entry whose range lies in the file.
/// Lets mutations reach the checks behind the CRCs.
pub fn reseal(bytes: &mut [u8]) {
    if bytes.len() < HEADER_LEN {
        return;
    }
    let count = u32::from_le_bytes(bytes[16..20].try_into().unwrap()).min(MAX_SECTIONS) as usize;
    for i in 0..count {
        let at = HEADER_LEN * (1 + i);
        if at + HEADER_LEN > bytes.len() {
            break;
        }
        let off = u64::from_le_bytes(bytes[at + 32..at + 40].try_into().unwrap());
        let len = u64::from_le_bytes(bytes[at + 40..at + 48].try_into().unwrap());
        if let Some(end) = off.checked_add(len) {
            if end <= bytes.len() as u64 {
                let crc = crc32fast::hash(&bytes[off as usize..end as usize]);
                bytes[at + 48..at + 52].copy_from_slice(&crc.to_le_bytes());
            }
        }
        seal(bytes, at);
    }
    seal(bytes, 0);
}

fn seal(bytes: &mut [u8], at: usize) {
    let crc = crc32fast::hash(&bytes[at..at + 60]);
    bytes[at + 60..at + 64].copy_from_slice(&crc.to_le_bytes());
}

/// Opens `path` both ways and searches whatever loads.
pub fn exercise(path: &Path) {
    for verify in [true, false] {
        match IndexFile::open(path, LoadOptions { verify }) {
            Ok(file) => search_all(file, path),
            Err(e) => check_error(&e, path),
        }
    }
    // The table decoder on its own, on every 64-byte block of the file.
    if let Ok(bytes) = std::fs::read(path) {
        for (i, block) in bytes.chunks_exact(HEADER_LEN).take(80).enumerate() {
            let _ = SectionEntry::decode(block.try_into().unwrap(), i);
        }
    }
}

fn check_error(e: &Error, path: &Path) {
    match e {
        Error::CorruptIndex { path: p, .. } | Error::VersionMismatch { path: p, .. } => {
            assert_eq!(p, path, "error names another file: {e}");
            assert!(e.to_string().contains(&path.display().to_string()));
        }
        other => panic!("opening a regular file gave an unexpected error: {other}"),
    }
}

fn search_all(file: std::sync::Arc<IndexFile>, path: &Path) {
    let n = file.len();
    let dim = file.dim();
    assert!(n >= 1 && dim >= 1);
    assert_eq!(
        file.file_len() as u64,
        std::fs::metadata(path).unwrap().len()
    );
    let engine = Engine::from_file(file);
    let queries: Vec<Vec<f32>> = (0..3)
        .map(|j| {
            (0..dim)
                .map(|i| {
                    // |component| in [0.5, 1.5]: never a zero (cosine) query
                    let sign = if (i + j) % 3 == 0 { -1.0 } else { 1.0 };
                    sign * (1.0 + 0.5 * ((i * 7 + j * 13) as f32 * 0.37).sin())
                })
                .collect()
        })
        .collect();
    for k in [1usize, 3, n + 2] {
        for exact in [true, false] {
            let p = SearchParams {
                k,
                exact,
                ..SearchParams::default()
            };
            let mut singles = Vec::new();
            for q in &queries {
                let (ids, scores) = engine.search(q, &p).expect("a valid query");
                assert_eq!(ids.len(), scores.len());
                assert_eq!(ids.len(), k.min(n), "every answer has min(k, n) rows");
                singles.extend(ids);
            }
            let b = engine.search_batch(&queries.concat(), &p).expect("batch");
            assert_eq!(b.k, k.min(n));
            assert_eq!(b.ids, singles, "batch rows equal single queries");
        }
    }
    // Non-default pipelines: one probe without expansion; 1-bit queries
    // with a zero-width error bound.
    for p in [
        SearchParams {
            k: 4,
            expansion: false,
            nprobe: 1,
            ..SearchParams::default()
        },
        SearchParams {
            k: 4,
            query_bits: 1,
            epsilon: 0.0,
            ..SearchParams::default()
        },
    ] {
        let (ids, _) = engine.search(&queries[0], &p).expect("search");
        assert_eq!(ids.len(), 4.min(n));
    }
}
