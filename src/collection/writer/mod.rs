//! The one writer of a collection: takes changes, commits them durably,
//! checkpoints fresh rows into segments and merges segments.
//!
//! A change is applied at once to the writer's working [`State`] (its own
//! searches see it) and queued as a log record. `commit` makes the queue
//! durable in one of two ways:
//! - append it to the write-ahead log, fsync, publish a manifest with the
//!   log's new length (the common, cheap case);
//! - or, once the fresh rows are many enough to slow exact search down,
//!   a checkpoint: fresh rows become a new segment, segments with new
//!   deletions get new deletion files, a new empty log starts, and a
//!   manifest naming all of it is published.
//!
//! Either way nothing becomes visible or durable before the manifest's
//! rename, so a crash anywhere leaves the previous generation intact.
//! After a commit, the size-tiered policy may merge segments (another
//! checkpoint) and unreferenced files are removed.
use std::fs::File;
use std::path::{Path, PathBuf};

use hashbrown::{HashMap, HashSet};

mod checkpoint;

use checkpoint::{Rewrite, MERGE_FACTOR};

use super::attrs;
use super::drift::Drift;
use super::files::{self, deletes_name, manifest_name, segment_name, wal_name, LOCK};
use super::manifest::{CollectionConfig, CollectionManifest, MANIFEST_FORMAT};
use super::state::State;
use super::wal::{self, Record, WalWriter};
use crate::error::{Error, Result};
use crate::index::attributes::AttributesInput;
use crate::index::build::prepare_rows;
use crate::index::format::SectionKind;
use crate::index::{LoadOptions, Metric};

/// Fresh rows are searched exactly: by default a checkpoint moves them
/// into a segment once they hold this many floats (682 rows of 384
/// dimensions, 170 of 1536; at least 256 rows). Their exact scan is paid by
/// every query: debian-minilm-384 ingested from 30k to 60k rows in batches
/// of 1,000 answered single queries in 92 us p50 with a limit of 2^19
/// floats and 73 us with 2^18; limits of 341 and 128 rows gave nothing
/// more (the segments cost the rest), and smaller limits cost ingest
/// (15.2k rows/s at 2^19, 11.2k at 2^18, 10.9k at 128 rows).
const FRESH_FLOATS: usize = 1 << 18;

/// Where a live id's row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    /// Stored row `row` of segment `no`.
    Segment { no: u64, row: u32 },
    /// Among the fresh rows.
    Fresh,
}

/// The writer of one collection directory (holds its lock).
pub struct Writer {
    dir: PathBuf,
    /// Held for the writer's lifetime; the OS releases it if the process dies.
    _lock: File,
    /// The last published generation.
    manifest: CollectionManifest,
    /// Committed rows plus the queued changes.
    work: State,
    /// Changes not yet committed, in order.
    queue: Vec<Record>,
    /// Location of every live id (committed or queued).
    ids: HashMap<i64, Loc>,
    next_id: i64,
    wal: WalWriter,
    opts: LoadOptions,
    merge_error: Option<String>,
    /// How far rows lie from the base's partitions, to notice drift.
    drift: Drift,
    /// The last checkpoint's rows had drifted: retrain at the next merge.
    drifted: bool,
}

/// Rows the fresh set holds before a checkpoint: `configured`, or for 0
/// the automatic limit for `dim`.
pub fn fresh_limit(dim: usize, configured: u64) -> usize {
    match configured {
        0 => (FRESH_FLOATS / dim.max(1)).max(256),
        n => n as usize,
    }
}

impl Writer {
    /// Creates an empty collection in `dir` (created if missing; it must
    /// not hold a collection yet) and opens its writer.
    pub fn create(
        dir: &Path,
        dim: usize,
        metric: Metric,
        config: CollectionConfig,
        opts: LoadOptions,
    ) -> Result<Self> {
        config.check()?;
        if dim == 0 || dim > u32::MAX as usize {
            return Err(Error::param(
                "dim",
                format!("must be in 1..2^32, got {dim}"),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let exists = || -> Result<()> {
            match files::generations(dir)?.is_empty() {
                true => Ok(()),
                false => Err(Error::CollectionExists {
                    path: dir.to_path_buf(),
                }),
            }
        };
        exists()?;
        let lock = take_lock(dir)?;
        // Another process may have created it in between.
        exists()?;
        wal::create(&dir.join(wal_name(0)), dim)?;
        let m = CollectionManifest {
            format: MANIFEST_FORMAT,
            library_version: crate::VERSION.into(),
            generation: 0,
            dim: dim as u64,
            metric,
            config,
            segments: Vec::new(),
            wal: 0,
            wal_len: wal::HEADER_LEN,
            next_file: 1,
            next_id: 0,
            calibration: None,
            calibrated_rows: 0,
            attributes: Vec::new(),
        };
        m.publish(dir)?;
        drop(lock);
        Self::open(dir, opts)
    }

    /// Opens the writer of the collection in `dir`: the newest generation,
    /// with whatever an interrupted commit or checkpoint left behind
    /// cleaned up.
    pub fn open(dir: &Path, opts: LoadOptions) -> Result<Self> {
        let gens = files::generations(dir)?;
        let Some(&g) = gens.last() else {
            return Err(Error::CollectionNotFound {
                path: dir.to_path_buf(),
            });
        };
        let lock = take_lock(dir)?;
        let manifest = CollectionManifest::read(dir, g)?;
        let work = State::load(dir, &manifest, &[], opts)?;
        let wal = WalWriter::open(&dir.join(wal_name(manifest.wal)), manifest.wal_len)?;
        let mut ids = HashMap::with_capacity(work.len());
        for s in &work.segments {
            let stored: &[i64] = s.engine.file().section(SectionKind::Ids);
            for (row, &id) in stored.iter().enumerate() {
                if s.mask.as_ref().is_none_or(|m| m.get(row)) {
                    let loc = Loc::Segment {
                        no: s.no,
                        row: row as u32,
                    };
                    if ids.insert(id, loc).is_some() {
                        return Err(Error::corrupt(
                            &dir.join(segment_name(s.no)),
                            format!("id {id} is live in two places"),
                        ));
                    }
                }
            }
        }
        for &id in &work.fresh.ids {
            if ids.insert(id, Loc::Fresh).is_some() {
                return Err(Error::corrupt(
                    &dir.join(wal_name(manifest.wal)),
                    format!("id {id} is live in two places"),
                ));
            }
        }
        let drift = work.segments.first().map(Drift::of).unwrap_or_default();
        let w = Writer {
            dir: dir.to_path_buf(),
            _lock: lock,
            next_id: manifest.next_id,
            manifest,
            work,
            queue: Vec::new(),
            ids,
            wal,
            opts,
            merge_error: None,
            drift,
            drifted: false,
        };
        w.collect_garbage();
        Ok(w)
    }

    /// The working state: committed rows plus queued changes.
    pub fn state(&self) -> &State {
        &self.work
    }

    /// The last committed generation.
    pub fn manifest(&self) -> &CollectionManifest {
        &self.manifest
    }

    /// Whether changes are queued.
    pub fn has_changes(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Adds `vectors` (`n x dim`) under `ids` (assigned above every id the
    /// collection ever held when `None`) with their `attributes` (the
    /// collection's columns: `collection::attrs`); an id already live is
    /// an error.
    pub fn add(
        &mut self,
        vectors: &[f32],
        ids: Option<&[i64]>,
        attributes: Option<&AttributesInput>,
    ) -> Result<Vec<i64>> {
        let rows = self.prepare(vectors, ids)?;
        let n = rows.len() / self.work.dim;
        let attributes = self.attributes_of(attributes, n)?;
        let ids = match ids {
            Some(ids) => {
                if let Some(&id) = ids.iter().find(|id| self.ids.contains_key(*id)) {
                    return Err(Error::DuplicateId {
                        id,
                        detail: "the collection already holds it (use upsert to replace it)",
                    });
                }
                ids.to_vec()
            }
            None => {
                let start = self.next_id;
                if i64::MAX - start < n as i64 {
                    return Err(Error::param(
                        "ids",
                        "the automatic ids are exhausted; pass ids",
                    ));
                }
                (start..start + n as i64).collect()
            }
        };
        self.insert(ids.clone(), rows, attributes);
        Ok(ids)
    }

    /// Adds `vectors` under `ids`, replacing the rows of ids already live.
    pub fn upsert(
        &mut self,
        vectors: &[f32],
        ids: &[i64],
        attributes: Option<&AttributesInput>,
    ) -> Result<()> {
        let rows = self.prepare(vectors, Some(ids))?;
        let n = rows.len() / self.work.dim;
        let attributes = self.attributes_of(attributes, n)?;
        self.remove(ids);
        self.insert(ids.to_vec(), rows, attributes);
        Ok(())
    }

    /// A call's attributes checked and in the collection's column order.
    fn attributes_of(
        &self,
        given: Option<&AttributesInput>,
        n: usize,
    ) -> Result<Option<AttributesInput>> {
        let w = &self.work;
        let empty = w.segments.is_empty() && w.fresh.is_empty();
        attrs::normalized(&w.schema, empty, given, n)
    }

    /// Deletes `ids`; returns how many were live (unknown ids are counted
    /// out, not an error).
    pub fn delete(&mut self, ids: &[i64]) -> Result<usize> {
        check_unique(ids)?;
        Ok(self.remove(ids))
    }

    /// Validates a call's rows and ids; returns the rows prepared.
    fn prepare(&self, vectors: &[f32], ids: Option<&[i64]>) -> Result<Vec<f32>> {
        let dim = self.work.dim;
        if !vectors.len().is_multiple_of(dim) {
            return Err(Error::DimensionMismatch {
                expected: dim,
                got: vectors.len() % dim,
            });
        }
        let n = vectors.len() / dim;
        if let Some(ids) = ids {
            if ids.len() != n {
                return Err(Error::param(
                    "ids",
                    format!("{} ids for {n} vectors", ids.len()),
                ));
            }
            check_unique(ids)?;
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        prepare_rows(vectors, dim, self.work.metric)
    }

    fn insert(&mut self, ids: Vec<i64>, rows: Vec<f32>, attributes: Option<AttributesInput>) {
        if ids.is_empty() {
            return;
        }
        for &id in &ids {
            self.ids.insert(id, Loc::Fresh);
        }
        if let Some(&top) = ids.iter().max() {
            self.next_id = self.next_id.max(top.saturating_add(1));
        }
        self.log(Record::Add {
            ids,
            rows,
            attributes,
        });
    }

    /// Deletes the live ones of `ids`; returns how many there were.
    fn remove(&mut self, ids: &[i64]) -> usize {
        let mut by_segment: HashMap<u64, Vec<u32>> = HashMap::new();
        let mut fresh = Vec::new();
        for id in ids {
            match self.ids.remove(id) {
                Some(Loc::Segment { no, row }) => by_segment.entry(no).or_default().push(row),
                Some(Loc::Fresh) => fresh.push(*id),
                None => {}
            }
        }
        let n = fresh.len() + by_segment.values().map(Vec::len).sum::<usize>();
        let mut segments: Vec<_> = by_segment.into_iter().collect();
        segments.sort_unstable_by_key(|(no, _)| *no);
        for (segment, mut rows) in segments {
            rows.sort_unstable();
            self.log(Record::DeleteRows { segment, rows });
        }
        if !fresh.is_empty() {
            self.log(Record::DeleteFresh { ids: fresh });
        }
        n
    }

    /// Applies `r` to the working state and queues it.
    fn log(&mut self, r: Record) {
        // Records built here are consistent with the state by construction.
        let applied = self.work.apply(&r);
        debug_assert!(applied.is_ok(), "{applied:?}");
        self.queue.push(r);
    }

    /// Makes the queued changes durable and visible to readers; returns
    /// the generation now committed (unchanged when nothing was queued).
    pub fn commit(&mut self) -> Result<u64> {
        if self.queue.is_empty() {
            return Ok(self.manifest.generation);
        }
        if self.work.fresh.len() >= self.fresh_limit() {
            self.checkpoint(Rewrite::Segments(Vec::new()))?;
        } else {
            self.append()?;
        }
        // The changes are committed: a merge that fails now (a full disk)
        // must not report them lost. The next commit tries again.
        self.merge_error = self.merge_by_policy().err().map(|e| e.to_string());
        Ok(self.manifest.generation)
    }

    /// Why the last merge after a commit failed, if it did (the commit
    /// itself succeeded; the merge is retried at the next commit).
    pub fn merge_error(&self) -> Option<&str> {
        self.merge_error.as_deref()
    }

    fn fresh_limit(&self) -> usize {
        fresh_limit(self.work.dim, self.manifest.config.fresh_rows)
    }

    fn merge_factor(&self) -> usize {
        match self.manifest.config.merge_factor {
            0 => MERGE_FACTOR,
            n => n as usize,
        }
    }

    /// Commits by appending the queue to the log.
    fn append(&mut self) -> Result<()> {
        let path = self.dir.join(wal_name(self.manifest.wal));
        let len = self.wal.append(&path, &self.queue)?;
        let mut m = self.manifest.clone();
        m.generation += 1;
        m.wal_len = len;
        m.next_id = self.next_id;
        m.attributes = self.work.schema.clone();
        let published = self.publish(&m);
        self.wal
            .committed(&path, published.is_ok().then_some(len))?;
        published?;
        self.manifest = m;
        self.work.generation = self.manifest.generation;
        self.queue.clear();
        self.collect_garbage();
        Ok(())
    }

    /// Publishes `m`. A failure after the rename (the directory's fsync)
    /// still published it: that counts as success, so the writer's view
    /// never falls behind what readers may already see.
    fn publish(&self, m: &CollectionManifest) -> Result<()> {
        match m.publish(&self.dir) {
            Err(_) if self.dir.join(manifest_name(m.generation)).exists() => Ok(()),
            other => other,
        }
    }

    /// Removes files neither the current nor the previous generation uses
    /// (a reader that is loading the previous one still finds its files;
    /// readers that loaded older ones hold what they need open or in
    /// memory, and a mapped file stays valid after unlink on POSIX).
    fn collect_garbage(&self) {
        let current = &self.manifest;
        let previous = current
            .generation
            .checked_sub(1)
            .and_then(|g| CollectionManifest::read(&self.dir, g).ok());
        let mut keep: HashSet<String> = HashSet::new();
        for m in std::iter::once(current).chain(previous.as_ref()) {
            keep.insert(manifest_name(m.generation));
            keep.insert(wal_name(m.wal));
            for s in &m.segments {
                keep.insert(segment_name(s.no));
                if let Some(d) = s.deletes {
                    keep.insert(deletes_name(d));
                }
            }
        }
        files::remove_unused(&self.dir, &|name| keep.contains(name));
    }
}

/// Takes the writer's lock on `dir`, or says who holds it. The lock file
/// is held open read-only (a file open for writing would keep the file
/// system from being remounted read-only under a running writer).
fn take_lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK);
    let io = |e| Error::io(&path, e);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            File::create(&path).map_err(io)?;
            File::open(&path).map_err(io)?
        }
        Err(e) => return Err(io(e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::CollectionLocked {
            path: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// An error for the first id given twice.
fn check_unique(ids: &[i64]) -> Result<()> {
    let mut seen = HashSet::with_capacity(ids.len());
    match ids.iter().find(|id| !seen.insert(**id)) {
        Some(&id) => Err(Error::DuplicateId {
            id,
            detail: "it appears twice in this call",
        }),
        None => Ok(()),
    }
}
