//! Systematic damage to every part of an index file. `format.rs` checks one
//! example of each kind of damage; this module sweeps: every bit of the
//! header and table, sampled bits of every payload, truncation at every
//! section boundary, extensions, every version field, and a catalogue of
//! broken manifests and tables rebuilt with valid checksums, so that the
//! check under test (not a CRC) is what refuses them. Every refusal must be
//! `CorruptIndex` or `VersionMismatch` and name the file; loads that the
//! format allows (payload damage with `verify=false`) must search without
//! panicking.
use _svve_core::core::{Engine, SearchParams};
use _svve_core::index::format::{
    ElemType, FileHeader, SectionEntry, SectionKind, FORMAT_VERSION, HEADER_LEN, MAX_SECTIONS,
};
use _svve_core::index::{IndexFile, LoadOptions, Metric};
use _svve_core::Error;
use rstest::rstest;

use crate::craft::{
    assemble, assemble_with, entry_at, expect_loads, expect_refused, layout, manifest_of, parse,
    reseal, set_file_len, slot_of, with_manifest, Fixture, Sec,
};

/// 40 rows of 8 in 3 partitions: a 2 KiB file, cheap to rewrite thousands of times.
fn tiny() -> Fixture {
    Fixture::new("tiny", 40, 8, 3, Metric::L2)
}

/// 300 rows of 70 (2 code words) in 4 partitions.
fn medium(metric: Metric) -> Fixture {
    Fixture::new("medium", 300, 70, 4, metric)
}

fn table_end(bytes: &[u8]) -> usize {
    let raw: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
    HEADER_LEN * (1 + FileHeader::decode(&raw).unwrap().section_count as usize)
}

/// Searches a loaded (possibly garbage-filled) index every way the API
/// can. Nothing may panic or read out of bounds, and every answer still has
/// `min(k, n)` rows: a query whose Tier1 estimates are not finite (NaN or
/// infinite factors) falls back to exact scoring.
pub fn search_survives(path: &std::path::Path, n: usize, dim: usize) {
    let engine = Engine::open(path, LoadOptions { verify: false }).expect("loads");
    let q: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.37).sin() + 0.1).collect();
    for k in [1, 5, n + 3] {
        for exact in [false, true] {
            let p = SearchParams {
                k,
                exact,
                ..SearchParams::default()
            };
            let (ids, scores) = engine.search(&q, &p).expect("search");
            assert_eq!(ids.len(), scores.len());
            assert_eq!(ids.len(), k.min(n), "{path:?} k={k} exact={exact}");
            let b = engine
                .search_batch(&[q.clone(), q.clone()].concat(), &p)
                .expect("batch");
            assert_eq!(b.k, k.min(n));
            assert_eq!(b.ids.len(), 2 * b.k);
            assert_eq!(&b.ids[..b.k], ids.as_slice(), "batch row = single query");
        }
    }
}

#[test]
fn every_bit_of_header_and_table_is_checked() {
    let f = tiny();
    let end = table_end(&f.bytes);
    assert_eq!(end, HEADER_LEN * 14, "header + 13 entries");
    let mut refused = 0;
    for byte in 0..end {
        for bit in 0..8 {
            let mut b = f.bytes.clone();
            b[byte] ^= 1 << bit;
            let p = f.write("flip.svve", &b);
            // Structure is checked whether or not payload CRCs are.
            expect_refused(&p, false);
            expect_refused(&p, true);
            refused += 1;
        }
    }
    assert_eq!(refused, end * 8);
}

#[rstest]
fn sampled_payload_bits_fail_verification(
    #[values(Metric::Cosine, Metric::Ip, Metric::L2)] metric: Metric,
) {
    let f = medium(metric);
    for kind in SectionKind::ALL {
        let e = entry_at(&f.bytes, slot_of(&f.bytes, kind));
        let len = e.len as usize;
        let mut offsets: Vec<usize> = (0..32).map(|i| i * len / 32).collect();
        offsets.extend([len - 1, len / 2 + 1]);
        for (i, off) in offsets.into_iter().enumerate() {
            let mut b = f.bytes.clone();
            b[e.offset as usize + off] ^= 1 << (i % 8);
            let p = f.write(&format!("payload-{kind:?}-{off}.svve"), &b);
            let msg = expect_refused(&p, true);
            let want = format!("{} section checksum mismatch", kind.name());
            assert!(msg.contains(&want), "{kind:?}+{off}: {msg}");
            // Without verification the structural checks still hold for the
            // sections they cover; anything that loads must search safely.
            if IndexFile::open(&p, LoadOptions { verify: false }).is_ok() {
                search_survives(&p, f.n, f.dim);
            } else {
                expect_refused(&p, false);
            }
        }
    }
}

#[test]
fn payload_garbage_without_verification_never_panics() {
    // Whole sections overwritten (checksums not verified): NaN factors,
    // NaN or huge vectors and centroids, all-ones codes, random ids.
    let f = medium(Metric::Ip);
    let fills: [(SectionKind, u8); 8] = [
        (SectionKind::Factors, 0xFF), // NaN
        (SectionKind::Factors, 0x7F), // ~3.4e38
        (SectionKind::Vectors, 0xFF),
        (SectionKind::Vectors, 0x7F),
        (SectionKind::Centroid, 0xFF),
        (SectionKind::Centroid, 0x7F),
        (SectionKind::Codes, 0xFF),
        (SectionKind::Ids, 0xA5),
    ];
    for (kind, fill) in fills {
        let mut b = f.bytes.clone();
        let e = entry_at(&b, slot_of(&b, kind));
        b[e.offset as usize..(e.offset + e.len) as usize].fill(fill);
        let p = f.write("garbage.svve", &b);
        expect_refused(&p, true);
        search_survives(&p, f.n, f.dim);
    }
}

#[test]
fn truncation_at_every_section_boundary_is_refused() {
    let f = medium(Metric::Cosine);
    let len = f.bytes.len();
    let mut cuts = vec![0, 1, 8, 32, 63, 64, 65, 127, 128];
    let end = table_end(&f.bytes);
    cuts.extend([end - 1, end, end + 1]);
    for kind in SectionKind::ALL {
        let e = entry_at(&f.bytes, slot_of(&f.bytes, kind));
        let (o, l) = (e.offset as usize, e.len as usize);
        cuts.extend([o - 1, o, o + 1, o + l / 2, o + l - 1, o + l]);
    }
    cuts.retain(|&c| c < len);
    cuts.sort_unstable();
    cuts.dedup();
    for &cut in &cuts {
        let p = f.write("cut.svve", &f.bytes[..cut]);
        expect_refused(&p, false);
        // The same cut with the header's length resealed to match: now the
        // section bounds (not the length field) must catch it.
        if cut >= HEADER_LEN {
            let mut b = f.bytes[..cut].to_vec();
            set_file_len(&mut b, cut as u64);
            let p = f.write("cut-resealed.svve", &b);
            let msg = expect_refused(&p, false);
            assert!(!msg.contains("checksum mismatch (stored"), "{cut}: {msg}");
        }
    }
    assert!(cuts.len() > 40, "{} cuts", cuts.len());
}

#[rstest]
fn extension_is_refused(#[values(1, 7, 63, 64, 65, 4096)] extra: usize) {
    let f = tiny();
    let mut b = f.bytes.clone();
    b.extend(std::iter::repeat_n(0u8, extra));
    let p = f.write("ext.svve", &b);
    assert!(expect_refused(&p, false).contains("truncated or extended"));
    // Resealing the header's length does not help: the file must end where
    // the last section ends.
    set_file_len(&mut b, (f.bytes.len() + extra) as u64);
    let p = f.write("ext-resealed.svve", &b);
    assert!(expect_refused(&p, true).contains("follow the last section"));
}

#[rstest]
fn header_version_is_a_version_mismatch(#[values(0, 5, 7, u16::MAX)] version: u16) {
    let f = tiny();
    let mut b = f.bytes.clone();
    b[8..10].copy_from_slice(&version.to_le_bytes());
    reseal(&mut b, 0);
    let p = f.write("ver.svve", &b);
    match IndexFile::open(&p, LoadOptions { verify: true }) {
        Err(Error::VersionMismatch {
            found, supported, ..
        }) => assert_eq!((found, supported), (version, FORMAT_VERSION)),
        other => panic!("version {version}: {other:?}"),
    }
    assert!(expect_refused(&p, true).contains(&format!("version {version}")));
}

#[test]
fn every_section_version_is_checked() {
    let f = tiny();
    for i in 0..SectionKind::ALL.len() {
        // An entry's version must be the file's (4); a newer one is a
        // version mismatch, an older one a damaged file.
        for version in [0u16, 1, 2, 3, 5, u16::MAX] {
            let mut b = f.bytes.clone();
            let at = HEADER_LEN * (1 + i);
            b[at + 8..at + 10].copy_from_slice(&version.to_le_bytes());
            reseal(&mut b, at);
            let p = f.write("sver.svve", &b);
            if version > FORMAT_VERSION {
                assert!(
                    matches!(
                        IndexFile::open(&p, LoadOptions { verify: false }),
                        Err(Error::VersionMismatch { found, .. }) if found == version
                    ),
                    "entry {i} version {version}"
                );
            } else {
                let msg = expect_refused(&p, false);
                assert!(
                    msg.contains(&format!("version {version} in a version 4 file")),
                    "entry {i} version {version}: {msg}"
                );
            }
        }
    }
}

#[test]
fn assemble_round_trips() {
    // The crafting helper itself: an unchanged file reassembles byte for byte.
    let f = medium(Metric::L2);
    assert_eq!(assemble(&parse(&f.bytes)), f.bytes);
}

/// Manifest texts that must be refused, each a different way to be wrong.
fn broken_manifests(good: &str) -> Vec<(&'static str, Vec<u8>)> {
    let v: serde_json::Value = serde_json::from_str(good).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut w = v.clone();
        f(&mut w);
        serde_json::to_vec(&w).unwrap()
    };
    let set = |key: &'static str, val: serde_json::Value| {
        edit(&move |w: &mut serde_json::Value| {
            w[key] = val.clone();
        })
    };
    let drop = |key: &'static str| {
        edit(&move |w: &mut serde_json::Value| {
            w.as_object_mut().unwrap().remove(key);
        })
    };
    let n = v["n"].as_u64().unwrap();
    let parts = v["partitions"].as_u64().unwrap();
    let nested = "[".repeat(100_000);
    vec![
        ("empty", b"".to_vec()),
        ("truncated json", good.as_bytes()[..good.len() / 2].to_vec()),
        ("trailing garbage", format!("{good}x").into_bytes()),
        ("two documents", format!("{good}{good}").into_bytes()),
        ("array", b"[]".to_vec()),
        ("null", b"null".to_vec()),
        ("empty object", b"{}".to_vec()),
        ("not utf-8", vec![0xFF, 0xFE, b'{', b'}']),
        (
            "utf-8 bom",
            [&[0xEF, 0xBB, 0xBF][..], good.as_bytes()].concat(),
        ),
        ("deep nesting", nested.into_bytes()),
        ("nul bytes", vec![0u8; 64]),
        ("format", set("format", "svve-other".into())),
        ("format_version 1", set("format_version", 1.into())),
        ("format_version 2", set("format_version", 2.into())),
        ("format_version 3", set("format_version", 3.into())),
        ("format_version 5", set("format_version", 5.into())),
        ("format_version 0", set("format_version", 0.into())),
        ("format_version string", set("format_version", "1".into())),
        ("n string", set("n", "300".into())),
        ("n negative", set("n", (-1).into())),
        ("n float", set("n", 2.5.into())),
        (
            "n 2^64",
            edit(&|w| w["n"] = serde_json::Value::Number(u64::MAX.into())),
        ),
        (
            "n too big for json u64",
            good.replacen(&format!("\"n\":{n}"), "\"n\":1e999", 1)
                .into_bytes(),
        ),
        ("n 0", set("n", 0.into())),
        ("n - 1", set("n", (n - 1).into())),
        ("n + 1", set("n", (n + 1).into())),
        ("n 2^60", set("n", (1u64 << 60).into())),
        ("dim 0", set("dim", 0.into())),
        ("dim 2^33", set("dim", (1u64 << 33).into())),
        (
            "dim - 1, same words",
            set("dim", (v["dim"].as_u64().unwrap() - 1).into()),
        ),
        ("metric unknown", set("metric", "dot".into())),
        ("metric case", set("metric", "L2".into())),
        ("metric number", set("metric", 1.into())),
        ("code_words", set("code_words", 9.into())),
        ("partitions 0", set("partitions", 0.into())),
        ("partitions n + 1", set("partitions", (n + 1).into())),
        ("partitions - 1", set("partitions", (parts - 1).into())),
        ("library_version number", set("library_version", 1.into())),
        ("build missing", drop("build")),
        ("metric missing", drop("metric")),
        ("n missing", drop("n")),
        ("build wrong type", set("build", "default".into())),
        (
            "build center string",
            edit(&|w| w["build"]["center"] = "yes".into()),
        ),
        (
            "build unknown field",
            edit(&|w| w["build"]["m"] = 16.into()),
        ),
        (
            "unknown field",
            set("pickle", "cos\nsystem\n(S'echo pwned'\ntR.".into()),
        ),
        (
            "duplicate key",
            good.replacen('{', &format!("{{\"n\":{n},"), 1).into_bytes(),
        ),
    ]
}

#[rstest]
fn broken_manifest_is_refused(#[values(Metric::Cosine, Metric::L2)] metric: Metric) {
    let f = medium(metric);
    let secs = parse(&f.bytes);
    let good = manifest_of(&secs);
    for (what, text) in broken_manifests(&good) {
        let p = f.write("mani.svve", &assemble(&with_manifest(&secs, &text)));
        for verify in [true, false] {
            let msg = expect_refused(&p, verify);
            assert!(!msg.contains("checksum"), "{what}: refused by a CRC: {msg}");
            assert!(msg.contains("manifest"), "{what}: {msg}");
        }
    }
    // Control: the untouched manifest, reassembled, loads.
    expect_loads(
        &f.write("ok.svve", &assemble(&with_manifest(&secs, good.as_bytes()))),
        true,
    );
}

/// One section's shape changed, payload resized to match: the table is
/// self-consistent but disagrees with the manifest.
#[rstest]
#[case::centroid_rows(SectionKind::Centroid, 1, 0)]
#[case::centroid_cols(SectionKind::Centroid, 0, 1)]
#[case::offsets_rows(SectionKind::Offsets, 1, 0)]
#[case::codes_rows(SectionKind::Codes, 1, 0)]
#[case::codes_cols(SectionKind::Codes, 0, 1)]
#[case::factors_rows(SectionKind::Factors, 1, 0)]
#[case::factors_cols(SectionKind::Factors, 0, 1)]
#[case::vectors_rows(SectionKind::Vectors, 1, 0)]
#[case::vectors_cols(SectionKind::Vectors, 0, 1)]
#[case::ids_rows(SectionKind::Ids, 1, 0)]
#[case::ids_cols(SectionKind::Ids, 0, 1)]
fn section_shape_disagreeing_with_manifest(
    #[case] kind: SectionKind,
    #[case] extra_rows: u64,
    #[case] extra_cols: u64,
) {
    let f = medium(Metric::Ip);
    for sign in [1i64, -1] {
        let mut secs = parse(&f.bytes);
        let s = secs.iter_mut().find(|s| s.kind == kind).unwrap();
        s.rows = (s.rows as i64 + sign * extra_rows as i64) as u64;
        s.cols = (s.cols as i64 + sign * extra_cols as i64) as u64;
        s.payload
            .resize((s.rows * s.cols * s.elem.size()) as usize, 0);
        let p = f.write("shape.svve", &assemble(&secs));
        let msg = expect_refused(&p, true);
        assert!(msg.contains("manifest implies"), "{kind:?} {sign}: {msg}");
    }
}

#[rstest]
#[case::not_from_zero(&[1, 100, 200, 250, 300])]
#[case::not_to_n(&[0, 100, 200, 250, 299])]
#[case::past_n(&[0, 100, 200, 250, 301])]
#[case::decreasing(&[0, 200, 100, 250, 300])]
#[case::huge(&[0, u64::MAX, u64::MAX, u64::MAX, 300])]
fn partition_offsets_are_checked(#[case] offsets: &[u64]) {
    let f = medium(Metric::L2);
    let mut secs = parse(&f.bytes);
    let s = secs
        .iter_mut()
        .find(|s| s.kind == SectionKind::Offsets)
        .unwrap();
    assert_eq!(s.rows as usize, offsets.len());
    s.payload = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
    let p = f.write("off.svve", &assemble(&secs));
    assert!(expect_refused(&p, true).contains("partition offsets"));
}

#[test]
fn partition_offsets_with_empty_partitions_are_valid() {
    // Empty partitions are legal (k-means may leave a cell empty): the
    // reader must accept them and search must still work.
    let f = medium(Metric::L2);
    let mut secs = parse(&f.bytes);
    let s = secs
        .iter_mut()
        .find(|s| s.kind == SectionKind::Offsets)
        .unwrap();
    s.payload = [0u64, 0, 300, 300, 300]
        .iter()
        .flat_map(|o| o.to_le_bytes())
        .collect();
    let p = f.write("empty-parts.svve", &assemble(&secs));
    expect_loads(&p, true);
    search_survives(&p, f.n, f.dim);
}

/// The table entries of a fresh layout, one changed, resealed.
fn with_entry(f: &Fixture, kind: SectionKind, change: impl Fn(&mut SectionEntry)) -> Vec<u8> {
    let secs = parse(&f.bytes);
    let mut entries = layout(&secs);
    let e = entries.iter_mut().find(|e| e.kind == kind).unwrap();
    change(e);
    assemble_with(&secs, &entries)
}

#[rstest]
#[case::misaligned(|e: &mut SectionEntry| e.offset += 8, "aligned")]
#[case::inside_the_table(|e: &mut SectionEntry| e.offset = 64, "outside")]
#[case::at_zero(|e: &mut SectionEntry| e.offset = 0, "outside")]
#[case::past_the_end(|e: &mut SectionEntry| e.offset += 1 << 20, "outside")]
#[case::offset_wraps(|e: &mut SectionEntry| e.offset = u64::MAX - 63, "outside")]
#[case::len_mismatch(|e: &mut SectionEntry| e.len += 4, "does not match")]
#[case::rows_overflow(|e: &mut SectionEntry| { e.rows = 1 << 62; e.len = e.rows.wrapping_mul(e.cols * 4); }, "does not match")]
#[case::claims_2_pow_60_rows(|e: &mut SectionEntry| { e.rows = 1 << 60; e.cols = 1; e.len = 1 << 62; }, "outside")]
#[case::zero_rows(|e: &mut SectionEntry| { e.rows = 0; e.len = 0; }, "manifest implies")]
fn vector_entry_fields_are_checked(#[case] change: fn(&mut SectionEntry), #[case] needle: &str) {
    let f = medium(Metric::Cosine);
    let p = f.write("entry.svve", &with_entry(&f, SectionKind::Vectors, change));
    let msg = expect_refused(&p, false);
    assert!(msg.contains(needle), "{msg}");
}

#[test]
fn overlapping_sections_are_refused() {
    let f = medium(Metric::Cosine);
    let codes = entry_at(&f.bytes, slot_of(&f.bytes, SectionKind::Codes));
    // The ids section moved onto the codes (aligned, inside the file, with
    // the checksum of the bytes found there): only the overlap is wrong.
    let b = with_entry(&f, SectionKind::Ids, |e| {
        e.offset = codes.offset;
        e.crc = crc32fast::hash(&f.bytes[codes.offset as usize..(codes.offset + e.len) as usize]);
    });
    let p = f.write("overlap.svve", &b);
    for verify in [false, true] {
        assert!(expect_refused(&p, verify).contains("overlap"));
    }
}

#[test]
fn table_level_damage_is_refused() {
    let f = medium(Metric::Ip);
    let secs = parse(&f.bytes);
    let entries = layout(&secs);
    let kinds = |b: &[u8], needle: &str| {
        let p = f.write("table.svve", b);
        let msg = expect_refused(&p, false);
        assert!(msg.contains(needle), "{needle}: {msg}");
    };
    // a section listed twice (the ids entry replaced by a second vectors entry)
    let mut dup = entries.clone();
    dup[6] = dup[5].clone();
    kinds(&assemble_with(&secs, &dup), "appears twice");
    // each section missing in turn
    for drop in 0..entries.len() {
        let mut fewer = entries.clone();
        fewer.remove(drop);
        let b = assemble_with(&secs, &fewer);
        let p = f.write("missing.svve", &b);
        expect_refused(&p, false);
    }
    // an unknown kind, a wrong element type, a bad entry magic (resealed)
    let mut b = assemble(&secs);
    b[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(b"EVIL");
    reseal(&mut b, HEADER_LEN);
    kinds(&b, "unknown section kind");
    let mut b = assemble(&secs);
    b[HEADER_LEN * 2 + 10..HEADER_LEN * 2 + 12]
        .copy_from_slice(&(ElemType::U64 as u16).to_le_bytes());
    reseal(&mut b, HEADER_LEN * 2);
    kinds(&b, "wrong element type");
    let mut b = assemble(&secs);
    b[HEADER_LEN * 3..HEADER_LEN * 3 + 4].copy_from_slice(b"XXXX");
    reseal(&mut b, HEADER_LEN * 3);
    kinds(&b, "wrong magic");
}

#[rstest]
#[case::no_sections(0, "missing")]
#[case::seven(7, "missing")]
#[case::eight(8, "follow")]
#[case::ten(10, "")]
#[case::max(MAX_SECTIONS, "")]
#[case::over_max(MAX_SECTIONS + 1, "max")]
#[case::u32_max(u32::MAX, "max")]
fn header_section_count_is_checked(#[case] count: u32, #[case] needle: &str) {
    let f = tiny();
    let mut b = f.bytes.clone();
    b[16..20].copy_from_slice(&count.to_le_bytes());
    reseal(&mut b, 0);
    let p = f.write("count.svve", &b);
    let msg = expect_refused(&p, false);
    assert!(msg.contains(needle), "{msg}");
}

#[rstest]
#[case::header_len(12, 128)]
#[case::header_len_zero(12, 0)]
#[case::table_offset(32, 128)]
#[case::file_len_huge(24, 1 << 60)]
#[case::file_len_zero(24, 0)]
fn header_fields_are_checked(#[case] at: usize, #[case] value: u64) {
    let f = tiny();
    let mut b = f.bytes.clone();
    if at == 12 {
        b[at..at + 4].copy_from_slice(&(value as u32).to_le_bytes());
    } else {
        b[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    reseal(&mut b, 0);
    expect_refused(&f.write("hdr.svve", &b), false);
}

#[test]
fn reserved_header_bytes_are_covered_by_the_checksum() {
    let f = tiny();
    for at in [10usize, 11, 20, 23, 40, 59] {
        let mut b = f.bytes.clone();
        b[at] = 0xAA;
        assert!(expect_refused(&f.write("rsv.svve", &b), false).contains("checksum"));
    }
}

#[test]
fn not_an_index_at_all() {
    let f = tiny();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("zeros", vec![0u8; 4096]),
        ("magic only", b"SVVEIDX\0".to_vec()),
        ("header only", f.bytes[..HEADER_LEN].to_vec()),
        ("text", b"#!/bin/sh\nrm -rf /\n".repeat(20)),
        ("npy", [&b"\x93NUMPY\x01\x00"[..], &[0u8; 120][..]].concat()),
        (
            "pickle",
            b"\x80\x04\x95cos\nsystem\n(S'touch /tmp/pwned'\ntR.".to_vec(),
        ),
    ];
    let mut twice = f.bytes.clone();
    twice.extend_from_slice(&f.bytes);
    cases.push(("two indexes back to back", twice));
    for (what, bytes) in cases {
        let p = f.write("junk.svve", &bytes);
        let msg = expect_refused(&p, true);
        assert!(!msg.is_empty(), "{what}");
    }
}

#[cfg(unix)]
#[test]
fn fifos_and_devices_are_refused_without_blocking() {
    use std::sync::mpsc;
    let f = tiny();
    let fifo = f.dir.file("pipe.svve");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let link = f.dir.file("link-to-pipe.svve");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let good_link = f.dir.file("link-to-index.svve");
    std::os::unix::fs::symlink(&f.path, &good_link).unwrap();
    let paths = [fifo, link, "/dev/null".into(), "/dev/zero".into()];
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for p in paths {
            let r = IndexFile::open(&p, LoadOptions::default()).map(|_| ());
            tx.send((p, r)).unwrap();
        }
    });
    for _ in 0..4 {
        let (p, r) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("opening a FIFO or device blocked");
        match r {
            Err(Error::CorruptIndex { reason, .. }) => {
                assert!(reason.contains("not a regular file"), "{p:?}: {reason}")
            }
            other => panic!("{p:?}: {other:?}"),
        }
    }
    expect_loads(&good_link, true);
}

#[test]
fn resealed_sections_inside_assembled_file_round_trip() {
    // Guard for the helpers: a section swapped for an identical copy with a
    // recomputed CRC loads; the same bytes with a stale CRC do not.
    let f = tiny();
    let secs: Vec<Sec> = parse(&f.bytes);
    let b = assemble(&secs);
    expect_loads(&f.write("same.svve", &b), true);
    let mut stale = layout(&secs);
    stale[3].crc ^= 1;
    let p = f.write("stale.svve", &assemble_with(&secs, &stale));
    assert!(expect_refused(&p, true).contains("tier1 codes section checksum"));
    expect_loads(&p, false);
}
