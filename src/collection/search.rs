//! The search side of [`State`] (a second `impl State`: filters, the
//! stacked search of the segments, the fresh rows, the merge).
//!
//! A query runs over every segment (deleted rows masked inside Tier1),
//! scores the fresh rows exactly, and merges the per-part top-k.
use std::sync::Arc;

use rayon::prelude::*;

use super::attrs::FreshIndex;
use super::state::State;
use crate::core::engine::{BatchResult, SearchStats};
use crate::core::query::PreparedQuery;
use crate::core::topk::TopK;
use crate::core::{search_batch_parts, search_parts, Filter, Part, RowMask, SearchParams};
use crate::error::{Error, Result};
use crate::index::Calibration;
use crate::pool;

/// Fresh rows scored per kernel call (their scores stay on the stack).
const FRESH_BLOCK: usize = 64;

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
    /// without one): `(ids, scores, what each stage did)`, best first, `min(k, matching rows)`
    /// long; scores as `Engine::search` returns them. The segments are
    /// searched as one stack (one routing, one pool of survivors); the
    /// fresh rows exactly; the two merged.
    pub fn search(
        &self,
        query: &[f32],
        params: &SearchParams,
        filter: Option<&Filter>,
    ) -> Result<(Vec<i64>, Vec<f32>, SearchStats)> {
        params.validate()?;
        let matching = self.matching(filter)?;
        let parts = self.parts_of(matching.as_ref());
        if self.fresh.is_empty() && !self.segments.is_empty() {
            // The stack's search checks the query itself.
            return search_parts(&parts, query, params, self.stack_calibration());
        }
        let mut q = PreparedQuery::default();
        q.check(query, self.dim, self.metric)?;
        let fresh_mask = matching.as_ref().map(|m| &m.fresh);
        let mut all = self.fresh_top(&q.q, params.k, fresh_mask);
        // Fresh rows are scored exactly: counted as rescored.
        let mut stats = SearchStats {
            rescored: fresh_mask.map_or(self.fresh.len(), RowMask::allowed),
            ..SearchStats::default()
        };
        if !self.segments.is_empty() {
            let (ids, scores, st) = search_parts(&parts, query, params, self.stack_calibration())?;
            all.extend(self.internal(&ids, &scores));
            stats.probed = st.probed;
            stats.scanned = st.scanned;
            stats.survivors = st.survivors;
            stats.rescored += st.rescored;
        }
        let (ids, scores) = self.merged(all, params.k);
        Ok((ids, scores, stats))
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
        if self.metric.is_distance() || allowed.is_some() {
            for (i, row) in f.rows.chunks_exact(self.dim).enumerate() {
                if allowed.is_none_or(|m| m.get(i)) {
                    top.push(self.metric.score(&self.kernels, q, row), i as u32);
                }
            }
        } else {
            // Inner products several rows per pass over the query (up to
            // 682 fresh rows at 384-d between checkpoints).
            let mut dots = [0.0f32; FRESH_BLOCK];
            for (b, rows) in f.rows.chunks(FRESH_BLOCK * self.dim).enumerate() {
                let dots = &mut dots[..rows.len() / self.dim];
                (self.kernels.dot_rows)(q, rows, dots);
                for (i, &d) in dots.iter().enumerate() {
                    top.push(d, (b * FRESH_BLOCK + i) as u32);
                }
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
