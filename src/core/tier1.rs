//! Stage 2: the Tier1 scan. Streams the 1-bit codes block by block through a
//! popcount kernel and keeps the best `candidates` rows by their estimated
//! score; with voting on, also the best rows of each dimension segment.
use super::engine::View;
use super::params::{SearchParams, Tier1Mode};
use super::query::{PreparedQuery, Probe};
use super::topk::TopK;
use crate::index::Metric;
use crate::math::bits::{word_of, BLOCK};

/// Rows per kernel call (a multiple of the code block): its output stays in L1.
const CHUNK_ROWS: usize = 256;

/// Block-aligned row ranges `(r0, r1)` of at most [`CHUNK_ROWS`] rows that
/// cover rows `start..end`. The kernels work on whole blocks of
/// [`BLOCK`] rows; rows outside `start..end` are computed and ignored.
fn block_chunks(start: usize, end: usize) -> impl Iterator<Item = (usize, usize)> {
    let (first, last) = (start / BLOCK * BLOCK, end.div_ceil(BLOCK) * BLOCK);
    (first..last)
        .step_by(CHUNK_ROWS)
        .map(move |r0| (r0, (r0 + CHUNK_ROWS).min(last)))
}

/// Weight of the estimated inner product in a row's score: 1 for ip and
/// cosine, 2 for l2 (`-||q - x||^2 = ... + 2 <q - mu, x - mu>`).
pub fn estimate_weight(metric: Metric) -> f32 {
    match metric {
        Metric::Cosine | Metric::Ip => 1.0,
        Metric::L2 => 2.0,
    }
}

/// Segments actually used and words per segment, for `words` code words.
pub fn segment_layout(words: usize, segments: usize) -> (usize, usize) {
    let seg_words = words.div_ceil(segments.clamp(1, words.max(1)));
    (words.div_ceil(seg_words), seg_words)
}

/// Outputs of a scan over a range of rows.
pub struct ScanOut<'s> {
    /// Kernel output buffer (reused).
    pub block: &'s mut Vec<u32>,
    /// Estimates of one block (reused).
    pub est: &'s mut Vec<f32>,
    /// Best rows by total estimate.
    pub survivors: &'s mut TopK,
    /// Best rows per segment; empty when voting is off.
    pub segment_top: &'s mut [TopK],
}

/// Scans the rows of `probe`'s partition into `out`.
pub fn scan(
    view: &View<'_>,
    q: &PreparedQuery,
    probe: &Probe,
    params: &SearchParams,
    out: ScanOut<'_>,
) {
    let (start, end) = view.rows_of(probe.partition);
    match params.tier1 {
        Tier1Mode::Asymmetric => scan_asymmetric(view, q, probe, params, start, end, out),
        Tier1Mode::Hamming => scan_hamming(view, q, start, end, out),
    }
}

fn scan_asymmetric(
    view: &View<'_>,
    q: &PreparedQuery,
    probe: &Probe,
    params: &SearchParams,
    start: usize,
    end: usize,
    out: ScanOut<'_>,
) {
    let (nseg, seg_words) = segment_layout(view.words, params.segments);
    let g = estimate_weight(view.metric);
    let bits = usize::from(params.query_bits);
    let voting = !out.segment_top.is_empty();
    out.block.resize(2 * nseg * CHUNK_ROWS, 0);
    for (r0, r1) in block_chunks(start, end) {
        // Blocked codes of rows r0..r1 (block-aligned) are contiguous.
        let codes = &view.codes[r0 * view.words..r1 * view.words];
        let block = &mut out.block[..2 * nseg * (r1 - r0)];
        (view.kernels.plane_scan)(codes, view.words, &q.planes.planes, bits, seg_words, block);
        let (b0, b1) = (r0.max(start), r1.min(end));
        let block = &block[2 * nseg * (b0 - r0)..2 * nseg * (b1 - r0)];
        if voting {
            score_block_voting(
                view,
                q,
                probe.offset,
                g,
                b0,
                block,
                nseg,
                out.survivors,
                out.segment_top,
            );
        } else {
            score_block(view, q, probe.offset, g, b0, block, out.est, out.survivors);
        }
    }
}

/// One segment: estimates in a branch-free loop the compiler vectorises,
/// then a filter that rarely pushes.
#[allow(clippy::too_many_arguments)]
fn score_block(
    view: &View<'_>,
    q: &PreparedQuery,
    offset: f32,
    g: f32,
    b0: usize,
    block: &[u32],
    est: &mut Vec<f32>,
    survivors: &mut TopK,
) {
    let n = block.len() / 2;
    let (level_sum, dims) = q.planes.seg_sums[0];
    let (lo2, d2) = (2.0 * q.planes.lo, 2.0 * q.planes.delta);
    let all = q.planes.lo * dims as f32 + q.planes.delta * level_sum as f32;
    est.clear();
    est.extend(
        block
            .chunks_exact(2)
            .zip(&view.scale[b0..b0 + n])
            .zip(&view.bias[b0..b0 + n])
            .map(|((p, &a), &b)| offset + b + g * a * (lo2 * p[1] as f32 + d2 * p[0] as f32 - all)),
    );
    let mut threshold = survivors.threshold();
    for (i, &e) in est.iter().enumerate() {
        if e > threshold {
            survivors.push(e, (b0 + i) as u32);
            threshold = survivors.threshold();
        }
    }
}

/// Several segments: per-segment partial estimates also feed the votes.
#[allow(clippy::too_many_arguments)]
fn score_block_voting(
    view: &View<'_>,
    q: &PreparedQuery,
    offset: f32,
    g: f32,
    b0: usize,
    block: &[u32],
    nseg: usize,
    survivors: &mut TopK,
    segment_top: &mut [TopK],
) {
    for (i, pairs) in block.chunks_exact(2 * nseg).enumerate() {
        let row = b0 + i;
        let scale = view.scale[row];
        let mut t = 0.0f32;
        for (s, p) in pairs.chunks_exact(2).enumerate() {
            let part = q.planes.signed_dot(s, p[0], p[1]);
            t += part;
            segment_top[s].push(scale * part, row as u32);
        }
        let est = offset + view.bias[row] + g * scale * t;
        if est > survivors.threshold() {
            survivors.push(est, row as u32);
        }
    }
}

fn scan_hamming(view: &View<'_>, q: &PreparedQuery, start: usize, end: usize, out: ScanOut<'_>) {
    out.block.resize(CHUNK_ROWS, 0);
    for (r0, r1) in block_chunks(start, end) {
        let codes = &view.codes[r0 * view.words..r1 * view.words];
        let block = &mut out.block[..r1 - r0];
        (view.kernels.hamming_scan)(codes, view.words, &q.sign, block);
        let (b0, b1) = (r0.max(start), r1.min(end));
        for (i, &h) in block[b0 - r0..b1 - r0].iter().enumerate() {
            // Hamming distances are comparable across partitions only
            // roughly; the baseline is meant for one partition.
            out.survivors.push(-(h as f32), (b0 + i) as u32);
        }
    }
}

/// The asymmetric estimate of one row (used for rows rescued by voting).
pub fn estimate_row(
    view: &View<'_>,
    q: &PreparedQuery,
    probe: &Probe,
    params: &SearchParams,
    row: usize,
) -> f32 {
    let (_, seg_words) = segment_layout(view.words, params.segments);
    let bits = usize::from(params.query_bits);
    let planes = &q.planes.planes;
    let mut t = 0.0f32;
    for (seg, start) in (0..view.words).step_by(seg_words).enumerate() {
        let (mut dot, mut pop) = (0u32, 0u32);
        for w in start..(start + seg_words).min(view.words) {
            let c = word_of(view.codes, view.words, row, w);
            pop += c.count_ones();
            for j in 0..bits {
                dot += (c & planes[j * view.words + w]).count_ones() << j;
            }
        }
        t += q.planes.signed_dot(seg, dot, pop);
    }
    probe.offset + view.bias[row] + estimate_weight(view.metric) * view.scale[row] * t
}
