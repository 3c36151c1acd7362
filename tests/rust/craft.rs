//! Crafting index files byte by byte: parse a valid file into its sections,
//! change anything (a manifest field, a shape, a payload, an entry field),
//! and assemble a file whose header, table and checksums are all correct
//! again, so that a test reaches exactly the check it is aimed at.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use _svve_core::index::attributes::{AttributesInput, ColumnInput};
use _svve_core::index::build::{build_pending_input, BuildInput};
use _svve_core::index::format::{
    align_up, ElemType, FileHeader, SectionEntry, SectionKind, FORMAT_VERSION, HEADER_LEN,
};
use _svve_core::index::{BuildConfig, IndexFile, LoadOptions, Metric};
use _svve_core::Error;

use crate::common::{clustered, TempDir};

/// One section: its table fields and its payload.
#[derive(Debug, Clone)]
pub struct Sec {
    pub kind: SectionKind,
    pub version: u16,
    pub elem: ElemType,
    pub rows: u64,
    pub cols: u64,
    pub payload: Vec<u8>,
}

/// The sections of a valid file, in table order.
pub fn parse(bytes: &[u8]) -> Vec<Sec> {
    let raw: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
    let header = FileHeader::decode(&raw).expect("valid header");
    (0..header.section_count as usize)
        .map(|i| {
            let e = entry_at(bytes, i);
            Sec {
                kind: e.kind,
                version: e.version,
                elem: e.elem,
                rows: e.rows,
                cols: e.cols,
                payload: bytes[e.offset as usize..(e.offset + e.len) as usize].to_vec(),
            }
        })
        .collect()
}

/// The decoded table entry `i` of a valid file.
pub fn entry_at(bytes: &[u8], i: usize) -> SectionEntry {
    let raw: [u8; HEADER_LEN] = bytes[HEADER_LEN * (1 + i)..HEADER_LEN * (2 + i)]
        .try_into()
        .unwrap();
    SectionEntry::decode(&raw, i).expect("valid entry")
}

/// Index in the table of the section of `kind`.
pub fn slot_of(bytes: &[u8], kind: SectionKind) -> usize {
    let raw: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
    let count = FileHeader::decode(&raw).unwrap().section_count as usize;
    (0..count)
        .find(|&i| entry_at(bytes, i).kind == kind)
        .expect("section present")
}

/// The table entries `assemble` would write for `secs` (payload CRCs included).
pub fn layout(secs: &[Sec]) -> Vec<SectionEntry> {
    let mut at = align_up((HEADER_LEN * (1 + secs.len())) as u64);
    secs.iter()
        .map(|s| {
            let e = SectionEntry {
                kind: s.kind,
                version: s.version,
                elem: s.elem,
                rows: s.rows,
                cols: s.cols,
                offset: at,
                len: s.payload.len() as u64,
                crc: crc32fast::hash(&s.payload),
            };
            at = align_up(at + e.len);
            e
        })
        .collect()
}

/// A file laid out like the writer does, from sections and (possibly
/// altered) entries: every checksum is recomputed, nothing is validated.
pub fn assemble_with(secs: &[Sec], entries: &[SectionEntry]) -> Vec<u8> {
    let table_end = align_up((HEADER_LEN * (1 + entries.len())) as u64) as usize;
    let end = secs
        .iter()
        .zip(layout(secs))
        .map(|(s, e)| e.offset as usize + s.payload.len())
        .max()
        .unwrap_or(table_end)
        .max(table_end);
    let mut out = vec![0u8; end];
    // The file's version is its sections' (a file without attributes is
    // version 2, one with them version 3).
    let header = FileHeader {
        version: entries.first().map_or(FORMAT_VERSION, |e| e.version),
        section_count: entries.len() as u32,
        file_len: end as u64,
    };
    out[..HEADER_LEN].copy_from_slice(&header.encode());
    for (i, e) in entries.iter().enumerate() {
        out[HEADER_LEN * (1 + i)..HEADER_LEN * (2 + i)].copy_from_slice(&e.encode());
    }
    for (s, e) in secs.iter().zip(layout(secs)) {
        out[e.offset as usize..e.offset as usize + s.payload.len()].copy_from_slice(&s.payload);
    }
    out
}

/// A well-formed file from `secs`.
pub fn assemble(secs: &[Sec]) -> Vec<u8> {
    assemble_with(secs, &layout(secs))
}

/// The manifest text of `secs`.
pub fn manifest_of(secs: &[Sec]) -> String {
    let m = secs
        .iter()
        .find(|s| s.kind == SectionKind::Manifest)
        .unwrap();
    String::from_utf8(m.payload.clone()).unwrap()
}

/// `secs` with its manifest payload replaced (rows follow the new length).
pub fn with_manifest(secs: &[Sec], text: &[u8]) -> Vec<Sec> {
    let mut out = secs.to_vec();
    for s in &mut out {
        if s.kind == SectionKind::Manifest {
            s.payload = text.to_vec();
            s.rows = text.len() as u64;
        }
    }
    out
}

/// Rewrites the file header's length field and reseals it.
pub fn set_file_len(bytes: &mut [u8], file_len: u64) {
    let raw: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
    let mut h = FileHeader::decode(&raw).unwrap();
    h.file_len = file_len;
    bytes[..HEADER_LEN].copy_from_slice(&h.encode());
}

/// Reseals the 64-byte block at `at` (CRC of bytes 0..60 into 60..64).
pub fn reseal(bytes: &mut [u8], at: usize) {
    let crc = crc32fast::hash(&bytes[at..at + 60]);
    bytes[at + 60..at + 64].copy_from_slice(&crc.to_le_bytes());
}

/// A small valid index and its bytes.
pub struct Fixture {
    pub dir: TempDir,
    // Read only by the Unix-only FIFO test.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub n: usize,
    pub dim: usize,
}

impl Fixture {
    /// `n` clustered rows of `dim` in `partitions` partitions.
    pub fn new(tag: &str, n: usize, dim: usize, partitions: usize, metric: Metric) -> Self {
        let dir = TempDir::new(tag);
        let path = dir.file("idx.svve");
        let data = clustered(n, dim, 7);
        let cfg = BuildConfig {
            partitions,
            ..BuildConfig::default()
        };
        // With attributes, so the file holds every kind of section.
        let attrs = AttributesInput {
            columns: vec![
                (
                    "tenant".into(),
                    ColumnInput::Int((0..n as i64).map(|i| i % 5).collect()),
                ),
                (
                    "lang".into(),
                    ColumnInput::Str {
                        dict: vec!["en".into(), "de".into()],
                        codes: (0..n as u32).map(|i| i % 2).collect(),
                    },
                ),
            ],
        };
        let input = BuildInput::new(&data, dim).attributes(Some(&attrs));
        let (_, pending) = build_pending_input(&path, input, metric, &cfg, &mut ()).expect("build");
        pending.commit().expect("commit");
        let bytes = std::fs::read(&path).unwrap();
        Fixture {
            dir,
            path,
            bytes,
            n,
            dim,
        }
    }

    /// Writes `bytes` to a fresh file in the fixture's directory.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.file(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// Opens `path`; panics unless it is refused as corrupt or as a version
/// mismatch, with an error naming the file. Returns the message.
#[track_caller]
pub fn expect_refused(path: &Path, verify: bool) -> String {
    match IndexFile::open(path, LoadOptions { verify }) {
        Ok(_) => panic!("{}: loaded, but should have been refused", path.display()),
        Err(e @ (Error::CorruptIndex { .. } | Error::VersionMismatch { .. })) => {
            let msg = e.to_string();
            let named = match &e {
                Error::CorruptIndex { path: p, .. } | Error::VersionMismatch { path: p, .. } => {
                    p == path
                }
                _ => false,
            };
            assert!(named, "{msg}: the error does not carry the file's path");
            assert!(
                msg.contains(&path.display().to_string()),
                "{msg}: the message does not name the file"
            );
            msg
        }
        Err(e) => panic!(
            "{}: expected CorruptIndex/VersionMismatch, got {e}",
            path.display()
        ),
    }
}

/// Opens `path` and expects success.
#[track_caller]
pub fn expect_loads(path: &Path, verify: bool) -> Arc<IndexFile> {
    IndexFile::open(path, LoadOptions { verify })
        .unwrap_or_else(|e| panic!("{}: should load: {e}", path.display()))
}
