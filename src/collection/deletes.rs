//! Deletion files: the deleted rows of one segment as of a checkpoint,
//! written once (a later checkpoint writes a new file, never edits this
//! one), so segment files stay untouched however many rows are deleted.
//!
//! Layout, little-endian: `SVVEDEL\x01`, the segment's rows (u64), the
//! count (u64), the deleted stored row numbers ascending (u32 each), and
//! the CRC-32 of everything before it (u32).
use std::path::Path;

use crate::core::RowMask;
use crate::error::{Error, Result};
use crate::index::write_small;

const MAGIC: &[u8; 8] = b"SVVEDEL\x01";

/// Writes the rows `mask` disallows to `path`, atomically.
pub fn write(path: &Path, mask: &RowMask) -> Result<()> {
    let rows: Vec<u32> = mask.cleared().map(|r| r as u32).collect();
    let mut b = Vec::with_capacity(28 + 4 * rows.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&(mask.len() as u64).to_le_bytes());
    b.extend_from_slice(&(rows.len() as u64).to_le_bytes());
    b.extend_from_slice(bytemuck::cast_slice(&rows));
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    write_small(path, &b)
}

/// Reads the deletion file at `path` for a segment of `rows` rows that
/// should delete `deleted` of them, as the mask of rows still live.
pub fn read(path: &Path, rows: usize, deleted: usize) -> Result<RowMask> {
    let b = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |why: &str| Error::corrupt(path, format!("deletion file: {why}"));
    if b.len() < 28 || &b[..8] != MAGIC {
        return Err(bad("bad header"));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    let word = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap_or_default());
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().unwrap_or_default()) {
        return Err(bad("checksum mismatch"));
    }
    let (n, count) = (word(8) as usize, word(16) as usize);
    if n != rows || count != deleted || body.len() != 24 + 4 * count {
        return Err(bad(&format!(
            "holds {count} of {n} rows, the manifest expects {deleted} of {rows}"
        )));
    }
    let mut mask = RowMask::all(rows);
    for c in body[24..].chunks_exact(4) {
        let r = u32::from_le_bytes(c.try_into().unwrap_or_default()) as usize;
        if r >= rows || !mask.clear(r) {
            return Err(bad("row out of range or listed twice"));
        }
    }
    Ok(mask)
}
