//! The parsers on their own, without files: arbitrary bytes (and arbitrary
//! bytes with valid checksums) into the header, table-entry and manifest
//! decoders, and the library's thread pool used from several threads.
//! Nothing here maps a file, so this module also runs under Miri:
//! `cargo +nightly miri test --test rust_tests decode` (iterations shrink
//! under `cfg(miri)`).
use _svve_core::index::format::{
    ElemType, FileHeader, SectionEntry, SectionKind, ALIGN, FORMAT_VERSION, HEADER_LEN,
    MAX_SECTIONS,
};
use _svve_core::index::{BuildConfig, Manifest, Metric};
use _svve_core::pool;
use rayon::prelude::*;

use crate::common::Rng;

const ROUNDS: usize = if cfg!(miri) { 40 } else { 20_000 };

fn random_block(rng: &mut Rng) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    for chunk in b.chunks_exact_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    b
}

fn seal(b: &mut [u8; HEADER_LEN]) {
    let crc = crc32fast::hash(&b[..60]);
    b[60..].copy_from_slice(&crc.to_le_bytes());
}

/// A block that passes magic and checksum, so decoding reaches the field
/// checks, with the fields that matter often set to plausible values.
fn plausible_header(rng: &mut Rng) -> [u8; HEADER_LEN] {
    let mut b = random_block(rng);
    b[0..8].copy_from_slice(b"SVVEIDX\0");
    if rng.next_u64().is_multiple_of(2) {
        b[12..16].copy_from_slice(&64u32.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
    }
    if rng.next_u64().is_multiple_of(2) {
        let count = (rng.next_u64() % 70) as u32;
        b[16..20].copy_from_slice(&count.to_le_bytes());
    }
    seal(&mut b);
    b
}

fn plausible_entry(rng: &mut Rng) -> [u8; HEADER_LEN] {
    let mut b = random_block(rng);
    b[0..4].copy_from_slice(b"SVSC");
    let kind = SectionKind::ALL[(rng.next_u64() % 7) as usize];
    b[4..8].copy_from_slice(&kind.tag());
    if rng.next_u64().is_multiple_of(2) {
        b[10..12].copy_from_slice(&(kind.elem() as u16).to_le_bytes());
    }
    if rng.next_u64().is_multiple_of(2) {
        // small shapes with a consistent length, sometimes aligned
        let rows = rng.next_u64() % 1000;
        let cols = rng.next_u64() % 100;
        b[16..24].copy_from_slice(&rows.to_le_bytes());
        b[24..32].copy_from_slice(&cols.to_le_bytes());
        let len = rows * cols * kind.elem().size();
        b[40..48].copy_from_slice(&len.to_le_bytes());
        let off = (rng.next_u64() % 4096)
            * if rng.next_u64().is_multiple_of(2) {
                64
            } else {
                1
            };
        b[32..40].copy_from_slice(&off.to_le_bytes());
    }
    seal(&mut b);
    b
}

#[test]
fn header_decoder_accepts_only_well_formed_headers() {
    let mut rng = Rng::new(11);
    let mut accepted = 0;
    for i in 0..ROUNDS {
        let b = if i % 2 == 0 {
            random_block(&mut rng)
        } else {
            plausible_header(&mut rng)
        };
        if let Ok(h) = FileHeader::decode(&b) {
            accepted += 1;
            assert!(h.section_count <= MAX_SECTIONS);
            assert_eq!(&b[0..8], b"SVVEIDX\0");
            // decode . encode is the identity on the fields the format defines
            let again = FileHeader::decode(&h.encode()).unwrap();
            assert_eq!(again, h);
        }
    }
    assert!(accepted > 0, "the generator never reached the field checks");
}

#[test]
fn entry_decoder_accepts_only_consistent_entries() {
    let mut rng = Rng::new(12);
    let mut accepted = 0;
    for i in 0..ROUNDS {
        let b = if i % 2 == 0 {
            random_block(&mut rng)
        } else {
            plausible_entry(&mut rng)
        };
        if let Ok(e) = SectionEntry::decode(&b, i % 64) {
            accepted += 1;
            assert_eq!(e.elem, e.kind.elem());
            assert_eq!(e.offset % ALIGN as u64, 0);
            assert_eq!(
                Some(e.len),
                e.rows
                    .checked_mul(e.cols)
                    .and_then(|x| x.checked_mul(e.elem.size()))
            );
            let again = SectionEntry::decode(&e.encode(), 0).unwrap();
            assert_eq!(again, e);
        }
    }
    assert!(accepted > 0, "the generator never produced a valid entry");
    // every element type decodes only for its own kind
    for kind in SectionKind::ALL {
        for elem in [ElemType::U8, ElemType::U64, ElemType::F32, ElemType::I64] {
            let e = SectionEntry {
                kind,
                version: 1,
                elem,
                rows: 2,
                cols: 3,
                offset: 128,
                len: 6 * elem.size(),
                crc: 0,
            };
            assert_eq!(
                SectionEntry::decode(&e.encode(), 0).is_ok(),
                elem == kind.elem()
            );
        }
    }
}

#[test]
fn manifest_parser_survives_mutations() {
    let good = Manifest::new(300, 70, 4, Metric::L2, BuildConfig::default());
    let text = serde_json::to_vec(&good).unwrap();
    assert!(serde_json::from_slice::<Manifest>(&text)
        .unwrap()
        .check(FORMAT_VERSION)
        .is_ok());
    let mut rng = Rng::new(13);
    let mut valid = 0;
    for _ in 0..ROUNDS / 4 {
        let mut t = text.clone();
        for _ in 0..1 + rng.next_u64() % 4 {
            let at = (rng.next_u64() as usize) % t.len();
            match rng.next_u64() % 4 {
                0 => t[at] = rng.next_u64() as u8,
                1 => t[at] = b"0123456789{}[]\",:-e."[(rng.next_u64() % 20) as usize],
                2 => {
                    t.remove(at);
                }
                _ => t.insert(at, b"9\"[{"[(rng.next_u64() % 4) as usize]),
            }
        }
        if let Ok(m) = serde_json::from_slice::<Manifest>(&t) {
            if m.check(FORMAT_VERSION).is_ok() {
                valid += 1;
                assert!(m.dim >= 1 && m.partitions >= 1 && m.partitions <= u64::from(u32::MAX));
                assert_eq!(m.code_words, m.dim.div_ceil(64));
            }
        }
    }
    // some single-digit edits (e.g. of the seed) stay valid
    assert!(valid < ROUNDS / 4);
}

#[test]
fn pool_is_shared_safely_between_threads() {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let n: u64 = if cfg!(miri) { 64 } else { 100_000 };
                for _ in 0..3 {
                    let s: u64 = pool::install(|| (0..n).into_par_iter().map(|x: u64| x ^ t).sum());
                    assert_eq!(s, (0..n).map(|x| x ^ t).sum::<u64>());
                }
                pool::current_threads()
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap() >= 1);
    }
}

#[test]
fn switching_thread_counts_reuses_each_pool() {
    let addr = || pool::get().map(|p| p as *const _ as usize);
    let _size = crate::common::POOL_SIZE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    pool::set_threads(3);
    let three = addr();
    assert_eq!(pool::current_threads(), 3);
    pool::set_threads(2);
    let two = addr();
    assert_ne!(three, two);
    pool::set_threads(3);
    assert_eq!(
        addr(),
        three,
        "switching back must not build (and leak) another pool"
    );
    pool::set_threads(0); // back to the default for the other tests
}
