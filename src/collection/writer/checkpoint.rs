//! Checkpoints, merges and retrains: how the writer turns fresh rows and
//! segments into new segments, and when (the size-tiered and retrain
//! policy). A checkpoint publishes one generation; whatever fails before
//! its manifest's rename leaves the last one intact.
use std::path::PathBuf;

use hashbrown::HashMap;

use super::super::attrs;
use super::super::calibrate::{calibrate_stack, MIN_ROWS};
use super::super::deletes;
use super::super::drift::Drift;
use super::super::files::{deletes_name, manifest_name, segment_name, wal_name};
use super::super::manifest::SegmentEntry;
use super::super::state::{Segment, State};
use super::super::wal::{self, WalWriter};
use super::{Loc, Writer};
use crate::core::calibrated::build_input;
use crate::core::Engine;
use crate::error::{Error, Result};
use crate::index::attributes::AttributesInput;
use crate::index::build::{build_on_partitions, BuildInput};
use crate::index::format::SectionKind;
use crate::index::partitions::UNKNOWN;
use crate::index::BuildConfig;

/// Segments of a size tier merged at once by default (size-tiered
/// merging, as Lucene's and Cassandra's): every row is rewritten about
/// `log_2(n / fresh rows)` times, and a query visits at most one segment
/// per tier. Measured on debian-minilm-384 ingested in batches of 1,000
/// (commit each): factor 4 left 6 segments at 60k rows, p50 100 us at
/// target 0.95 (single queries, one thread), 7.3k rows/s ingested;
/// factor 2 left 4 segments, p50 84 us, 6.5k rows/s.
pub(super) const MERGE_FACTOR: usize = 2;

/// A segment with more than this fraction of its rows deleted is rewritten.
const MAX_DELETED: f64 = 0.5;

/// Every segment is built on the partitions of the first (the base), so
/// a query routes once; once the live rows reach this many times the base's,
/// everything is rewritten on partitions trained anew (k-means sized for
/// the rows, and a new calibration). Rows are rewritten by retrains about
/// `1 + 1/4 + 1/16 + ... = 4/3` times in all.
const RETRAIN_GROWTH: f64 = 4.0;

/// The stack's recall calibration (`collection::calibrate`) is measured
/// again when its live rows have grown this many times since the last
/// measurement (once or twice between retrains). Debian ingested in
/// batches of 1,000 with a commit each: 4,955 rows/s at 1.5 (target 5,000),
/// 5,429 at 1.75; p99 on a reader while ingesting 1.33x and 1.37x the
/// static index's.
const RECALIBRATE_GROWTH: f64 = 1.75;

/// What a checkpoint rewrites besides the fresh rows.
pub(super) enum Rewrite {
    /// These segments (none: only the fresh rows), on the base's partitions.
    Segments(Vec<u64>),
    /// Every segment, on new partitions.
    Retrain,
}

impl Writer {
    /// Merges everything into one segment (queued changes included):
    /// deleted rows are dropped and partitions re-trained on the merged
    /// rows. Returns the generation published.
    pub fn compact(&mut self) -> Result<u64> {
        self.commit()?;
        let segs = &self.work.segments;
        let deleted = segs.iter().any(|s| s.deleted() > 0);
        if segs.len() > 1 || deleted || !self.work.fresh.is_empty() {
            self.checkpoint(Rewrite::Retrain)?;
        }
        Ok(self.manifest.generation)
    }

    /// Rewrites segments while the policy asks for it: everything, on new
    /// partitions, once the rows have grown [`RETRAIN_GROWTH`] times past
    /// those the partitions were trained on (or the new rows drifted away
    /// from them, or the base segment is mostly deleted); else the smallest
    /// size tier of the other segments holding `merge_factor` of them, and
    /// any segment more than [`MAX_DELETED`] deleted.
    pub(super) fn merge_by_policy(&mut self) -> Result<()> {
        let base = self.fresh_limit() as f64;
        let factor = self.merge_factor();
        loop {
            let segs = &self.work.segments;
            let Some(first) = segs.first() else {
                return Ok(());
            };
            let mostly_deleted = |s: &Segment| s.deleted() as f64 > MAX_DELETED * s.rows() as f64;
            let grown = self.work.len() as f64 >= RETRAIN_GROWTH * first.rows() as f64;
            if grown || self.drifted || mostly_deleted(first) {
                self.checkpoint(Rewrite::Retrain)?;
                continue;
            }
            let tier = |s: &Segment| {
                let r = s.live().max(1) as f64 / base;
                if r < 1.0 {
                    0
                } else {
                    (r.ln() / (factor as f64).ln()).floor() as usize
                }
            };
            let mut tiers: HashMap<usize, Vec<u64>> = HashMap::new();
            for s in &segs[1..] {
                tiers.entry(tier(s)).or_default().push(s.no);
            }
            let mut merge = tiers
                .iter()
                .filter(|(_, v)| v.len() >= factor)
                .min_by_key(|(t, _)| **t)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            for s in &segs[1..] {
                if mostly_deleted(s) && !merge.contains(&s.no) {
                    merge.push(s.no);
                }
            }
            if merge.is_empty() {
                return Ok(());
            }
            self.checkpoint(Rewrite::Segments(merge))?;
        }
    }

    /// Writes the fresh rows and the live rows of the segments `what`
    /// rewrites into one new segment, new deletion files for the segments
    /// kept that have unpersisted deletions, and a new empty log; publishes
    /// them as one generation. The new segment is built on the partitions
    /// of the first segment kept; when none is kept (a retrain, or the
    /// first checkpoint), it trains its own, is calibrated, and comes first.
    pub(super) fn checkpoint(&mut self, what: Rewrite) -> Result<()> {
        let dim = self.work.dim;
        let mut m = self.manifest.clone();
        let next = std::cell::Cell::new(m.next_file);
        let number = || {
            next.set(next.get() + 1);
            next.get() - 1
        };
        let rewritten = |s: &Segment| match &what {
            Rewrite::Retrain => true,
            Rewrite::Segments(list) => list.contains(&s.no),
        };
        let mut written: Vec<PathBuf> = Vec::new();
        let result = (|| {
            let mut kept = Vec::new();
            let (mut ids, mut rows) = (self.work.fresh.ids.clone(), self.work.fresh.rows.clone());
            // Each row's partition on the base's centroids where known: the
            // rows of a rewritten segment keep theirs (a merge compares only
            // the fresh rows with the centroids); a retrain finds all anew.
            let base_centroids = match what {
                Rewrite::Retrain => None,
                Rewrite::Segments(_) => self.work.segments.first().map(centroids_of),
            };
            let mut known = vec![UNKNOWN; ids.len()];
            // The rows' attributes, row for row (`None`: the collection has none).
            let schema = &self.work.schema;
            let mut attrs = (!schema.is_empty()).then(|| {
                (self.work.fresh.attrs.clone()).unwrap_or_else(|| AttributesInput::empty(schema))
            });
            for s in &self.work.segments {
                if rewritten(s) {
                    let live = live_rows(s, dim, &mut ids, &mut rows);
                    match base_centroids {
                        Some(c) if centroids_of(s) == c => known.extend(partitions_of(s, &live)),
                        _ => known.resize(ids.len(), UNKNOWN),
                    }
                    if let Some(a) = &mut attrs {
                        let values = attrs::segment_values(&s.engine).ok_or_else(|| {
                            Error::corrupt(s.engine.file().path(), "segment has no attributes")
                        })?;
                        a.extend(&values.select(&live))
                            .map_err(|r| Error::corrupt(s.engine.file().path(), r))?;
                    }
                    continue;
                }
                let mut s = s.clone();
                if s.dirty() {
                    let no = number();
                    let path = self.dir.join(deletes_name(no));
                    written.push(path.clone());
                    if let Some(mask) = s.mask.as_deref() {
                        deletes::write(&path, mask)?;
                    }
                    s.persisted = (Some(no), s.deleted() as u64);
                }
                kept.push(s);
            }
            // Rows in id order: a segment's file (and a retrain's partitions
            // and calibration) then depend only on which rows are live, not
            // on the history that put them where they are; a compacted
            // collection is the file `build_index` makes of its rows in id
            // order.
            let (ids, rows, order) = by_id(ids, rows, dim);
            if let Some(order) = &order {
                known = order.iter().map(|&i| known[i]).collect();
            }
            let attrs = match (attrs, order) {
                (Some(a), Some(order)) => Some(a.select(&order)),
                (a, _) => a,
            };
            let mut drifted = false;
            if !ids.is_empty() {
                let no = number();
                let path = self.dir.join(segment_name(no));
                written.push(path.clone());
                let cfg = &m.config.segment;
                let input = BuildInput::new(&rows, dim)
                    .ids(Some(&ids))
                    .attributes(attrs.as_ref());
                match kept.first() {
                    Some(base) => {
                        let centroids: &[f32] = base.engine.file().section(SectionKind::Centroid);
                        if matches!(what, Rewrite::Segments(ref l) if l.is_empty()) {
                            drifted = self.drift.drifted(&rows, centroids);
                        }
                        let input = input.known(Some(&known));
                        build_on_partitions(&path, input, m.metric, cfg, centroids)?;
                    }
                    None => {
                        // Without spilled entries, like every segment: the
                        // base is calibrated alone, but queries read it in
                        // a stack, which scans none (blueprint 10.3).
                        let cfg = BuildConfig {
                            spill: false,
                            ..cfg.clone()
                        };
                        build_input(&path, input, m.metric, &cfg, &mut ())?;
                    }
                }
                let seg = Segment {
                    no,
                    engine: Engine::open(&path, self.opts)?,
                    mask: None,
                    persisted: (None, 0),
                };
                // A base comes first (nothing was kept), a delta last.
                kept.push(seg);
            }
            // A new base is calibrated on its own rows; a stack that has
            // grown enough since it was last measured is measured again.
            let live: u64 = kept.iter().map(|s| s.live() as u64).sum();
            let new_base = kept
                .first()
                .is_some_and(|b| !self.work.segments.iter().any(|o| o.no == b.no));
            if new_base || kept.len() < 2 {
                m.calibration = None;
                m.calibrated_rows = live;
            } else if live as f64 >= RECALIBRATE_GROWTH * m.calibrated_rows.max(1) as f64
                && live as usize >= MIN_ROWS
            {
                let stack = State::of(dim, m.metric, kept.clone());
                m.calibration = calibrate_stack(&stack)?;
                m.calibrated_rows = live;
            }
            let wal_no = number();
            let wal_path = self.dir.join(wal_name(wal_no));
            written.push(wal_path.clone());
            wal::create(&wal_path, dim)?;
            m.generation += 1;
            m.segments = kept
                .iter()
                .map(|s| SegmentEntry {
                    no: s.no,
                    rows: s.rows() as u64,
                    deletes: s.persisted.0,
                    deleted: s.persisted.1,
                })
                .collect();
            m.wal = wal_no;
            m.wal_len = wal::HEADER_LEN;
            m.next_file = next.get();
            m.next_id = self.next_id;
            m.attributes = self.work.schema.clone();
            self.publish(&m)?;
            let wal = WalWriter::open(&wal_path, wal::HEADER_LEN)?;
            Ok((kept, wal, drifted))
        })();
        let (kept, wal, drifted) = match result {
            Ok(v) => v,
            Err(e) => {
                if !self.dir.join(manifest_name(m.generation)).exists() {
                    for p in &written {
                        let _ = std::fs::remove_file(p);
                    }
                }
                return Err(e);
            }
        };
        self.manifest = m;
        self.wal = wal;
        self.queue.clear();
        self.drifted = drifted;
        if let Some(s) = kept
            .last()
            .filter(|s| !self.work.segments.iter().any(|o| o.no == s.no))
        {
            let stored: &[i64] = s.engine.file().section(SectionKind::Ids);
            for (row, &id) in stored.iter().enumerate() {
                self.ids.insert(
                    id,
                    Loc::Segment {
                        no: s.no,
                        row: row as u32,
                    },
                );
            }
            if kept.len() == 1 {
                // New partitions: the drift reference follows them.
                self.drift = Drift::of(s);
            }
        }
        self.work.segments = kept;
        let rows = self.manifest.calibrated_rows as usize;
        self.work.calibration =
            (self.manifest.calibration.clone()).map(|c| (std::sync::Arc::new(c), rows));
        self.work.fresh = Default::default();
        self.work.generation = self.manifest.generation;
        self.collect_garbage();
        Ok(())
    }
}

/// Appends the live rows of segment `s` (as stored: unit length for
/// cosine) and their ids; returns their stored row numbers.
fn live_rows(s: &Segment, dim: usize, ids: &mut Vec<i64>, rows: &mut Vec<f32>) -> Vec<usize> {
    let stored_ids: &[i64] = s.engine.file().section(SectionKind::Ids);
    let vectors: &[f32] = s.engine.file().section(SectionKind::Vectors);
    let mut live = Vec::with_capacity(s.live());
    for (row, &id) in stored_ids.iter().enumerate() {
        if s.mask.as_ref().is_none_or(|mk| mk.get(row)) {
            ids.push(id);
            rows.extend_from_slice(&vectors[row * dim..(row + 1) * dim]);
            live.push(row);
        }
    }
    live
}

/// The partition centroids segment `s` was built on.
fn centroids_of(s: &Segment) -> &[f32] {
    s.engine.file().section(SectionKind::Centroid)
}

/// The partition of each of `rows` (stored row numbers of `s`, ascending).
fn partitions_of(s: &Segment, rows: &[usize]) -> Vec<u32> {
    let offsets = s.engine.file().offsets();
    let mut p = 0;
    rows.iter()
        .map(|&r| {
            while offsets[p + 1] <= r as u64 {
                p += 1;
            }
            p as u32
        })
        .collect()
}

/// `ids` and their rows (`dim` each), reordered by ascending id, and the
/// order taken (`None`: they already were).
fn by_id(ids: Vec<i64>, rows: Vec<f32>, dim: usize) -> (Vec<i64>, Vec<f32>, Option<Vec<usize>>) {
    if ids.windows(2).all(|w| w[0] < w[1]) {
        return (ids, rows, None);
    }
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_unstable_by_key(|&i| ids[i]);
    let sorted_rows = order
        .iter()
        .flat_map(|&i| &rows[i * dim..(i + 1) * dim])
        .copied()
        .collect();
    (
        order.iter().map(|&i| ids[i]).collect(),
        sorted_rows,
        Some(order),
    )
}
