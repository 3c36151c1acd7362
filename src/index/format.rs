//! The byte layout of an index file (format versions 1 to 3). All integers are
//! little-endian; every section starts on a 64-byte boundary.
//!
//! ```text
//! [file header: 64 B][section table: count x 64 B][pad][section payloads, 64-aligned]...
//! ```
//! `docs/arch/blueprint.md` documents every field.

/// First 8 bytes of every index file.
pub const FILE_MAGIC: [u8; 8] = *b"SVVEIDX\0";
/// First 8 bytes of a complete file that its builder has not finished (it
/// is still calibrating it): only the builder opens it; everyone else
/// refuses it, so a temporary file left by a killed build never loads.
pub const PENDING_MAGIC: [u8; 8] = *b"SVVEPND\0";
/// First 4 bytes of every section table entry.
pub const SECTION_MAGIC: [u8; 4] = *b"SVSC";
/// The format version this build writes. Version 2 added the calibration
/// section, version 3 the optional attribute section, version 4 the
/// optional spill sections; files of every earlier version are still read.
pub const FORMAT_VERSION: u16 = 4;
/// The oldest format version this build reads.
pub const OLDEST_READABLE: u16 = 1;
/// Size of the file header and of each section table entry.
pub const HEADER_LEN: usize = 64;
/// Alignment of every section payload.
pub const ALIGN: usize = 64;
/// Upper bound on sections, so a corrupt count cannot make us read far.
pub const MAX_SECTIONS: u32 = 64;

/// The format version of a file holding sections `kinds`: the newest
/// any of them needs, so a file without attributes stays a version 2 file
/// that older builds read.
pub fn version_for(kinds: impl IntoIterator<Item = SectionKind>) -> u16 {
    kinds.into_iter().map(SectionKind::since).max().unwrap_or(1)
}

/// What a section holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// UTF-8 JSON manifest (rows = bytes, cols = 1).
    Manifest,
    /// Partition centroids (rows = partitions, cols = dim, f32).
    Centroid,
    /// Partition boundaries: row offsets (rows = partitions + 1, cols = 1, u64).
    Offsets,
    /// Tier1 sign codes in blocks of 8 rows, word-major (rows = ceil(n / 8),
    /// cols = 8 * words, u64; see `math::bits`).
    Codes,
    /// Tier1 per-row factors (rows = 3, cols = n, f32): scale, bias, error.
    Factors,
    /// Tier2 float32 vectors (rows = n, cols = dim, f32).
    Vectors,
    /// Document ids (rows = n, cols = 1, i64).
    Ids,
    /// UTF-8 JSON recall calibration, padded with spaces to a fixed size
    /// (rows = bytes, cols = 1; format version 2 on; `null` when the build
    /// did not calibrate). See `index::calibration`.
    Calibration,
    /// Row attributes for filters (rows = bytes, cols = 1; format version
    /// 3 on, and optional: absent when the build had none). See
    /// `index::attributes`.
    Attributes,
    /// Spilled copies (format version 4 on, optional; blueprint 3.4): entry
    /// boundaries per partition (rows = partitions + 1, cols = 1, u64), as
    /// `Offsets` for the stored rows.
    SpillOffsets,
    /// Tier1 codes of the spilled entries, blocked like `Codes` (rows =
    /// ceil(entries / 8), cols = 8 * words, u64).
    SpillCodes,
    /// Tier1 factors of the spilled entries (rows = 3, cols = entries,
    /// f32), residuals from the partition they are spilled into.
    SpillFactors,
    /// The stored row each spilled entry copies (rows = entries, cols = 1,
    /// u32).
    SpillRows,
}

impl SectionKind {
    /// All kinds, in the order the writer lays them out.
    pub const ALL: [SectionKind; 13] = [
        SectionKind::Manifest,
        SectionKind::Centroid,
        SectionKind::Offsets,
        SectionKind::Codes,
        SectionKind::Factors,
        SectionKind::Vectors,
        SectionKind::Ids,
        SectionKind::Calibration,
        SectionKind::Attributes,
        SectionKind::SpillOffsets,
        SectionKind::SpillCodes,
        SectionKind::SpillFactors,
        SectionKind::SpillRows,
    ];

    /// The spill sections, all present or all absent.
    pub const SPILL: [SectionKind; 4] = [
        SectionKind::SpillOffsets,
        SectionKind::SpillCodes,
        SectionKind::SpillFactors,
        SectionKind::SpillRows,
    ];

    /// The first format version in which this section is allowed (and,
    /// unless [`SectionKind::optional`], required).
    pub fn since(self) -> u16 {
        match self {
            SectionKind::Calibration => 2,
            SectionKind::Attributes => 3,
            SectionKind::SpillOffsets
            | SectionKind::SpillCodes
            | SectionKind::SpillFactors
            | SectionKind::SpillRows => 4,
            _ => 1,
        }
    }

    /// Whether a file may leave this section out.
    pub fn optional(self) -> bool {
        self == SectionKind::Attributes || Self::SPILL.contains(&self)
    }

    /// The 4-byte tag stored in the section entry.
    pub fn tag(self) -> [u8; 4] {
        match self {
            SectionKind::Manifest => *b"MANI",
            SectionKind::Centroid => *b"CENT",
            SectionKind::Offsets => *b"POFF",
            SectionKind::Codes => *b"CODE",
            SectionKind::Factors => *b"FACT",
            SectionKind::Vectors => *b"VECS",
            SectionKind::Ids => *b"IDS\0",
            SectionKind::Calibration => *b"CALI",
            SectionKind::Attributes => *b"ATTR",
            SectionKind::SpillOffsets => *b"SOFF",
            SectionKind::SpillCodes => *b"SCOD",
            SectionKind::SpillFactors => *b"SFAC",
            SectionKind::SpillRows => *b"SROW",
        }
    }

    /// Inverse of [`SectionKind::tag`].
    pub fn from_tag(tag: [u8; 4]) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.tag() == tag)
    }

    /// The element type this kind must be stored with.
    pub fn elem(self) -> ElemType {
        match self {
            SectionKind::Manifest | SectionKind::Calibration | SectionKind::Attributes => {
                ElemType::U8
            }
            SectionKind::Codes
            | SectionKind::Offsets
            | SectionKind::SpillOffsets
            | SectionKind::SpillCodes => ElemType::U64,
            SectionKind::Ids => ElemType::I64,
            SectionKind::Centroid
            | SectionKind::Factors
            | SectionKind::Vectors
            | SectionKind::SpillFactors => ElemType::F32,
            SectionKind::SpillRows => ElemType::U32,
        }
    }

    /// Human name for error messages.
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Manifest => "manifest",
            SectionKind::Centroid => "partition centroids",
            SectionKind::Offsets => "partition offsets",
            SectionKind::Codes => "tier1 codes",
            SectionKind::Factors => "tier1 factors",
            SectionKind::Vectors => "tier2 vectors",
            SectionKind::Ids => "ids",
            SectionKind::Calibration => "calibration",
            SectionKind::Attributes => "attribute",
            SectionKind::SpillOffsets => "spill offsets",
            SectionKind::SpillCodes => "spill codes",
            SectionKind::SpillFactors => "spill factors",
            SectionKind::SpillRows => "spill rows",
        }
    }
}

/// Element type of a section payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ElemType {
    /// Bytes.
    U8 = 1,
    /// 64-bit code words.
    U64 = 2,
    /// float32.
    F32 = 3,
    /// 64-bit signed ids.
    I64 = 4,
    /// 32-bit row numbers.
    U32 = 5,
}

impl ElemType {
    /// Size of one element in bytes.
    pub fn size(self) -> u64 {
        match self {
            ElemType::U8 => 1,
            ElemType::F32 | ElemType::U32 => 4,
            ElemType::U64 | ElemType::I64 => 8,
        }
    }

    fn from_u16(v: u16) -> Option<Self> {
        [
            ElemType::U8,
            ElemType::U64,
            ElemType::F32,
            ElemType::I64,
            ElemType::U32,
        ]
        .into_iter()
        .find(|e| *e as u16 == v)
    }
}

/// The 64-byte file header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    /// Format version (offset 8).
    pub version: u16,
    /// Number of section table entries (offset 16).
    pub section_count: u32,
    /// Total file length in bytes (offset 24); catches truncation.
    pub file_len: u64,
}

/// One 64-byte section table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionEntry {
    /// What the payload holds.
    pub kind: SectionKind,
    /// Section format version.
    pub version: u16,
    /// Element type of the payload.
    pub elem: ElemType,
    /// Logical rows.
    pub rows: u64,
    /// Logical columns.
    pub cols: u64,
    /// Payload offset from the start of the file (64-aligned).
    pub offset: u64,
    /// Payload length in bytes (= rows * cols * elem size).
    pub len: u64,
    /// CRC32 of the payload.
    pub crc: u32,
}

/// Why a header or entry could not be decoded.
pub type DecodeError = String;

fn crc_of(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// Seals a 64-byte block: CRC32 of bytes 0..60 goes into bytes 60..64.
fn seal(mut b: [u8; HEADER_LEN]) -> [u8; HEADER_LEN] {
    let crc = crc_of(&b[..60]);
    b[60..].copy_from_slice(&crc.to_le_bytes());
    b
}

fn check_seal(b: &[u8; HEADER_LEN], what: &str) -> Result<(), DecodeError> {
    let stored = u32_at(b, 60);
    let actual = crc_of(&b[..60]);
    if stored == actual {
        Ok(())
    } else {
        Err(format!(
            "{what} checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
        ))
    }
}

impl FileHeader {
    /// Encodes the header with its checksum.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        self.encode_with(FILE_MAGIC)
    }

    /// Encodes the header with `magic` ([`FILE_MAGIC`] or [`PENDING_MAGIC`]).
    pub fn encode_with(&self, magic: [u8; 8]) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&magic);
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..20].copy_from_slice(&self.section_count.to_le_bytes());
        b[24..32].copy_from_slice(&self.file_len.to_le_bytes());
        b[32..40].copy_from_slice(&(HEADER_LEN as u64).to_le_bytes());
        seal(b)
    }

    /// Decodes and checks magic, header length and checksum. The version is
    /// returned as read; the caller decides whether it can read it.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Self, DecodeError> {
        Self::decode_with(b, FILE_MAGIC)
    }

    /// [`FileHeader::decode`] expecting `magic`.
    pub fn decode_with(b: &[u8; HEADER_LEN], magic: [u8; 8]) -> Result<Self, DecodeError> {
        if b[0..8] == PENDING_MAGIC && magic != PENDING_MAGIC {
            return Err("a build's unfinished temporary file, not an index".into());
        }
        if b[0..8] != magic {
            return Err("not an svve index (wrong magic bytes)".into());
        }
        check_seal(b, "file header")?;
        let header_len = u32_at(b, 12);
        let table_at = u64_at(b, 32);
        if header_len as usize != HEADER_LEN || table_at != HEADER_LEN as u64 {
            return Err(format!(
                "header length {header_len} / table offset {table_at} are not 64"
            ));
        }
        let section_count = u32_at(b, 16);
        if section_count > MAX_SECTIONS {
            return Err(format!(
                "header claims {section_count} sections (max {MAX_SECTIONS})"
            ));
        }
        Ok(FileHeader {
            version: u16_at(b, 8),
            section_count,
            file_len: u64_at(b, 24),
        })
    }
}

impl SectionEntry {
    /// Encodes the entry with its checksum.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&SECTION_MAGIC);
        b[4..8].copy_from_slice(&self.kind.tag());
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        b[10..12].copy_from_slice(&(self.elem as u16).to_le_bytes());
        b[16..24].copy_from_slice(&self.rows.to_le_bytes());
        b[24..32].copy_from_slice(&self.cols.to_le_bytes());
        b[32..40].copy_from_slice(&self.offset.to_le_bytes());
        b[40..48].copy_from_slice(&self.len.to_le_bytes());
        b[48..52].copy_from_slice(&self.crc.to_le_bytes());
        seal(b)
    }

    /// Decodes one entry and checks everything that does not need the file:
    /// magic, checksum, known kind and element type, alignment, and
    /// `len == rows * cols * elem_size` without overflow.
    pub fn decode(b: &[u8; HEADER_LEN], index: usize) -> Result<Self, DecodeError> {
        let what = format!("section table entry {index}");
        if b[0..4] != SECTION_MAGIC {
            return Err(format!("{what}: wrong magic bytes"));
        }
        check_seal(b, &what)?;
        let tag = [b[4], b[5], b[6], b[7]];
        let kind = SectionKind::from_tag(tag)
            .ok_or_else(|| format!("{what}: unknown section kind {tag:?}"))?;
        let what = format!("{} section", kind.name());
        let elem = ElemType::from_u16(u16_at(b, 10))
            .filter(|e| *e == kind.elem())
            .ok_or_else(|| format!("{what}: wrong element type {}", u16_at(b, 10)))?;
        let e = SectionEntry {
            kind,
            version: u16_at(b, 8),
            elem,
            rows: u64_at(b, 16),
            cols: u64_at(b, 24),
            offset: u64_at(b, 32),
            len: u64_at(b, 40),
            crc: u32_at(b, 48),
        };
        let expected = e
            .rows
            .checked_mul(e.cols)
            .and_then(|c| c.checked_mul(elem.size()));
        if expected != Some(e.len) {
            return Err(format!(
                "{what}: length {} does not match {} rows x {} cols",
                e.len, e.rows, e.cols
            ));
        }
        if !e.offset.is_multiple_of(ALIGN as u64) {
            return Err(format!(
                "{what}: offset {} is not 64-byte aligned",
                e.offset
            ));
        }
        Ok(e)
    }

    /// Checks the payload checksum.
    pub fn verify(&self, payload: &[u8]) -> Result<(), DecodeError> {
        let actual = crc_of(payload);
        if actual == self.crc {
            Ok(())
        } else {
            Err(format!(
                "{} section checksum mismatch (stored {:#010x}, computed {actual:#010x})",
                self.kind.name(),
                self.crc
            ))
        }
    }
}

/// Rounds `x` up to the next multiple of [`ALIGN`].
pub fn align_up(x: u64) -> u64 {
    x.div_ceil(ALIGN as u64) * ALIGN as u64
}
