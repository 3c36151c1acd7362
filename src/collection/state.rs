//! [`State`]: the rows of one generation (or of the writer's uncommitted
//! changes): segments with their live-row masks, and the fresh rows added
//! since the last checkpoint. Immutable once published (shared through
//! `Arc`); changes build a new one, copying only what they touch.
//!
//! A query runs over every segment (deleted rows masked inside Tier1),
//! scores the fresh rows exactly, and merges the per-part top-k.
use std::path::Path;
use std::sync::{Arc, OnceLock};

use hashbrown::HashMap;
use rayon::prelude::*;

use super::attrs::FreshIndex;
use super::deletes;
use super::files::{deletes_name, segment_name, wal_name};
use super::manifest::CollectionManifest;
use super::wal::{self, Record};
use crate::core::engine::BatchResult;
use crate::core::query::PreparedQuery;
use crate::core::topk::TopK;
use crate::core::{search_batch_parts, search_parts, Engine, Filter, Part, RowMask, SearchParams};
use crate::error::{Error, Result};
use crate::index::attributes::{AttrType, AttributesInput};
use crate::index::{Calibration, LoadOptions, Metric};
use crate::math::Kernels;
use crate::pool;

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
    fn search_mask(&self) -> Option<&RowMask> {
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
    index: OnceLock<Arc<FreshIndex>>,
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
    kernels: Kernels,
}

/// A filter evaluated on every part of a state: each segment's matching
/// live rows, and the fresh rows'.
struct Matching {
    segments: Vec<RowMask>,
    fresh: RowMask,
}

impl Matching {
    fn allowed(&self) -> usize {
        self.segments.iter().map(RowMask::allowed).sum::<usize>() + self.fresh.allowed()
    }
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

    /// The stack calibration with its rows, as the search takes it.
    fn stack_calibration(&self) -> Option<(&Calibration, usize)> {
        self.calibration.as_ref().map(|(c, rows)| (&**c, *rows))
    }

    /// The segments as the files of one stacked search (they share the
    /// base segment's partitions).
    pub fn parts(&self) -> Vec<Part<'_>> {
        self.segments
            .iter()
            .map(|s| Part {
                engine: &s.engine,
                mask: s.search_mask(),
                filtered: false,
            })
            .collect()
    }

    /// The fresh rows' attribute index, built once per state.
    fn fresh_index(&self) -> Result<Arc<FreshIndex>> {
        if let Some(ix) = self.fresh.index.get() {
            return Ok(ix.clone());
        }
        let f = &self.fresh;
        let ix = Arc::new(FreshIndex::of(&self.schema, &f.ids, f.attrs.as_ref())?);
        Ok(f.index.get_or_init(|| ix).clone())
    }

    /// `filter` evaluated on every part (`None` without a filter): the
    /// fresh rows' first, so a filter that does not fit the schema fails
    /// the same way whatever rows there are.
    fn matching(&self, filter: Option<&Filter>) -> Result<Option<Matching>> {
        let Some(f) = filter else {
            return Ok(None);
        };
        let fresh = f.mask_of(&self.fresh_index()?.source())?;
        let segments = self
            .segments
            .iter()
            .map(|s| {
                let mut m = f.mask(s.engine.file())?;
                if let Some(live) = s.search_mask() {
                    m.and_with(live);
                }
                Ok(m)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Matching { segments, fresh }))
    }

    /// The segments as [`State::parts`] does, their masks `matching`'s.
    fn parts_of<'a>(&'a self, matching: Option<&'a Matching>) -> Vec<Part<'a>> {
        match matching {
            None => self.parts(),
            Some(m) => self
                .segments
                .iter()
                .zip(&m.segments)
                .map(|(s, mask)| Part {
                    engine: &s.engine,
                    mask: Some(mask),
                    filtered: true,
                })
                .collect(),
        }
    }

    /// Top-k of one query over every live row `filter` matches (all
    /// without one): `(ids, scores)`, best first, `min(k, matching rows)`
    /// long; scores as `Engine::search` returns them. The segments are
    /// searched as one stack (one routing, one pool of survivors); the
    /// fresh rows exactly; the two merged.
    pub fn search(
        &self,
        query: &[f32],
        params: &SearchParams,
        filter: Option<&Filter>,
    ) -> Result<(Vec<i64>, Vec<f32>)> {
        params.validate()?;
        let matching = self.matching(filter)?;
        let parts = self.parts_of(matching.as_ref());
        if self.fresh.is_empty() && !self.segments.is_empty() {
            // The stack's search checks the query itself.
            let (ids, scores, _) = search_parts(&parts, query, params, self.stack_calibration())?;
            return Ok((ids, scores));
        }
        let mut q = PreparedQuery::default();
        q.check(query, self.dim, self.metric)?;
        let fresh_mask = matching.as_ref().map(|m| &m.fresh);
        let mut all = self.fresh_top(&q.q, params.k, fresh_mask);
        if !self.segments.is_empty() {
            let (ids, scores, _) = search_parts(&parts, query, params, self.stack_calibration())?;
            all.extend(self.internal(&ids, &scores));
        }
        Ok(self.merged(all, params.k))
    }

    /// Top-k of each row of `queries` (`b x dim`), like [`State::search`]
    /// (one filter for all of them, evaluated once).
    pub fn search_batch(
        &self,
        queries: &[f32],
        params: &SearchParams,
        filter: Option<&Filter>,
    ) -> Result<BatchResult> {
        params.validate()?;
        let dim = self.dim;
        if !queries.len().is_multiple_of(dim) {
            return Err(Error::DimensionMismatch {
                expected: dim,
                got: queries.len() % dim,
            });
        }
        let matching = self.matching(filter)?;
        let parts = self.parts_of(matching.as_ref());
        let stacked = match self.segments.is_empty() {
            true => None,
            false => Some(search_batch_parts(
                &parts,
                queries,
                params,
                self.stack_calibration(),
            )?),
        };
        if self.fresh.is_empty() {
            if let Some(r) = stacked {
                return Ok(r);
            }
        }
        let b = queries.len() / dim;
        let live = matching.as_ref().map_or(self.len(), Matching::allowed);
        let k = params.k.min(live);
        let fresh_mask = matching.as_ref().map(|m| &m.fresh);
        let per_query = |(i, q): (usize, &[f32])| -> Result<(Vec<i64>, Vec<f32>)> {
            let mut pq = PreparedQuery::default();
            pq.check(q, dim, self.metric).map_err(|e| at_row(e, i))?;
            let mut all = self.fresh_top(&pq.q, params.k, fresh_mask);
            if let Some(p) = &stacked {
                let r = i * p.k..(i + 1) * p.k;
                all.extend(self.internal(&p.ids[r.clone()], &p.scores[r]));
            }
            Ok(self.merged(all, params.k))
        };
        let rows: Vec<(Vec<i64>, Vec<f32>)> = pool::install(|| {
            queries
                .par_chunks_exact(dim)
                .enumerate()
                .map(per_query)
                .collect::<Result<_>>()
        })?;
        let mut out = BatchResult {
            k,
            ids: Vec::with_capacity(b * k),
            scores: Vec::with_capacity(b * k),
        };
        for (ids, scores) in rows {
            out.ids.extend(ids);
            out.scores.extend(scores);
        }
        Ok(out)
    }

    /// The best `k` fresh rows `allowed` allows (all: `None`) for prepared
    /// query `q`, as `(internal score, id)`.
    fn fresh_top(&self, q: &[f32], k: usize, allowed: Option<&RowMask>) -> Vec<(f32, i64)> {
        let f = &self.fresh;
        if f.is_empty() {
            return Vec::new();
        }
        let mut top = TopK::default();
        top.reset(k.min(f.len()));
        for (i, row) in f.rows.chunks_exact(self.dim).enumerate() {
            if allowed.is_none_or(|m| m.get(i)) {
                top.push(self.metric.score(&self.kernels, q, row), i as u32);
            }
        }
        let mut best = Vec::new();
        top.drain_sorted(&mut best);
        best.iter()
            .map(|s| (s.score, f.ids[s.row as usize]))
            .collect()
    }

    /// User-facing scores back to internal ones (higher is better).
    fn internal<'a>(
        &self,
        ids: &'a [i64],
        scores: &'a [f32],
    ) -> impl Iterator<Item = (f32, i64)> + 'a {
        let flip = self.metric.is_distance();
        ids.iter()
            .zip(scores)
            .map(move |(&id, &s)| (if flip { -s } else { s }, id))
    }

    /// The best `k` of `all`, as user-facing `(ids, scores)`.
    fn merged(&self, mut all: Vec<(f32, i64)>, k: usize) -> (Vec<i64>, Vec<f32>) {
        all.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.truncate(k);
        let flip = self.metric.is_distance();
        all.into_iter()
            .map(|(s, id)| (id, if flip { -s } else { s }))
            .unzip()
    }
}

/// Puts the query's row number into errors that describe its values.
fn at_row(e: Error, row: usize) -> Error {
    match e {
        Error::NonFinite { what, col, .. } => Error::NonFinite { what, row, col },
        other => other,
    }
}
