//! Stage 2: the Tier1 scan. Streams the 1-bit codes block by block through a
//! popcount kernel and keeps the best `candidates` rows by their estimated
//! score; with voting on, also the best rows of each dimension segment.
use super::engine::View;
use super::params::{SearchParams, Tier1Mode};
use super::query::{PreparedQuery, Probe};
use super::topk::TopK;
use crate::index::Metric;
use crate::math::bits::{word_of, BLOCK};
use crate::math::estimate::EstimateParams;

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
    /// Estimates of one chunk of rows (reused).
    pub est: &'s mut Vec<f32>,
    /// Per block of a chunk: rows whose estimate beat the threshold (reused).
    pub mask: &'s mut Vec<u8>,
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
    if !out.segment_top.is_empty() {
        return scan_voting(view, q, probe, params, start, end, out);
    }
    let n = view.scale.len();
    let bits = usize::from(params.query_bits);
    let (level_sum, dims) = q.planes.seg_sums[0];
    let mut c = EstimateParams {
        offset: probe.offset,
        g: estimate_weight(view.metric),
        lo2: 2.0 * q.planes.lo,
        d2: 2.0 * q.planes.delta,
        all: q.planes.lo * dims as f32 + q.planes.delta * level_sum as f32,
        threshold: f32::NEG_INFINITY,
    };
    out.est.resize(CHUNK_ROWS, 0.0);
    out.mask.resize(CHUNK_ROWS / BLOCK, 0);
    let survivors = out.survivors;
    for (r0, r1) in block_chunks(start, end) {
        // Blocked codes of rows r0..r1 (block-aligned) are contiguous.
        let codes = &view.codes[r0 * view.words..r1 * view.words];
        let nb = (r1 - r0) / BLOCK;
        let f1 = r1.min(n);
        c.threshold = survivors.threshold();
        (view.kernels.estimate_scan)(
            codes,
            view.words,
            &q.planes.planes,
            bits,
            &view.scale[r0..f1],
            &view.bias[r0..f1],
            &c,
            &mut out.est[..nb * BLOCK],
            &mut out.mask[..nb],
        );
        // Only rows above the chunk's starting threshold have their bit set;
        // most blocks have none once the survivors fill up.
        for (b, &m) in out.mask[..nb].iter().enumerate() {
            let mut m = m;
            while m != 0 {
                let i = b * BLOCK + m.trailing_zeros() as usize;
                m &= m - 1;
                let row = r0 + i;
                let e = out.est[i];
                if (start..end).contains(&row) && e > survivors.threshold() {
                    survivors.push(e, row as u32);
                }
            }
        }
    }
}

/// The scan with voting: per-segment counts from the plane kernel, turned
/// into per-segment partial estimates that feed the votes.
fn scan_voting(
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
    out.block.resize(2 * nseg * CHUNK_ROWS, 0);
    for (r0, r1) in block_chunks(start, end) {
        let codes = &view.codes[r0 * view.words..r1 * view.words];
        let block = &mut out.block[..2 * nseg * (r1 - r0)];
        (view.kernels.plane_scan)(codes, view.words, &q.planes.planes, bits, seg_words, block);
        let (b0, b1) = (r0.max(start), r1.min(end));
        let block = &block[2 * nseg * (b0 - r0)..2 * nseg * (b1 - r0)];
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
