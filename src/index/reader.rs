//! Opening an index file: one read-only mmap, every header field checked
//! against the real file length before any slice is taken.
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::attributes::Attributes;
use super::calibration::{Calibration, SLOT_BYTES};
use super::format::{
    FileHeader, SectionEntry, SectionKind, FILE_MAGIC, FORMAT_VERSION, HEADER_LEN, OLDEST_READABLE,
    PENDING_MAGIC,
};
use super::locate::{Guide, Locate};
use super::manifest::{Manifest, Metric};
use crate::error::{Error, Result};

/// How much to check when opening.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Recompute every section's CRC32 (reads the whole file once).
    pub verify: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { verify: true }
    }
}

/// A validated, memory-mapped index file. Cheap to share through `Arc`.
#[derive(Debug)]
pub struct IndexFile {
    path: PathBuf,
    map: Mmap,
    sections: [SectionEntry; SectionKind::ALL.len()],
    manifest: Manifest,
    manifest_json: String,
    /// Format version of the file.
    version: u16,
    /// The recall calibration (`None`: a version 1 file or an
    /// uncalibrated build).
    calibration: Option<Calibration>,
    /// The attribute columns' header (empty without an `ATTR` section).
    attributes: Attributes,
    /// Stored rows sorted by id, built on first use (id filters).
    id_order: std::sync::OnceLock<Vec<u32>>,
    /// Lookup guides of the row and spill offsets, built at open.
    row_guide: Guide,
    spill_guide: Guide,
}

fn slot(kind: SectionKind) -> usize {
    SectionKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(0)
}

impl IndexFile {
    /// Opens and validates `path`. Errors name the file and the problem.
    pub fn open(path: &Path, opts: LoadOptions) -> Result<Arc<Self>> {
        Self::open_with(path, opts, FILE_MAGIC)
    }

    /// Opens the complete but unfinished file of a build in progress
    /// (`writer::Pending`), for its builder only.
    pub fn open_pending(path: &Path, opts: LoadOptions) -> Result<Arc<Self>> {
        Self::open_with(path, opts, PENDING_MAGIC)
    }

    fn open_with(path: &Path, opts: LoadOptions, magic: [u8; 8]) -> Result<Arc<Self>> {
        let not_found = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => Error::IndexNotFound {
                path: path.to_path_buf(),
            },
            _ => Error::io(path, e),
        };
        // Look before opening: `open` on a FIFO blocks until a writer
        // appears, and a device may stream forever. Only regular files
        // (or links to them) can be indexes.
        check_regular(path, &std::fs::metadata(path).map_err(not_found)?)?;
        let file = File::open(path).map_err(not_found)?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        check_regular(path, &meta)?;
        let len = meta.len();
        if len < HEADER_LEN as u64 {
            return Err(Error::corrupt(
                path,
                format!("file is {len} bytes, shorter than the {HEADER_LEN}-byte header"),
            ));
        }
        // SAFETY: index files are write-once: the writer renames a complete
        // file into place and never modifies it afterwards (see writer.rs), so
        // the mapped bytes cannot change under us. Truncation by a third party
        // would be a contract violation, as for every mmap-based reader.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        if opts.verify {
            // Verification reads every page now anyway; without it, rows
            // read at random from a file larger than memory would each
            // fault in 2 MiB instead of 4 KiB.
            advise_huge(&map);
        }
        let header_bytes: &[u8; HEADER_LEN] = map[..HEADER_LEN]
            .try_into()
            .map_err(|_| Error::corrupt(path, "short header"))?;
        let header =
            FileHeader::decode_with(header_bytes, magic).map_err(|r| Error::corrupt(path, r))?;
        if !(OLDEST_READABLE..=FORMAT_VERSION).contains(&header.version) {
            return Err(Error::VersionMismatch {
                path: path.to_path_buf(),
                found: header.version,
                supported: FORMAT_VERSION,
            });
        }
        if header.file_len != len {
            return Err(Error::corrupt(
                path,
                format!(
                    "file is {len} bytes but its header says {} (truncated or extended)",
                    header.file_len
                ),
            ));
        }
        let sections = read_table(
            path,
            &map,
            header.section_count as usize,
            len,
            header.version,
        )?;
        if opts.verify {
            for e in &sections {
                e.verify(&map[e.offset as usize..(e.offset + e.len) as usize])
                    .map_err(|r| Error::corrupt(path, r))?;
            }
        }
        let mani = &sections[slot(SectionKind::Manifest)];
        let bytes = &map[mani.offset as usize..(mani.offset + mani.len) as usize];
        let manifest_json = std::str::from_utf8(bytes)
            .map_err(|_| Error::corrupt(path, "manifest is not UTF-8"))?
            .to_owned();
        let manifest: Manifest = serde_json::from_str(&manifest_json)
            .map_err(|e| Error::corrupt(path, format!("manifest is not valid: {e}")))?;
        manifest
            .check(header.version)
            .map_err(|r| Error::corrupt(path, r))?;
        check_shapes(path, &manifest, &sections)?;
        check_contiguous(path, &sections, header.section_count as usize)?;
        let cal = &sections[slot(SectionKind::Calibration)];
        let calibration = if header.version < SectionKind::Calibration.since() {
            None
        } else {
            let bytes = &map[cal.offset as usize..(cal.offset + cal.len) as usize];
            let c = Calibration::decode_slot(bytes).map_err(|r| Error::corrupt(path, r))?;
            if let Some(c) = &c {
                c.check(manifest.partitions as usize)
                    .map_err(|r| Error::corrupt(path, r))?;
            }
            c
        };
        let attr = &sections[slot(SectionKind::Attributes)];
        let attributes = if attr.len == 0 {
            Attributes::default()
        } else {
            let bytes = &map[attr.offset as usize..(attr.offset + attr.len) as usize];
            Attributes::decode(bytes, manifest.n).map_err(|r| Error::corrupt(path, r))?
        };
        let mut index = IndexFile {
            path: path.to_path_buf(),
            map,
            sections,
            manifest,
            manifest_json,
            version: header.version,
            calibration,
            attributes,
            id_order: std::sync::OnceLock::new(),
            row_guide: Guide::default(),
            spill_guide: Guide::default(),
        };
        index.check_alignment()?;
        index.check_offsets()?;
        index.check_spill()?;
        index.row_guide = Guide::new(index.offsets());
        index.spill_guide = Guide::new(index.section(SectionKind::SpillOffsets));
        // Tier2 rows are gathered at random; read-ahead would only waste cache.
        let v = index.entry(SectionKind::Vectors);
        advise_random(&index.map, v.offset as usize, v.len as usize);
        Ok(Arc::new(index))
    }

    /// The file this index was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The validated manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest exactly as stored, for validation on the Python side.
    pub fn manifest_json(&self) -> &str {
        &self.manifest_json
    }

    /// The file's format version.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The recall calibration, if the file has one.
    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    /// The attribute columns (empty when the file has none).
    pub fn attributes(&self) -> &Attributes {
        &self.attributes
    }

    /// The attribute section's bytes, which [`IndexFile::attributes`] reads.
    pub fn attribute_bytes(&self) -> &[u8] {
        self.section(SectionKind::Attributes)
    }

    /// Where the stored rows in ascending id order are kept once a filter
    /// on ids first needs them ([`rows_by_id`]): a filter on attributes
    /// alone never sorts the ids.
    pub fn id_order(&self) -> &std::sync::OnceLock<Vec<u32>> {
        &self.id_order
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.manifest.n as usize
    }

    /// True when the index holds no vectors (never, for files we write).
    pub fn is_empty(&self) -> bool {
        self.manifest.n == 0
    }

    /// Dimensions per vector.
    pub fn dim(&self) -> usize {
        self.manifest.dim as usize
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.manifest.metric
    }

    /// `u64` words per code.
    pub fn words(&self) -> usize {
        self.manifest.code_words as usize
    }

    /// Pins every page of the mapping in RAM (`mlock`), faulting them in
    /// now, so the kernel cannot evict index pages under memory pressure or
    /// proactive reclaim (DAMON): an evicted page costs a disk read on the
    /// query that touches it. Pages stay shared with other processes that
    /// map the file. Undone when the mapping is dropped. Needs
    /// `RLIMIT_MEMLOCK` of at least the file size (or `CAP_IPC_LOCK`).
    pub fn lock_in_memory(&self) -> Result<()> {
        lock_map(&self.map).map_err(|e| {
            let hint = format!(
                "cannot lock {} bytes in memory ({e}); raise RLIMIT_MEMLOCK \
                 (ulimit -l) or open without lock_pages",
                self.map.len()
            );
            Error::io(&self.path, std::io::Error::new(e.kind(), hint))
        })
    }

    /// Total file size in bytes.
    pub fn file_len(&self) -> usize {
        self.map.len()
    }

    /// The table entry of a section (an empty one for a section the
    /// file's version does not have).
    pub fn entry(&self, kind: SectionKind) -> &SectionEntry {
        &self.sections[slot(kind)]
    }

    /// A section's payload as typed elements. Alignment and length were
    /// checked at open, so the cast cannot fail; an empty slice is returned
    /// rather than a panic if that invariant were ever broken.
    pub fn section<T: bytemuck::Pod>(&self, kind: SectionKind) -> &[T] {
        let e = self.entry(kind);
        let bytes = &self.map[e.offset as usize..(e.offset + e.len) as usize];
        bytemuck::try_cast_slice(bytes).unwrap_or(&[])
    }

    /// Partition offsets must run from 0 to n without going backwards, so
    /// every partition's row range is inside the file's sections.
    fn check_offsets(&self) -> Result<()> {
        let off: &[u64] = self.section(SectionKind::Offsets);
        let n = self.manifest.n;
        let ok = off.first() == Some(&0)
            && off.last() == Some(&n)
            && off.windows(2).all(|w| w[0] <= w[1]);
        if ok {
            Ok(())
        } else {
            Err(Error::corrupt(
                &self.path,
                "partition offsets are not a non-decreasing sequence from 0 to n",
            ))
        }
    }

    /// Spilled entries (blueprint 3.4) must each copy a different row of
    /// the file, and their offsets run from 0 to their count like the
    /// rows'.
    fn check_spill(&self) -> Result<()> {
        let rows: &[u32] = self.section(SectionKind::SpillRows);
        let off: &[u64] = self.section(SectionKind::SpillOffsets);
        if off.is_empty() {
            return Ok(());
        }
        let ok = off.first() == Some(&0)
            && off.last() == Some(&(rows.len() as u64))
            && off.windows(2).all(|w| w[0] <= w[1]);
        if !ok {
            return Err(Error::corrupt(
                &self.path,
                "spill offsets are not a non-decreasing sequence from 0 to the spilled entries",
            ));
        }
        let n = self.manifest.n;
        // Tier1 numbers a spilled survivor `n + entry` in a u32.
        if n + rows.len() as u64 > u64::from(u32::MAX) {
            return Err(Error::corrupt(
                &self.path,
                format!(
                    "{} spilled entries on {n} rows exceed the 2^32-1 numbering",
                    rows.len()
                ),
            ));
        }
        let mut seen = vec![0u64; (n as usize).div_ceil(64)];
        for &r in rows {
            if u64::from(r) >= n {
                return Err(Error::corrupt(
                    &self.path,
                    format!("a spilled entry copies row {r} of a {n}-row file"),
                ));
            }
            let (w, b) = (r as usize / 64, r % 64);
            if seen[w] >> b & 1 == 1 {
                // Two copies of one row could both survive Tier1 and be
                // answered twice.
                return Err(Error::corrupt(
                    &self.path,
                    format!("row {r} has more than one spilled entry"),
                ));
            }
            seen[w] |= 1 << b;
        }
        Ok(())
    }

    /// Row range `[start, end)` of each partition.
    pub fn offsets(&self) -> &[u64] {
        self.section(SectionKind::Offsets)
    }

    /// The partition of a stored row, looked up through the file's guide.
    pub fn rows_locate(&self) -> Locate<'_> {
        Locate::new(self.offsets(), &self.row_guide)
    }

    /// The partition of a spilled entry (blueprint 3.4), the same way.
    pub fn spill_locate(&self) -> Locate<'_> {
        Locate::new(self.section(SectionKind::SpillOffsets), &self.spill_guide)
    }

    fn check_alignment(&self) -> Result<()> {
        for kind in SectionKind::ALL {
            let e = self.entry(kind);
            let bytes = &self.map[e.offset as usize..(e.offset + e.len) as usize];
            let ok = match kind.elem().size() {
                1 => true,
                4 => bytemuck::try_cast_slice::<u8, f32>(bytes).is_ok(),
                _ => bytemuck::try_cast_slice::<u8, u64>(bytes).is_ok(),
            };
            if !ok {
                return Err(Error::corrupt(
                    &self.path,
                    format!("{} section is misaligned", kind.name()),
                ));
            }
        }
        Ok(())
    }
}

/// Rows `0..ids.len()` in ascending id order (ties by row).
pub fn rows_by_id(ids: &[i64]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..ids.len() as u32).collect();
    order.sort_by_key(|&r| (ids[r as usize], r));
    order
}

/// Refuses directories, FIFOs, sockets and devices.
fn check_regular(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    if meta.is_dir() {
        Err(Error::corrupt(path, "is a directory, not an index file"))
    } else if !meta.is_file() {
        Err(Error::corrupt(
            path,
            "is not a regular file (a FIFO, socket or device cannot be an index)",
        ))
    } else {
        Ok(())
    }
}

/// Decodes the section table and checks each payload lies inside the file.
fn read_table(
    path: &Path,
    map: &[u8],
    count: usize,
    len: u64,
    version: u16,
) -> Result<[SectionEntry; SectionKind::ALL.len()]> {
    let table_end = HEADER_LEN * (1 + count);
    if table_end as u64 > len {
        return Err(Error::corrupt(
            path,
            "section table runs past the end of the file",
        ));
    }
    let mut found: [Option<SectionEntry>; SectionKind::ALL.len()] = Default::default();
    for i in 0..count {
        let raw: &[u8; HEADER_LEN] = map[HEADER_LEN * (1 + i)..HEADER_LEN * (2 + i)]
            .try_into()
            .map_err(|_| Error::corrupt(path, "short section entry"))?;
        let e = SectionEntry::decode(raw, i).map_err(|r| Error::corrupt(path, r))?;
        if e.version > FORMAT_VERSION {
            return Err(Error::VersionMismatch {
                path: path.to_path_buf(),
                found: e.version,
                supported: FORMAT_VERSION,
            });
        }
        if e.version != version || e.kind.since() > version {
            return Err(Error::corrupt(
                path,
                format!(
                    "{} section has version {} in a version {version} file",
                    e.kind.name(),
                    e.version
                ),
            ));
        }
        let end = e.offset.checked_add(e.len);
        if e.offset < table_end as u64 || end.is_none_or(|end| end > len) {
            return Err(Error::corrupt(
                path,
                format!(
                    "{} section (offset {}, {} bytes) lies outside the {len}-byte file",
                    e.kind.name(),
                    e.offset,
                    e.len
                ),
            ));
        }
        let s = &mut found[slot(e.kind)];
        if s.is_some() {
            return Err(Error::corrupt(
                path,
                format!("{} section appears twice", e.kind.name()),
            ));
        }
        *s = Some(e);
    }
    let mut out = Vec::with_capacity(found.len());
    for (&kind, e) in SectionKind::ALL.iter().zip(found) {
        out.push(match e {
            Some(e) => e,
            // A section newer than the file, or an optional one left
            // out: empty, never read.
            None if kind.since() > version || kind.optional() => SectionEntry {
                kind,
                version,
                elem: kind.elem(),
                rows: 0,
                cols: 1,
                offset: 0,
                len: 0,
                crc: 0,
            },
            None => {
                return Err(Error::corrupt(
                    path,
                    format!("{} section is missing", kind.name()),
                ))
            }
        });
    }
    // The writer lays sections out one after another; payloads that share
    // bytes can only come from a damaged or crafted table.
    let mut spans: Vec<&SectionEntry> = out.iter().filter(|e| e.len > 0).collect();
    spans.sort_by_key(|e| e.offset);
    if let Some(w) = spans
        .windows(2)
        .find(|w| w[0].offset + w[0].len > w[1].offset)
    {
        return Err(Error::corrupt(
            path,
            format!(
                "{} and {} sections overlap",
                w[0].kind.name(),
                w[1].kind.name()
            ),
        ));
    }
    // ... and the file ends where the last section ends: bytes beyond it are
    // an extension that the header length was resealed to hide.
    let end = out
        .iter()
        .map(|e| e.offset + e.len)
        .max()
        .unwrap_or(table_end as u64);
    if end != len {
        return Err(Error::corrupt(
            path,
            format!(
                "{} bytes follow the last section (truncated or extended)",
                len - end
            ),
        ));
    }
    out.try_into()
        .map_err(|_| Error::corrupt(path, "section table is incomplete"))
}

/// The writer starts each payload at the first aligned offset after the
/// previous one, so a gap between payloads is a section dropped from a
/// resealed table (an optional one, say, which the file would otherwise
/// load without). Checked after the shapes, whose messages say more.
fn check_contiguous(path: &Path, sections: &[SectionEntry], count: usize) -> Result<()> {
    let mut spans: Vec<&SectionEntry> = sections.iter().filter(|e| e.len > 0).collect();
    spans.sort_by_key(|e| e.offset);
    let mut at = super::format::align_up((HEADER_LEN * (1 + count)) as u64);
    for e in spans {
        if e.offset != at {
            return Err(Error::corrupt(
                path,
                format!(
                    "{} section starts at {}, not at {at} where the previous one ends",
                    e.kind.name(),
                    e.offset
                ),
            ));
        }
        at = super::format::align_up(e.offset + e.len);
    }
    Ok(())
}

/// Every section's shape must agree with the manifest.
fn check_shapes(path: &Path, m: &Manifest, s: &[SectionEntry]) -> Result<()> {
    let expect = |kind: SectionKind, rows: u64, cols: u64| -> Result<()> {
        let e = &s[slot(kind)];
        if (e.rows, e.cols) == (rows, cols) {
            Ok(())
        } else {
            Err(Error::corrupt(
                path,
                format!(
                    "{} section is {} x {}, but the manifest implies {rows} x {cols}",
                    kind.name(),
                    e.rows,
                    e.cols
                ),
            ))
        }
    };
    if m.n == 0 || m.n > u64::from(u32::MAX) {
        return Err(Error::corrupt(
            path,
            format!("manifest n {} is out of range", m.n),
        ));
    }
    expect(SectionKind::Centroid, m.partitions, m.dim)?;
    expect(SectionKind::Offsets, m.partitions + 1, 1)?;
    // Codes are stored in blocks of 8 rows (math::bits), the last one padded.
    expect(SectionKind::Codes, m.n.div_ceil(8), 8 * m.code_words)?;
    expect(SectionKind::Factors, 3, m.n)?;
    expect(SectionKind::Vectors, m.n, m.dim)?;
    expect(SectionKind::Ids, m.n, 1)?;
    if m.format_version >= SectionKind::Calibration.since() {
        expect(SectionKind::Calibration, SLOT_BYTES as u64, 1)?;
    }
    let present = SectionKind::SPILL.map(|k| s[slot(k)].len > 0);
    if present.contains(&true) {
        if present.contains(&false) {
            return Err(Error::corrupt(
                path,
                "spill sections are incomplete (all four or none)",
            ));
        }
        let entries = s[slot(SectionKind::SpillRows)].rows;
        expect(SectionKind::SpillRows, entries, 1)?;
        expect(SectionKind::SpillOffsets, m.partitions + 1, 1)?;
        expect(
            SectionKind::SpillCodes,
            entries.div_ceil(8),
            8 * m.code_words,
        )?;
        expect(SectionKind::SpillFactors, 3, entries)?;
    }
    Ok(())
}

/// A hint that a range is read at random (`madvise(MADV_RANDOM)`); where
/// the platform has no such hint the default read-ahead stays, which only
/// costs page-cache space, never correctness.
#[cfg(unix)]
fn advise_random(map: &Mmap, offset: usize, len: usize) {
    let _ = map.advise_range(memmap2::Advice::Random, offset, len);
}

#[cfg(not(unix))]
fn advise_random(_map: &Mmap, _offset: usize, _len: usize) {}

/// A hint to back the mapping with huge pages where the kernel can
/// (`madvise(MADV_HUGEPAGE)`): pages faulted in from disk are then read in
/// 2 MiB folios and mapped whole, so Tier2's rows, gathered at random, cost
/// fewer TLB misses. Pages already cached (a file just written) keep their
/// folios. Only for a mapping read whole at open (verified), where it adds
/// no reading. debian-minilm-384, files evicted first, one thread: p50 48 -> 43
/// us (static 60k rows), 75 -> 70 us (a collection of 5 segments). Elsewhere,
/// or where the kernel declines, nothing changes.
#[cfg(target_os = "linux")]
fn advise_huge(map: &Mmap) {
    let _ = map.advise(memmap2::Advice::HugePage);
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_map: &Mmap) {}

/// `mlock` of the whole mapping. memmap2 offers it on Unix only; elsewhere
/// pinning fails with `Unsupported`, which `lock_in_memory` turns into a
/// typed error naming the file (an engine opened without `lock_pages`
/// works everywhere).
#[cfg(unix)]
fn lock_map(map: &Mmap) -> std::io::Result<()> {
    map.lock()
}

#[cfg(not(unix))]
fn lock_map(_map: &Mmap) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "pinning pages needs mlock, which this platform does not offer",
    ))
}
