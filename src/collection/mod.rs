//! Live collections: a directory of write-once **segments** (ordinary svve
//! index files, each memory-mapped), write-once deletion files, a
//! write-ahead log of changes not yet in a segment, and one manifest per
//! generation, published by atomic rename ([`files`] lists the names).
//!
//! One process writes ([`Writer`], holding the directory's lock); any
//! number read. A [`Collection`] is either: a writer searches its own
//! uncommitted changes, a reader the generation it last refreshed to.
//! Searches never take a lock: the rows they read are an immutable
//! [`State`] behind an `ArcSwap`.
mod attrs;
mod calibrate;
mod deletes;
mod drift;
pub mod files;
pub mod manifest;
mod search;
pub mod state;
pub mod wal;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

pub use manifest::{CollectionConfig, CollectionManifest};
pub use state::State;
pub use writer::Writer;

use crate::core::engine::{BatchResult, SearchStats};
use crate::core::{Filter, SearchParams};
use crate::error::{Error, Result};
use crate::index::{LoadOptions, Metric};

/// A loaded generation and the manifest it came from.
struct Loaded {
    manifest: CollectionManifest,
    state: Arc<State>,
}

/// An open collection: the writer, or a read-only view.
pub struct Collection {
    dir: PathBuf,
    writer: Option<Mutex<Writer>>,
    /// What searches read.
    current: ArcSwap<State>,
    /// The writer changed rows since `current` was taken from it.
    stale: AtomicBool,
    /// A reader's manifest (for incremental refresh).
    loaded: Mutex<Option<CollectionManifest>>,
    opts: LoadOptions,
}

/// Attempts to load the newest generation when the writer removes its
/// files under us (it keeps the previous generation's, so one retry
/// almost always suffices).
const LOAD_ATTEMPTS: usize = 8;

impl Collection {
    /// Creates an empty collection in `dir` and opens it for writing.
    pub fn create(
        dir: &Path,
        dim: usize,
        metric: Metric,
        config: CollectionConfig,
    ) -> Result<Self> {
        let opts = LoadOptions::default();
        let w = Writer::create(dir, dim, metric, config, opts)?;
        Ok(Self::with_writer(dir, w, opts))
    }

    /// Opens the collection in `dir`: its writer, or (`readonly`) a reader
    /// of the newest committed generation.
    pub fn open(dir: &Path, readonly: bool, opts: LoadOptions) -> Result<Self> {
        if !readonly {
            let w = Writer::open(dir, opts)?;
            return Ok(Self::with_writer(dir, w, opts));
        }
        let loaded = load_newest(dir, None, opts)?;
        Ok(Collection {
            dir: dir.to_path_buf(),
            writer: None,
            current: ArcSwap::new(loaded.state),
            stale: AtomicBool::new(false),
            loaded: Mutex::new(Some(loaded.manifest)),
            opts,
        })
    }

    fn with_writer(dir: &Path, w: Writer, opts: LoadOptions) -> Self {
        let state = Arc::new(w.state().clone());
        Collection {
            dir: dir.to_path_buf(),
            writer: Some(Mutex::new(w)),
            current: ArcSwap::new(state),
            stale: AtomicBool::new(false),
            loaded: Mutex::new(None),
            opts,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this handle is read-only.
    pub fn readonly(&self) -> bool {
        self.writer.is_none()
    }

    /// The rows searches see now: the writer's working state, or the
    /// reader's last refreshed generation.
    pub fn snapshot(&self) -> Arc<State> {
        if self.stale.load(Ordering::Acquire) {
            if let Ok(w) = self.writer() {
                self.current.store(Arc::new(w.state().clone()));
                self.stale.store(false, Ordering::Release);
            }
        }
        self.current.load_full()
    }

    /// Runs `f` on the writer; searches see the result afterwards.
    pub fn write<R>(&self, f: impl FnOnce(&mut Writer) -> Result<R>) -> Result<R> {
        let mut w = self.writer()?;
        let r = f(&mut w);
        // Even a failed call may have changed rows (a commit that
        // checkpointed and then failed to merge).
        self.stale.store(true, Ordering::Release);
        r
    }

    /// Commits the writer's changes (see [`Writer::commit`]).
    pub fn commit(&self) -> Result<u64> {
        self.write_long(Writer::commit)
    }

    /// Merges every segment (see [`Writer::compact`]).
    pub fn compact(&self) -> Result<u64> {
        self.write_long(Writer::compact)
    }

    /// [`Collection::write`] for calls that may take seconds (a checkpoint,
    /// a retrain): the working state is published first, so searches on
    /// other threads meanwhile read it without waiting for the writer.
    fn write_long<R>(&self, f: impl FnOnce(&mut Writer) -> Result<R>) -> Result<R> {
        self.write(|w| {
            if self.stale.swap(false, Ordering::AcqRel) {
                self.current.store(Arc::new(w.state().clone()));
            }
            f(w)
        })
    }

    fn writer(&self) -> Result<MutexGuard<'_, Writer>> {
        let w = self.writer.as_ref().ok_or_else(|| Error::ReadOnly {
            path: self.dir.clone(),
        })?;
        // A panic inside a writer call is caught at the API boundary; the
        // writer's state is then still consistent with its last commit or
        // queued change, so the lock is taken over.
        Ok(w.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Why the writer's last merge failed, if it did (its commit did not).
    pub fn merge_error(&self) -> Option<String> {
        let w = self.writer.as_ref()?;
        let w = w.lock().unwrap_or_else(|p| p.into_inner());
        w.merge_error().map(str::to_owned)
    }

    /// Whether the writer holds uncommitted changes (`false` for readers).
    pub fn has_changes(&self) -> bool {
        self.writer
            .as_ref()
            .is_some_and(|w| w.lock().unwrap_or_else(|p| p.into_inner()).has_changes())
    }

    /// The last committed generation's manifest.
    pub fn manifest(&self) -> Result<CollectionManifest> {
        if let Some(w) = &self.writer {
            return Ok(w
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .manifest()
                .clone());
        }
        let m = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        m.clone().ok_or_else(|| Error::CollectionNotFound {
            path: self.dir.clone(),
        })
    }

    /// Moves a reader to the newest committed generation; `true` if it
    /// moved. A writer always sees its own changes: `false`.
    pub fn refresh(&self) -> Result<bool> {
        if self.writer.is_some() {
            return Ok(false);
        }
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let newest = files::generations(&self.dir)?.last().copied();
        let have = loaded.as_ref().map(|m| m.generation);
        if newest.is_none() || newest == have {
            return Ok(false);
        }
        let base = loaded.as_ref().map(|m| (m, self.current.load_full()));
        let next = load_newest(&self.dir, base.as_ref().map(|(m, s)| (*m, &**s)), self.opts)?;
        if Some(next.manifest.generation) == have {
            return Ok(false);
        }
        self.current.store(next.state);
        *loaded = Some(next.manifest);
        Ok(true)
    }

    /// Top-k of one query over the live rows `filter` matches (all without
    /// one), with what each stage did (fresh rows count as rescored).
    pub fn search(
        &self,
        query: &[f32],
        params: &SearchParams,
        filter: Option<&Filter>,
    ) -> Result<(Vec<i64>, Vec<f32>, SearchStats)> {
        self.snapshot().search(query, params, filter)
    }

    /// Top-k of each row of `queries` over the live rows `filter` matches.
    pub fn search_batch(
        &self,
        queries: &[f32],
        params: &SearchParams,
        filter: Option<&Filter>,
    ) -> Result<BatchResult> {
        self.snapshot().search_batch(queries, params, filter)
    }
}

/// Loads the newest generation of `dir`, reusing `base` (a loaded
/// manifest and its state) where it can: only the log's new records when
/// just the log grew, the already mapped segments otherwise.
fn load_newest(
    dir: &Path,
    base: Option<(&CollectionManifest, &State)>,
    opts: LoadOptions,
) -> Result<Loaded> {
    let mut last_err = None;
    for _ in 0..LOAD_ATTEMPTS {
        let Some(&g) = files::generations(dir)?.last() else {
            return Err(Error::CollectionNotFound {
                path: dir.to_path_buf(),
            });
        };
        let attempt = CollectionManifest::read(dir, g).and_then(|m| {
            let state = match base {
                Some((old, s)) => match s.catch_up(dir, old, &m)? {
                    Some(s) => s,
                    None => State::load(dir, &m, &s.segments, opts)?,
                },
                None => State::load(dir, &m, &[], opts)?,
            };
            Ok(Loaded {
                manifest: m,
                state: Arc::new(state),
            })
        });
        match attempt {
            Ok(l) => return Ok(l),
            // The writer removed a file of this generation after publishing
            // a newer one: start over from the newest.
            Err(e) if is_missing(&e) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| Error::CollectionNotFound {
        path: dir.to_path_buf(),
    }))
}

fn is_missing(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        Error::IndexNotFound { .. } => true,
        _ => false,
    }
}
