//! The files of a collection directory and their names. Every file but
//! `LOCK` and the write-ahead log is written once, atomically, and never
//! changed; the log is only appended to, and readers read it up to the
//! length their manifest records.
//!
//! ```text
//! LOCK                      held (flock) by the one writer
//! gen-00000000000000000007  manifest of generation 7 (JSON + checksum)
//! seg-000003.svve           a segment: an ordinary svve index file
//! del-000009.bin            deleted rows of one segment, as of some generation
//! wal-000010.log            changes not yet in a segment
//! ```
use std::fs;
use std::path::Path;

use crate::error::{Error, Result};

/// The writer's lock file.
pub const LOCK: &str = "LOCK";

/// Name of generation `g`'s manifest (zero-padded: names sort by generation).
pub fn manifest_name(g: u64) -> String {
    format!("gen-{g:020}")
}

/// Name of segment file number `no`.
pub fn segment_name(no: u64) -> String {
    format!("seg-{no:06}.svve")
}

/// Name of deletion file number `no`.
pub fn deletes_name(no: u64) -> String {
    format!("del-{no:06}.bin")
}

/// Name of write-ahead log number `no`.
pub fn wal_name(no: u64) -> String {
    format!("wal-{no:06}.log")
}

/// The generation a manifest's file name stands for.
fn generation_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("gen-")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Whether `name` is a file this library writes in a collection directory
/// (only those are ever garbage-collected).
fn ours(name: &str) -> bool {
    generation_of(name).is_some()
        || ["seg-", "del-", "wal-"]
            .iter()
            .any(|p| name.starts_with(p))
        // Temporary files of interrupted atomic writes (`index::writer`).
        || (name.starts_with('.') && name.contains(".tmp-"))
}

/// Generations with a manifest in `dir`, ascending.
pub fn generations(dir: &Path) -> Result<Vec<u64>> {
    let entries = fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::CollectionNotFound {
            path: dir.to_path_buf(),
        },
        _ => Error::io(dir, e),
    })?;
    let mut gens = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(g) = entry.file_name().to_str().and_then(generation_of) {
            gens.push(g);
        }
    }
    gens.sort_unstable();
    Ok(gens)
}

/// Removes every file of ours in `dir` that `keep` does not name. Errors
/// are ignored: a file that cannot be removed now (Windows keeps mapped
/// files) is tried again at the next collection.
pub fn remove_unused(dir: &Path, keep: &dyn Fn(&str) -> bool) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if ours(name) && !keep(name) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(generation_of(&manifest_name(7)), Some(7));
        assert_eq!(generation_of("gen-7"), None);
        assert!(manifest_name(9) < manifest_name(10));
        assert!(ours(&segment_name(3)) && ours(".seg-000003.svve.tmp-1-2"));
        assert!(!ours(LOCK) && !ours("notes.txt"));
    }
}
