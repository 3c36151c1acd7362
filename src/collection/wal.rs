//! The write-ahead log: changes committed since the last checkpoint, as
//! checksummed records appended to one file. A commit appends and fsyncs
//! its records, then publishes a manifest recording the log's new length;
//! readers read exactly that many bytes, so bytes a crash left past it
//! (an interrupted commit) are never applied, and the next writer cuts
//! them off. Deletes of segment rows are logged as row numbers (resolved
//! by the writer), so readers need no id lookup.
//!
//! Layout: a 16-byte header (`SVVEWAL\x01`, dim as u32, 4 zero bytes),
//! then records `[len u32][crc32 u32][payload len bytes]`, little-endian;
//! a payload is a kind byte and its fields.
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::index::attributes::{check_input, AttributesInput};
use crate::index::write_small;

const MAGIC: &[u8; 8] = b"SVVEWAL\x01";

/// Bytes before the first record.
pub const HEADER_LEN: u64 = 16;

/// One logged change.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// New rows (prepared: unit length for cosine), `ids.len() x dim`,
    /// with their attributes when the collection has some.
    Add {
        ids: Vec<i64>,
        rows: Vec<f32>,
        attributes: Option<AttributesInput>,
    },
    /// Rows of segment `segment` (stored row numbers) deleted.
    DeleteRows { segment: u64, rows: Vec<u32> },
    /// Rows added since the last checkpoint deleted, by id.
    DeleteFresh { ids: Vec<i64> },
}

const ADD: u8 = 1;
const DELETE_ROWS: u8 = 2;
const DELETE_FRESH: u8 = 3;
/// `ADD` followed by the attributes as JSON (`u32` length, bytes).
const ADD_WITH_ATTRIBUTES: u8 = 4;

impl Record {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut p = Vec::new();
        match self {
            Record::Add {
                ids,
                rows,
                attributes,
            } => {
                p.push(if attributes.is_some() {
                    ADD_WITH_ATTRIBUTES
                } else {
                    ADD
                });
                p.extend_from_slice(&(ids.len() as u32).to_le_bytes());
                p.extend_from_slice(bytemuck::cast_slice(ids));
                p.extend_from_slice(bytemuck::cast_slice(rows));
                if let Some(a) = attributes {
                    // Serializing plain columns cannot fail.
                    let json = serde_json::to_vec(a).unwrap_or_default();
                    p.extend_from_slice(&(json.len() as u32).to_le_bytes());
                    p.extend_from_slice(&json);
                }
            }
            Record::DeleteRows { segment, rows } => {
                p.push(DELETE_ROWS);
                p.extend_from_slice(&segment.to_le_bytes());
                p.extend_from_slice(&(rows.len() as u32).to_le_bytes());
                p.extend_from_slice(bytemuck::cast_slice(rows));
            }
            Record::DeleteFresh { ids } => {
                p.push(DELETE_FRESH);
                p.extend_from_slice(&(ids.len() as u32).to_le_bytes());
                p.extend_from_slice(bytemuck::cast_slice(ids));
            }
        }
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
        out.extend_from_slice(&p);
    }

    fn decode(p: &[u8], dim: usize) -> Option<Self> {
        let (&kind, rest) = p.split_first()?;
        let mut r = Cursor(rest);
        let rec = match kind {
            ADD | ADD_WITH_ATTRIBUTES => {
                let n = r.u32()? as usize;
                let ids = r.pods::<i64>(n)?;
                let rows = r.pods::<f32>(n.checked_mul(dim)?)?;
                let attributes = match kind {
                    ADD => None,
                    _ => {
                        let len = r.u32()? as usize;
                        let json = r.pods::<u8>(len)?;
                        let a: AttributesInput = serde_json::from_slice(&json).ok()?;
                        check_input(&a, n).ok()?;
                        Some(a)
                    }
                };
                Record::Add {
                    ids,
                    rows,
                    attributes,
                }
            }
            DELETE_ROWS => {
                let segment = r.u64()?;
                let n = r.u32()? as usize;
                Record::DeleteRows {
                    segment,
                    rows: r.pods::<u32>(n)?,
                }
            }
            DELETE_FRESH => {
                let n = r.u32()? as usize;
                Record::DeleteFresh { ids: r.pods(n)? }
            }
            _ => return None,
        };
        r.0.is_empty().then_some(rec)
    }
}

/// Reads little-endian values off the front of a byte slice.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn pods<T: bytemuck::Pod>(&mut self, n: usize) -> Option<Vec<T>> {
        let bytes = self.take(n.checked_mul(size_of::<T>())?)?;
        // Copied out: the bytes are not aligned for `T`.
        let mut v = vec![T::zeroed(); n];
        bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(bytes);
        Some(v)
    }
}

/// Creates an empty log for `dim`-dimensional rows at `path`, atomically.
pub fn create(path: &Path, dim: usize) -> Result<()> {
    let mut h = Vec::with_capacity(HEADER_LEN as usize);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&(dim as u32).to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    write_small(path, &h)
}

/// The writer's handle on a log: appends committed records. The file is
/// opened per append, not held open for writing between commits.
pub struct WalWriter {
    /// Bytes committed (published in a manifest).
    len: u64,
}

impl WalWriter {
    /// The log at `path`, to be appended to after its first `committed`
    /// bytes; whatever lies beyond them (a commit a crash interrupted
    /// before its manifest was published) is cut off.
    pub fn open(path: &Path, committed: u64) -> Result<Self> {
        let w = WalWriter { len: committed };
        w.truncate(path)?;
        Ok(w)
    }

    /// Cuts the file back to its committed length (when it is longer).
    fn truncate(&self, path: &Path) -> Result<()> {
        let io = |e| Error::io(path, e);
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > self.len {
            let file = OpenOptions::new().write(true).open(path).map_err(io)?;
            file.set_len(self.len).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Ok(())
    }

    /// Appends `records` and fsyncs; returns the log's length with them,
    /// which becomes committed when a manifest records it
    /// ([`WalWriter::committed`]). On error the file is cut back.
    pub fn append(&mut self, path: &Path, records: &[Record]) -> Result<u64> {
        let mut buf = Vec::new();
        for r in records {
            r.encode(&mut buf);
        }
        let done = OpenOptions::new().write(true).open(path).and_then(|mut f| {
            f.seek(SeekFrom::Start(self.len))?;
            f.write_all(&buf)?;
            f.sync_data()
        });
        if let Err(e) = done {
            let _ = self.truncate(path);
            return Err(Error::io(path, e));
        }
        Ok(self.len + buf.len() as u64)
    }

    /// Marks the log committed up to `len` (its manifest is published), or
    /// cuts an append whose manifest failed back to the committed length.
    pub fn committed(&mut self, path: &Path, len: Option<u64>) -> Result<()> {
        match len {
            Some(l) => {
                self.len = l;
                Ok(())
            }
            None => self.truncate(path),
        }
    }
}

/// Reads the records in bytes `from..to` of the log at `path` (`from` 0
/// or [`HEADER_LEN`] checks the header), for rows of `dim`.
pub fn read(path: &Path, dim: usize, from: u64, to: u64) -> Result<Vec<Record>> {
    let bad = |why: &str| Error::corrupt(path, format!("write-ahead log: {why}"));
    let io = |e| Error::io(path, e);
    let mut f = File::open(path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    if to > size || to < HEADER_LEN {
        return Err(bad(&format!(
            "{size} bytes, the manifest commits {to}: the log was truncated"
        )));
    }
    let from = from.max(HEADER_LEN);
    let mut bytes = vec![0u8; (to - from) as usize];
    if from == HEADER_LEN {
        let mut h = [0u8; HEADER_LEN as usize];
        f.read_exact(&mut h).map_err(io)?;
        if &h[..8] != MAGIC
            || u32::from_le_bytes(h[8..12].try_into().unwrap_or_default()) as usize != dim
        {
            return Err(bad("bad header (not a log of this collection)"));
        }
    }
    f.seek(SeekFrom::Start(from)).map_err(io)?;
    f.read_exact(&mut bytes).map_err(io)?;
    let mut out = Vec::new();
    let mut c = Cursor(&bytes);
    while !c.0.is_empty() {
        let (Some(len), Some(crc)) = (c.u32(), c.u32()) else {
            return Err(bad("a record header is cut short"));
        };
        let Some(p) = c.take(len as usize) else {
            return Err(bad("a record is cut short"));
        };
        if crc32fast::hash(p) != crc {
            return Err(bad("record checksum mismatch"));
        }
        out.push(Record::decode(p, dim).ok_or_else(|| bad("malformed record"))?);
    }
    Ok(out)
}
