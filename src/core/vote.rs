//! Stage 3: segment voting. Each dimension segment votes for the rows in
//! its own top `vote_top`; rows that Tier1's total estimate left out but
//! that collect `min_votes` votes are added to the survivors. Counting uses
//! a `hashbrown` map reused across queries. A rescued row is estimated
//! against its own partition's anchor.
use super::engine::View;
use super::params::SearchParams;
use super::query::PreparedQuery;
use super::tier1::estimate_row;
use super::topk::{Scored, TopK};

/// Appends the rows rescued by voting to `ranked` (the survivors, best
/// first) and returns how many were added.
pub fn rescue(
    view: &View<'_>,
    q: &PreparedQuery,
    params: &SearchParams,
    segment_top: &mut [TopK],
    votes: &mut hashbrown::HashMap<u32, u32>,
    ranked: &mut Vec<Scored>,
    seg_buf: &mut Vec<Scored>,
) -> usize {
    votes.clear();
    for seg in segment_top.iter_mut() {
        seg.drain_sorted(seg_buf);
        for s in seg_buf.iter() {
            *votes.entry(s.row).or_insert(0) += 1;
        }
    }
    for s in ranked.iter() {
        votes.remove(&s.row);
    }
    let before = ranked.len();
    for (&row, &n) in votes.iter() {
        if n as usize >= params.min_votes {
            let probe = view.probe_of(q, view.partition_of(row as usize));
            let est = estimate_row(view, q, &probe, params, row as usize);
            ranked.push(Scored { score: est, row });
        }
    }
    let added = ranked.len() - before;
    if added > 0 {
        ranked.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
    }
    added
}
