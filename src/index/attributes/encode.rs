//! Writing the `ATTR` section: every column sorted into keys or postings
//! in the file's row numbering, with bitmaps for its dense runs.
use super::layout::{ColumnHeader, Header, Span};
use super::{check_input, AttrType, AttributesInput, ColumnInput, DENSE_MIN_ROWS, DENSE_SHARE};

/// Bitmaps for the runs `groups` (`(lo, hi)` into `rows`) holding at
/// least `n / DENSE_SHARE` (and [`DENSE_MIN_ROWS`]) rows, appended to
/// `blob`: their `[lo, hi, offset]`.
fn dense_runs(
    groups: &[(usize, usize)],
    rows: &[u32],
    n: usize,
    blob: &mut Vec<u8>,
) -> Vec<[u64; 3]> {
    let min = (n / DENSE_SHARE).max(DENSE_MIN_ROWS);
    let mut out = Vec::new();
    for &(lo, hi) in groups.iter().filter(|(lo, hi)| hi - lo >= min) {
        let mut words = vec![0u64; n.div_ceil(64)];
        for &r in &rows[lo..hi] {
            words[r as usize / 64] |= 1u64 << (r % 64);
        }
        let [at, _] = push(blob, &words);
        out.push([lo as u64, hi as u64, at]);
    }
    out
}

/// `(lo, hi)` of each run of equal values in sorted `keys`.
fn equal_runs<T: PartialEq>(keys: &[T]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut lo = 0;
    for i in 1..=keys.len() {
        if i == keys.len() || keys[i] != keys[lo] {
            out.push((lo, i));
            lo = i;
        }
    }
    out
}

/// `(lo, hi)` of each dictionary entry's postings.
fn posting_runs(starts: &[u64]) -> Vec<(usize, usize)> {
    starts
        .windows(2)
        .map(|w| (w[0] as usize, w[1] as usize))
        .collect()
}

/// Appends `values` 8-aligned to `blob`; returns its span.
fn push<T: bytemuck::Pod>(blob: &mut Vec<u8>, values: &[T]) -> Span {
    blob.resize(blob.len().div_ceil(8) * 8, 0);
    let at = blob.len() as u64;
    blob.extend_from_slice(bytemuck::cast_slice(values));
    [at, values.len() as u64]
}

/// A dictionary sorted and deduplicated, and each old code's new code.
fn sorted_dict(dict: &[String]) -> (Vec<String>, Vec<u32>) {
    let mut order: Vec<u32> = (0..dict.len() as u32).collect();
    order.sort_by(|&a, &b| dict[a as usize].cmp(&dict[b as usize]));
    let mut out: Vec<String> = Vec::with_capacity(dict.len());
    let mut remap = vec![0u32; dict.len()];
    for &i in &order {
        let s = &dict[i as usize];
        if out.last() != Some(s) {
            out.push(s.clone());
        }
        remap[i as usize] = (out.len() - 1) as u32;
    }
    (out, remap)
}

/// Postings of `pairs` (`(code, stored row)`): rows grouped by code,
/// ascending within each, and where each code's rows start.
fn postings(mut pairs: Vec<(u32, u32)>, codes: usize) -> (Vec<u64>, Vec<u32>) {
    pairs.sort_unstable();
    let mut starts = vec![0u64; codes + 1];
    for &(c, _) in &pairs {
        starts[c as usize + 1] += 1;
    }
    for i in 0..codes {
        starts[i + 1] += starts[i];
    }
    (starts, pairs.into_iter().map(|(_, r)| r).collect())
}

/// Encodes `a` for a file whose stored row `s` is input row `order[s]`.
pub fn encode(a: &AttributesInput, order: &[u32]) -> Result<Vec<u8>, String> {
    let n = order.len();
    check_input(a, n)?;
    // `stored[i]` = stored row of input row `i`.
    let mut stored = vec![0u32; n];
    for (s, &i) in order.iter().enumerate() {
        stored[i as usize] = s as u32;
    }
    let mut blob = Vec::new();
    let mut columns = Vec::with_capacity(a.columns.len());
    for (name, col) in &a.columns {
        let header = |ty, dict, keys, starts, rows, dense| ColumnHeader {
            name: name.clone(),
            ty,
            dict,
            keys,
            starts,
            rows,
            dense,
        };
        columns.push(match col {
            ColumnInput::Int(_) | ColumnInput::Bool(_) => {
                let (ty, v): (AttrType, Vec<i64>) = match col {
                    ColumnInput::Bool(b) => {
                        (AttrType::Bool, b.iter().map(|&b| i64::from(b)).collect())
                    }
                    ColumnInput::Int(v) => (AttrType::Int, v.clone()),
                    _ => (AttrType::Int, Vec::new()),
                };
                let (keys, rows) = sorted_by(&v, &stored, |a, b| a.cmp(b));
                let dense = dense_runs(&equal_runs(&keys), &rows, n, &mut blob);
                let (k, r) = (push(&mut blob, &keys), push(&mut blob, &rows));
                header(ty, vec![], Some(k), None, r, dense)
            }
            ColumnInput::Float(v) => {
                // -0.0 and 0.0 compare equal to every query; one key each.
                let v: Vec<f64> = v.iter().map(|&x| x + 0.0).collect();
                let (keys, rows) = sorted_by(&v, &stored, |a, b| a.total_cmp(b));
                let dense = dense_runs(&equal_runs(&keys), &rows, n, &mut blob);
                let (k, r) = (push(&mut blob, &keys), push(&mut blob, &rows));
                header(AttrType::Float, vec![], Some(k), None, r, dense)
            }
            ColumnInput::Str { dict, codes } => {
                let (dict, remap) = sorted_dict(dict);
                let pairs = codes
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| (remap[c as usize], stored[i]))
                    .collect();
                let (starts, rows) = postings(pairs, dict.len());
                let dense = dense_runs(&posting_runs(&starts), &rows, n, &mut blob);
                let (s, r) = (push(&mut blob, &starts), push(&mut blob, &rows));
                header(AttrType::Str, dict, None, Some(s), r, dense)
            }
            ColumnInput::Tags {
                dict,
                offsets,
                codes,
            } => {
                let (dict, remap) = sorted_dict(dict);
                let mut pairs = Vec::with_capacity(codes.len());
                for (i, w) in offsets.windows(2).enumerate() {
                    for &c in &codes[w[0] as usize..w[1] as usize] {
                        pairs.push((remap[c as usize], stored[i]));
                    }
                }
                // A tag given twice on one row counts once.
                pairs.sort_unstable();
                pairs.dedup();
                let (starts, rows) = postings(pairs, dict.len());
                let dense = dense_runs(&posting_runs(&starts), &rows, n, &mut blob);
                let (s, r) = (push(&mut blob, &starts), push(&mut blob, &rows));
                header(AttrType::Tags, dict, None, Some(s), r, dense)
            }
        });
    }
    let header = Header {
        n: n as u64,
        columns,
    };
    // Spans are relative to the blob; shift them past the header. Shifting
    // lengthens the numbers, so grow the header's slot until it fits.
    let mut base = 8;
    loop {
        let shifted = Header {
            n: header.n,
            columns: header
                .columns
                .iter()
                .cloned()
                .map(|mut c| {
                    let shift = |s: Span| [s[0] + base as u64, s[1]];
                    c.keys = c.keys.map(shift);
                    c.starts = c.starts.map(shift);
                    c.rows = shift(c.rows);
                    for d in &mut c.dense {
                        d[2] += base as u64;
                    }
                    c
                })
                .collect(),
        };
        let mut json = serde_json::to_vec(&shifted).map_err(|e| e.to_string())?;
        let need = (8 + json.len()).div_ceil(8) * 8;
        if need > base {
            base = need;
            continue;
        }
        json.resize(base - 8, b' ');
        let mut out = Vec::with_capacity(base + blob.len());
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&blob);
        return Ok(out);
    }
}

/// Values sorted (ties by stored row) and the stored row of each.
fn sorted_by<T: Copy>(
    v: &[T],
    stored: &[u32],
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> (Vec<T>, Vec<u32>) {
    let mut idx: Vec<u32> = (0..v.len() as u32).collect();
    idx.sort_by(|&a, &b| {
        cmp(&v[a as usize], &v[b as usize]).then(stored[a as usize].cmp(&stored[b as usize]))
    });
    let keys = idx.iter().map(|&i| v[i as usize]).collect();
    let rows = idx.iter().map(|&i| stored[i as usize]).collect();
    (keys, rows)
}
