//! Atomic, streaming writer for index files.
//!
//! The file is written to a temporary name in the target directory, fsynced,
//! renamed over the target and the directory is fsynced. A crash at any
//! point leaves either the old file or the new one, never a mix; and a file
//! that readers may have mapped is never modified, only replaced. Between
//! writing and renaming, a [`Pending`] file is private to the builder, which
//! may open it (to calibrate) and overwrite a section of the same size.
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
#[cfg(unix)]
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{
    align_up, version_for, FileHeader, SectionEntry, SectionKind, HEADER_LEN, PENDING_MAGIC,
};
use crate::error::{Error, Result};

/// Shape of one section, known before any payload is written.
#[derive(Debug, Clone, Copy)]
pub struct SectionPlan {
    /// Section kind.
    pub kind: SectionKind,
    /// Logical rows.
    pub rows: u64,
    /// Logical columns.
    pub cols: u64,
}

/// Receives one section's payload and checksums it on the way to disk.
pub struct SectionSink<'a> {
    out: &'a mut BufWriter<File>,
    crc: crc32fast::Hasher,
    written: u64,
    path: &'a Path,
}

impl SectionSink<'_> {
    /// Appends bytes to the section.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.crc.update(bytes);
        self.written += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(self.path, e))
    }

    /// Appends plain-old-data values (little-endian on every supported target).
    pub fn write_pod<T: bytemuck::Pod>(&mut self, values: &[T]) -> Result<()> {
        self.write(bytemuck::cast_slice(values))
    }
}

/// Removes the temporary file unless the write completed.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = format!(
        ".{}.tmp-{}-{nanos}",
        name.unwrap_or_else(|| "index".into()),
        std::process::id()
    );
    path.with_file_name(tmp)
}

/// Writes an index file atomically. `fill` is called once per planned
/// section, in order, and must write exactly `rows * cols` elements.
pub fn write_index(
    path: &Path,
    plans: &[SectionPlan],
    fill: impl FnMut(SectionKind, &mut SectionSink<'_>) -> Result<()>,
) -> Result<()> {
    write_pending(path, plans, fill)?.commit()
}

/// A complete index file under a temporary name, not yet renamed into
/// place; dropped without [`Pending::commit`], it is removed.
pub struct Pending {
    path: PathBuf,
    file: File,
    header: FileHeader,
    entries: Vec<SectionEntry>,
    guard: TempGuard,
}

impl Pending {
    /// Where the complete file lies until it is committed. Its header
    /// carries `PENDING_MAGIC` until then, so only `IndexFile::open_pending`
    /// opens it: a temporary file left by a killed build never loads.
    pub fn temp_path(&self) -> &Path {
        self.guard.0.as_deref().unwrap_or(&self.path)
    }

    /// Overwrites the payload of section `kind` with `bytes` (exactly its
    /// planned length) and reseals its table entry.
    pub fn replace_section(&mut self, kind: SectionKind, bytes: &[u8]) -> Result<()> {
        let tmp = self.temp_path().to_path_buf();
        let (i, e) = self
            .entries
            .iter_mut()
            .enumerate()
            .find(|(_, e)| e.kind == kind)
            .ok_or_else(|| Error::param("section", format!("{} was not planned", kind.name())))?;
        if bytes.len() as u64 != e.len {
            return Err(Error::param(
                "section",
                format!(
                    "{} is {} bytes, planned {}",
                    kind.name(),
                    bytes.len(),
                    e.len
                ),
            ));
        }
        e.crc = crc32fast::hash(bytes);
        let entry = e.encode();
        let io = |err| Error::io(&tmp, err);
        write_at(&self.file, bytes, e.offset).map_err(io)?;
        write_at(&self.file, &entry, (HEADER_LEN * (1 + i)) as u64).map_err(io)
    }

    /// Seals the header, fsyncs the file, renames it over the target and
    /// fsyncs the directory.
    pub fn commit(mut self) -> Result<()> {
        let tmp = self.temp_path().to_path_buf();
        write_at(&self.file, &self.header.encode(), 0).map_err(|e| Error::io(&tmp, e))?;
        self.file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        self.guard.0 = None;
        sync_parent(&self.path)?;
        drop_cached(&self.file);
        Ok(())
    }
}

/// Files from this many bytes on leave the page cache when committed
/// ([`drop_cached`]); below it Tier2's rows are within the reach of the
/// second-level TLB's 4 KiB entries or nearly (2,048 to 3,072 of them on
/// current x86 cores: 8 to 12 MiB), and a re-read would buy little.
pub const DROP_CACHED_FROM: u64 = 32 << 20;

/// Drops a committed file's pages from the page cache (Linux; files of at
/// least [`DROP_CACHED_FROM`] bytes), so that the next verified open reads
/// them back under its `MADV_HUGEPAGE` hint in 2 MiB folios
/// (`index::reader`). Pages cached by the writes are 4 KiB folios, and
/// they stay so while cached: every engine opened on a file just built
/// (the usual build-then-serve, and the benchmark suite) mapped Tier2 in
/// 4 KiB pages, with a TLB miss, under virtualisation a two-level page
/// walk, per row gathered. Measured (session 38, one process, the same
/// index twice, one copy read back in 2 MiB folios, queries of both
/// interleaved): mean time 0.94-0.96x on debian-minilm-384 and the 9k x
/// 1536 ada stand-in at targets 0.9 to 0.99, 0.92-0.96x on the clustered
/// 1M set, 0.89-0.91x there under 1% and 0.1% filters. The price is the
/// re-read at that open (about 0.3 s for debian's 100 MB). Only clean
/// pages nobody maps are dropped (the file was just fsynced and renamed
/// into place), so the advice can lose nothing; it is best effort.
#[cfg(target_os = "linux")]
fn drop_cached(file: &File) {
    use std::os::unix::io::AsRawFd;
    if file.metadata().is_ok_and(|m| m.len() >= DROP_CACHED_FROM) {
        // SAFETY: `file` is an open descriptor for the call's duration;
        // the call only advises the kernel and touches no memory of ours.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

#[cfg(not(target_os = "linux"))]
fn drop_cached(_file: &File) {}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], at: u64) -> std::io::Result<()> {
    file.write_all_at(bytes, at)
}

#[cfg(not(unix))]
fn write_at(mut file: &File, bytes: &[u8], at: u64) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(at))?;
    file.write_all(bytes)
}

/// Writes a complete index file under a temporary name next to `path`;
/// see [`write_index`] for `fill`.
pub fn write_pending(
    path: &Path,
    plans: &[SectionPlan],
    mut fill: impl FnMut(SectionKind, &mut SectionSink<'_>) -> Result<()>,
) -> Result<Pending> {
    let table_end = (HEADER_LEN * (1 + plans.len())) as u64;
    let version = version_for(plans.iter().map(|p| p.kind));
    let mut entries = Vec::with_capacity(plans.len());
    let mut at = align_up(table_end);
    for p in plans {
        let len = p.rows * p.cols * p.kind.elem().size();
        entries.push(SectionEntry {
            kind: p.kind,
            version,
            elem: p.kind.elem(),
            rows: p.rows,
            cols: p.cols,
            offset: at,
            len,
            crc: 0,
        });
        at = align_up(at + len);
    }
    let file_len = entries.last().map_or(table_end, |e| e.offset + e.len);

    let tmp = temp_path(path);
    let guard = TempGuard(Some(tmp.clone()));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        // Name the target: the temporary name means nothing to the caller.
        .map_err(|e| Error::io(path, e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let io = |e| Error::io(&tmp, e);
    out.write_all(&vec![0u8; align_up(table_end) as usize])
        .map_err(io)?;
    let mut pos = align_up(table_end);
    for e in &mut entries {
        out.write_all(&vec![0u8; (e.offset - pos) as usize])
            .map_err(io)?;
        let mut sink = SectionSink {
            out: &mut out,
            crc: crc32fast::Hasher::new(),
            written: 0,
            path: &tmp,
        };
        fill(e.kind, &mut sink)?;
        if sink.written != e.len {
            return Err(Error::param(
                "section",
                format!(
                    "{} wrote {} bytes, planned {}",
                    e.kind.name(),
                    sink.written,
                    e.len
                ),
            ));
        }
        e.crc = sink.crc.finalize();
        pos = e.offset + e.len;
    }
    // Header and table last: a file cut short by a crash fails the length
    // check; the header's pending magic keeps a complete one from loading
    // until `commit`.
    out.seek(SeekFrom::Start(0)).map_err(io)?;
    let header = FileHeader {
        version,
        section_count: entries.len() as u32,
        file_len,
    };
    out.write_all(&header.encode_with(PENDING_MAGIC))
        .map_err(io)?;
    for e in &entries {
        out.write_all(&e.encode()).map_err(io)?;
    }
    let file = out
        .into_inner()
        .map_err(|e| Error::io(&tmp, e.into_error()))?;
    Ok(Pending {
        path: path.to_path_buf(),
        file,
        header,
        entries,
        guard,
    })
}

/// fsyncs the directory holding `path`, so the rename itself is durable.
/// Writes a small file (a manifest, a deletion list) atomically: a
/// temporary name, fsync, rename over `path`, fsync of the directory.
pub fn write_small(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let mut guard = TempGuard(Some(tmp.clone()));
    let io = |e| Error::io(&tmp, e);
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    guard.0 = None;
    sync_parent(path)
}

/// Fsyncs the directory holding `path`, so a rename or a new file in it
/// survives a crash (a no-op where directories cannot be opened).
#[cfg(unix)]
pub fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = File::open(parent).map_err(|e| Error::io(parent, e))?;
    dir.sync_all().map_err(|e| Error::io(parent, e))
}

/// Windows cannot open a directory as a file, so there is nothing to sync:
/// the rename's durability is NTFS's metadata journal, best effort
/// (`std::fs::rename` does not ask `MoveFileEx` for write-through).
#[cfg(not(unix))]
pub fn sync_parent(_path: &Path) -> Result<()> {
    Ok(())
}
