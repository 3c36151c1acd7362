//! [`State`]: the rows of one generation (or of the writer's uncommitted
//! changes): segments with their live-row masks, and the fresh rows added
//! since the last checkpoint. Immutable once published (shared through
//! `Arc`); changes build a new one, copying only what they touch.
//!
//! Searching a state ([`State::search`], [`State::search_batch`]) is in
//! `collection::search`.
use std::path::Path;
use std::sync::{Arc, OnceLock};

use hashbrown::HashMap;

use super::attrs::FreshIndex;
use super::deletes;
use super::files::{deletes_name, segment_name, wal_name};
use super::manifest::CollectionManifest;
use super::wal::{self, Record};
use crate::core::{Engine, RowMask};
use crate::error::{Error, Result};
use crate::index::attributes::{AttrType, AttributesInput};
use crate::index::{Calibration, LoadOptions, Metric};
use crate::math::Kernels;

/// One segment file and which of its rows are live.
#[derive(Clone)]
pub struct Segment {
    /// File number (`seg-{no}.svve`).
    pub no: u64,
    /// The mapped segment.
    pub engine: Engine,
    /// Live rows (`None`: all of them).
    pub mask: Option<Arc<RowMask>>,
    /// The deletion file on disk and the rows it deletes (`(None, 0)`: none).
    pub persisted: (Option<u64>, u64),
}

impl Segment {
    /// Rows in the file.
    pub fn rows(&self) -> usize {
        self.engine.len()
    }

    /// Rows not deleted.
    pub fn live(&self) -> usize {
        self.mask.as_ref().map_or(self.rows(), |m| m.allowed())
    }

    /// Rows deleted.
    pub fn deleted(&self) -> usize {
        self.rows() - self.live()
    }

    /// Deletes stored row `row`; returns whether it was live.
    pub fn delete(&mut self, row: usize) -> bool {
        let rows = self.rows();
        let mask = self
            .mask
            .get_or_insert_with(|| Arc::new(RowMask::all(rows)));
        Arc::make_mut(mask).clear(row)
    }

    /// Whether deletions happened since the deletion file was written.
    pub fn dirty(&self) -> bool {
        self.deleted() as u64 != self.persisted.1
    }

    /// The mask a search needs (`None` when nothing is deleted).
    pub(super) fn search_mask(&self) -> Option<&RowMask> {
        self.mask.as_deref().filter(|m| m.allowed() < m.len())
    }
}

/// Rows added since the last checkpoint, searched exactly.
#[derive(Clone, Default)]
pub struct Fresh {
    /// Ids, in insertion order (with holes filled by later rows).
    pub ids: Vec<i64>,
    /// Prepared rows (unit length for cosine), `ids.len() x dim`.
    pub rows: Vec<f32>,
    /// Their attributes, row for row (`None`: the collection has none).
    pub attrs: Option<AttributesInput>,
    /// Position of each id.
    pos: HashMap<i64, usize>,
    /// The attribute index filters read, built on first use.
    pub(super) index: OnceLock<Arc<FreshIndex>>,
}

impl Fresh {
    /// Rows held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether `id` is here.
    pub fn contains(&self, id: i64) -> bool {
        self.pos.contains_key(&id)
    }

    fn add(
        &mut self,
        ids: &[i64],
        rows: &[f32],
        attrs: Option<&AttributesInput>,
    ) -> Result<(), String> {
        if let Some(a) = attrs {
            match &mut self.attrs {
                Some(mine) => mine.extend(a)?,
                None if self.ids.is_empty() => self.attrs = Some(a.clone()),
                None => return Err("a record adds attributes to rows without them".into()),
            }
        } else if self.attrs.is_some() {
            return Err("a record adds rows without the collection's attributes".into());
        }
        for (i, &id) in ids.iter().enumerate() {
            self.pos.insert(id, self.ids.len() + i);
        }
        self.ids.extend_from_slice(ids);
        self.rows.extend_from_slice(rows);
        self.index = OnceLock::new();
        Ok(())
    }

    /// Removes `id` (the last row takes its place); returns whether it was here.
    fn remove(&mut self, id: i64, dim: usize) -> bool {
        let Some(i) = self.pos.remove(&id) else {
            return false;
        };
        let last = self.ids.len() - 1;
        if i != last {
            self.ids[i] = self.ids[last];
            self.rows.copy_within(last * dim..(last + 1) * dim, i * dim);
            self.pos.insert(self.ids[i], i);
        }
        self.ids.truncate(last);
        self.rows.truncate(last * dim);
        if let Some(a) = &mut self.attrs {
            // The same move: row `last` takes row `i`'s place.
            let order: Vec<usize> = (0..last).map(|r| if r == i { last } else { r }).collect();
            *a = a.select(&order);
        }
        self.index = OnceLock::new();
        true
    }
}

/// The rows of a collection at one point in time.
#[derive(Clone)]
pub struct State {
    /// Dimensions per vector.
    pub dim: usize,
    /// The collection's metric.
    pub metric: Metric,
    /// The generation this state is (or, for the writer, starts from).
    pub generation: u64,
    /// Segments, oldest first.
    pub segments: Vec<Segment>,
    /// Rows not yet in a segment.
    pub fresh: Arc<Fresh>,
    /// The stack's own calibration (`collection::calibrate`) and the rows
    /// it was measured on; else the base segment's serves.
    pub calibration: Option<(Arc<Calibration>, usize)>,
    /// The attribute columns every row has (empty: none).
    pub schema: Vec<(String, AttrType)>,
    pub(super) kernels: Kernels,
}

impl State {
    /// The rows of `m`, read from `dir`. Segments already open in `known`
    /// (by file number) are reused rather than mapped again.
    pub fn load(
        dir: &Path,
        m: &CollectionManifest,
        known: &[Segment],
        opts: LoadOptions,
    ) -> Result<Self> {
        let mut segments = Vec::with_capacity(m.segments.len());
        for e in &m.segments {
            let engine = match known.iter().find(|s| s.no == e.no) {
                Some(s) => s.engine.clone(),
                None => Engine::open(&dir.join(segment_name(e.no)), opts)?,
            };
            let path = dir.join(segment_name(e.no));
            if engine.len() as u64 != e.rows || engine.dim() as u64 != m.dim {
                return Err(Error::corrupt(
                    &path,
                    "segment shape differs from the manifest",
                ));
            }
            if engine.file().metric() != m.metric {
                return Err(Error::corrupt(
                    &path,
                    "segment metric differs from the manifest",
                ));
            }
            let mask = match e.deletes {
                Some(d) => {
                    let mask = deletes::read(
                        &dir.join(deletes_name(d)),
                        e.rows as usize,
                        e.deleted as usize,
                    )?;
                    Some(Arc::new(mask))
                }
                None => None,
            };
            segments.push(Segment {
                no: e.no,
                engine,
                mask,
                persisted: (e.deletes, e.deleted),
            });
        }
        let mut state = State::of(m.dim as usize, m.metric, segments);
        state.generation = m.generation;
        state.schema = m.attributes.clone();
        state.calibration = m
            .calibration
            .clone()
            .map(|c| (Arc::new(c), m.calibrated_rows as usize));
        state.replay(dir, m, wal::HEADER_LEN)?;
        Ok(state)
    }

    /// `segments` (the first one the base) without fresh rows.
    pub fn of(dim: usize, metric: Metric, segments: Vec<Segment>) -> Self {
        State {
            dim,
            metric,
            generation: 0,
            segments,
            fresh: Arc::new(Fresh::default()),
            calibration: None,
            schema: Vec::new(),
            kernels: Kernels::detect(),
        }
    }

    /// This state moved to generation `m`, when `m` differs from it only by
    /// more of the same log (`old`: this state's manifest); `None` when a
    /// full [`State::load`] is needed.
    pub fn catch_up(
        &self,
        dir: &Path,
        old: &CollectionManifest,
        m: &CollectionManifest,
    ) -> Result<Option<Self>> {
        if old.segments != m.segments || old.wal != m.wal || old.wal_len > m.wal_len {
            return Ok(None);
        }
        let mut state = self.clone();
        state.generation = m.generation;
        state.replay(dir, m, old.wal_len)?;
        Ok(Some(state))
    }

    /// Applies the log of `m` from byte `from` to its committed length.
    fn replay(&mut self, dir: &Path, m: &CollectionManifest, from: u64) -> Result<()> {
        if m.wal_len <= from {
            return Ok(());
        }
        let path = dir.join(wal_name(m.wal));
        for r in wal::read(&path, self.dim, from, m.wal_len)? {
            self.apply(&r).map_err(|why| Error::corrupt(&path, why))?;
        }
        Ok(())
    }

    /// Applies one logged change.
    pub fn apply(&mut self, r: &Record) -> Result<(), String> {
        match r {
            Record::Add {
                ids,
                rows,
                attributes,
            } => {
                if ids.iter().any(|id| self.fresh.contains(*id)) {
                    return Err("a record adds an id that is already there".into());
                }
                if let Some(a) = attributes {
                    if self.schema.is_empty() {
                        self.schema = a.schema();
                    }
                }
                Arc::make_mut(&mut self.fresh).add(ids, rows, attributes.as_ref())?;
            }
            Record::DeleteRows { segment, rows } => {
                // A segment merged away since the record was logged had
                // its deletions applied by the merge.
                if let Some(s) = self.segments.iter_mut().find(|s| s.no == *segment) {
                    for &row in rows {
                        if row as usize >= s.rows() {
                            return Err("a record deletes a row past the segment's end".into());
                        }
                        s.delete(row as usize);
                    }
                }
            }
            Record::DeleteFresh { ids } => {
                let dim = self.dim;
                let fresh = Arc::make_mut(&mut self.fresh);
                for &id in ids {
                    fresh.remove(id, dim);
                }
            }
        }
        Ok(())
    }

    /// Live rows.
    pub fn len(&self) -> usize {
        self.segments.iter().map(Segment::live).sum::<usize>() + self.fresh.len()
    }

    /// True without live rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
