//! Row attributes (format version 3): the `ATTR` section, a columnar,
//! write-once store that filters read (`core::filter`). Every column is
//! stored as an index, in the file's row numbering (rows sorted by
//! partition), so a predicate turns into row ranges without a scan:
//!
//! - **numeric** columns (`int`, `float`, `bool`): the values sorted
//!   (`keys`, i64 or f64; bools as 0/1) and the row of each (`rows`, u32):
//!   `=`, `<`, `in` are binary searches, their rows a slice of `rows`;
//! - **categorical** columns (`str`, `tags`): a sorted string dictionary
//!   and, per dictionary entry, the rows holding it (`starts` into `rows`):
//!   a posting list per value. A `tags` row holds any number of values.
//!
//! Layout of the section (bytes): `u64` length `J` of a JSON header, the
//! header (`{"n", "columns": [{"name", "type", "dict"?, "keys"?,
//! "starts"?, "rows"}]}`, each array an `[offset, count]` into the section),
//! zero padding to 8, then the arrays, each 8-aligned. The header and every
//! array are validated at open ([`Attributes::decode`]), so a filter never
//! indexes out of bounds.
use serde::{Deserialize, Serialize};

/// The type of an attribute column, as `engine.info()` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttrType {
    /// 64-bit integers.
    Int,
    /// Floating point numbers (stored as f64).
    Float,
    /// Booleans.
    Bool,
    /// One string per row.
    Str,
    /// Any number of strings per row.
    Tags,
}

impl AttrType {
    /// The name users write and `info()` shows.
    pub fn name(self) -> &'static str {
        match self {
            AttrType::Int => "int",
            AttrType::Float => "float",
            AttrType::Bool => "bool",
            AttrType::Str => "str",
            AttrType::Tags => "tags",
        }
    }
}

/// One column as a build receives it, in input row order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnInput {
    /// One integer per row.
    Int(Vec<i64>),
    /// One finite number per row.
    Float(Vec<f64>),
    /// One boolean per row.
    Bool(Vec<bool>),
    /// One string per row: `codes[r]` indexes `dict`.
    Str { dict: Vec<String>, codes: Vec<u32> },
    /// Strings per row: row `r` holds `codes[offsets[r]..offsets[r + 1]]`.
    Tags {
        dict: Vec<String>,
        offsets: Vec<u64>,
        codes: Vec<u32>,
    },
}

/// Named columns of `n` rows each, in input row order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttributesInput {
    /// `(name, column)`, names unique.
    pub columns: Vec<(String, ColumnInput)>,
}

impl ColumnInput {
    /// The column's type.
    pub fn ty(&self) -> AttrType {
        match self {
            ColumnInput::Int(_) => AttrType::Int,
            ColumnInput::Float(_) => AttrType::Float,
            ColumnInput::Bool(_) => AttrType::Bool,
            ColumnInput::Str { .. } => AttrType::Str,
            ColumnInput::Tags { .. } => AttrType::Tags,
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        match self {
            ColumnInput::Int(v) => v.len(),
            ColumnInput::Float(v) => v.len(),
            ColumnInput::Bool(v) => v.len(),
            ColumnInput::Str { codes, .. } => codes.len(),
            ColumnInput::Tags { offsets, .. } => offsets.len().saturating_sub(1),
        }
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty column of type `ty`.
    pub fn empty(ty: AttrType) -> Self {
        match ty {
            AttrType::Int => ColumnInput::Int(vec![]),
            AttrType::Float => ColumnInput::Float(vec![]),
            AttrType::Bool => ColumnInput::Bool(vec![]),
            AttrType::Str => ColumnInput::Str {
                dict: vec![],
                codes: vec![],
            },
            AttrType::Tags => ColumnInput::Tags {
                dict: vec![],
                offsets: vec![0],
                codes: vec![],
            },
        }
    }

    /// Rows `rows` of this column, in that order.
    pub fn select(&self, rows: &[usize]) -> Self {
        match self {
            ColumnInput::Int(v) => ColumnInput::Int(rows.iter().map(|&r| v[r]).collect()),
            ColumnInput::Float(v) => ColumnInput::Float(rows.iter().map(|&r| v[r]).collect()),
            ColumnInput::Bool(v) => ColumnInput::Bool(rows.iter().map(|&r| v[r]).collect()),
            ColumnInput::Str { dict, codes } => ColumnInput::Str {
                dict: dict.clone(),
                codes: rows.iter().map(|&r| codes[r]).collect(),
            },
            ColumnInput::Tags {
                dict,
                offsets,
                codes,
            } => {
                let mut out = vec![0u64];
                let mut picked = Vec::new();
                for &r in rows {
                    picked.extend_from_slice(&codes[offsets[r] as usize..offsets[r + 1] as usize]);
                    out.push(picked.len() as u64);
                }
                ColumnInput::Tags {
                    dict: dict.clone(),
                    offsets: out,
                    codes: picked,
                }
            }
        }
    }

    /// Appends `other`'s rows. An `int` column joins a `float` one as
    /// floats; other types must match (the error says what differs).
    pub fn extend(&mut self, other: &ColumnInput) -> Result<(), String> {
        // Codes of `other`'s dictionary in `dict`, which grows as needed.
        fn remap(dict: &mut Vec<String>, other: &[String]) -> Vec<u32> {
            let mut at: std::collections::HashMap<String, u32> = dict
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i as u32))
                .collect();
            other
                .iter()
                .map(|s| {
                    *at.entry(s.clone()).or_insert_with(|| {
                        dict.push(s.clone());
                        (dict.len() - 1) as u32
                    })
                })
                .collect()
        }
        match (self, other) {
            (ColumnInput::Int(a), ColumnInput::Int(b)) => a.extend_from_slice(b),
            (ColumnInput::Float(a), ColumnInput::Float(b)) => a.extend_from_slice(b),
            (ColumnInput::Float(a), ColumnInput::Int(b)) => a.extend(b.iter().map(|&x| x as f64)),
            (ColumnInput::Bool(a), ColumnInput::Bool(b)) => a.extend_from_slice(b),
            (
                ColumnInput::Str { dict, codes },
                ColumnInput::Str {
                    dict: d2,
                    codes: c2,
                },
            ) => {
                let map = remap(dict, d2);
                codes.extend(c2.iter().map(|&c| map[c as usize]));
            }
            (
                ColumnInput::Tags {
                    dict,
                    offsets,
                    codes,
                },
                ColumnInput::Tags {
                    dict: d2,
                    offsets: o2,
                    codes: c2,
                },
            ) => {
                let map = remap(dict, d2);
                let base = codes.len() as u64;
                codes.extend(c2.iter().map(|&c| map[c as usize]));
                offsets.extend(o2.iter().skip(1).map(|&o| o + base));
            }
            (a, b) => {
                return Err(format!(
                    "is {} here but {} in the collection",
                    b.ty().name(),
                    a.ty().name()
                ))
            }
        }
        Ok(())
    }
}

impl AttributesInput {
    /// `(name, type)` of every column.
    pub fn schema(&self) -> Vec<(String, AttrType)> {
        self.columns
            .iter()
            .map(|(n, c)| (n.clone(), c.ty()))
            .collect()
    }

    /// Empty columns of `schema`.
    pub fn empty(schema: &[(String, AttrType)]) -> Self {
        AttributesInput {
            columns: schema
                .iter()
                .map(|(n, t)| (n.clone(), ColumnInput::empty(*t)))
                .collect(),
        }
    }

    /// Rows `rows` of every column, in that order.
    pub fn select(&self, rows: &[usize]) -> Self {
        AttributesInput {
            columns: self
                .columns
                .iter()
                .map(|(n, c)| (n.clone(), c.select(rows)))
                .collect(),
        }
    }

    /// Appends `other`'s rows: the same column names (in any order), types
    /// as [`ColumnInput::extend`] allows.
    pub fn extend(&mut self, other: &AttributesInput) -> Result<(), String> {
        let mine: Vec<&String> = self.columns.iter().map(|(n, _)| n).collect();
        let theirs: Vec<&String> = other.columns.iter().map(|(n, _)| n).collect();
        let missing: Vec<&&String> = mine.iter().filter(|n| !theirs.contains(n)).collect();
        let extra: Vec<&&String> = theirs.iter().filter(|n| !mine.contains(n)).collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(format!(
                "the collection's attributes are {mine:?}; these rows have {theirs:?} (every row needs the same attributes)"
            ));
        }
        for (name, col) in &mut self.columns {
            let Some((_, theirs)) = other.columns.iter().find(|(n, _)| n == name) else {
                continue;
            };
            col.extend(theirs)
                .map_err(|why| format!("attribute {name:?} {why}"))?;
        }
        Ok(())
    }
}

/// `[offset, count]` of one array in the section.
type Span = [u64; 2];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnHeader {
    name: String,
    #[serde(rename = "type")]
    ty: AttrType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    dict: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keys: Option<Span>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    starts: Option<Span>,
    rows: Span,
    /// Values held by many rows: `[lo, hi, offset]`, the run `rows[lo..hi]`
    /// of one value (a key, or a dictionary entry) and, at `offset`, the
    /// same rows as a bitmap of `ceil(n / 64)` words. A filter ORs the
    /// bitmap instead of setting the rows one by one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    dense: Vec<[u64; 3]>,
}

/// A value held by at least this share of the rows (and [`DENSE_MIN_ROWS`])
/// also gets a bitmap: its `n / 8` bytes are no more than its rows' `4`
/// bytes each, and a filter on it then costs `n / 64` word ORs instead of
/// a bit set per row (30k rows of debian-minilm-384: ~40 us of a 118 us
/// query at selectivity 0.5).
pub const DENSE_SHARE: usize = 32;

/// Values held by fewer rows never get a bitmap.
pub const DENSE_MIN_ROWS: usize = 2048;

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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    n: u64,
    columns: Vec<ColumnHeader>,
}

/// Names users may not give a column: `id` filters on the row ids.
pub const RESERVED: &[&str] = &["id"];

/// Checks names, lengths, codes and values; the error names the column.
pub fn check_input(a: &AttributesInput, n: usize) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for (name, col) in &a.columns {
        if name.is_empty() || name.starts_with('$') || RESERVED.contains(&name.as_str()) {
            return Err(format!(
                "attribute name {name:?} is not allowed (empty, starting with $, or reserved)"
            ));
        }
        if !names.insert(name) {
            return Err(format!("attribute {name:?} is given twice"));
        }
        let bad = |what: String| Err(format!("attribute {name:?}: {what}"));
        let rows = match col {
            ColumnInput::Int(v) => v.len(),
            ColumnInput::Bool(v) => v.len(),
            ColumnInput::Float(v) => {
                if let Some(r) = v.iter().position(|x| !x.is_finite()) {
                    return bad(format!("value at row {r} is not finite"));
                }
                v.len()
            }
            ColumnInput::Str { dict, codes } => {
                if codes.iter().any(|&c| c as usize >= dict.len()) {
                    return bad("a code is outside the dictionary".into());
                }
                codes.len()
            }
            ColumnInput::Tags {
                dict,
                offsets,
                codes,
            } => {
                let ok = offsets.first() == Some(&0)
                    && offsets.last() == Some(&(codes.len() as u64))
                    && offsets.windows(2).all(|w| w[0] <= w[1]);
                if !ok {
                    return bad("tag offsets do not run from 0 to the number of tags".into());
                }
                if codes.iter().any(|&c| c as usize >= dict.len()) {
                    return bad("a code is outside the dictionary".into());
                }
                offsets.len() - 1
            }
        };
        if rows != n {
            return bad(format!("{rows} values for {n} vectors"));
        }
    }
    Ok(())
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

/// The keys of a numeric column.
#[derive(Debug, Clone, Copy)]
pub enum Keys<'a> {
    /// `int` and `bool` (0/1) columns.
    Int(&'a [i64]),
    /// `float` columns.
    Float(&'a [f64]),
}

/// One column of a mapped file, validated.
#[derive(Debug, Clone, Copy)]
pub enum Column<'a> {
    /// Sorted keys and the stored row of each.
    Numeric { keys: Keys<'a>, rows: Rows<'a> },
    /// A sorted dictionary and each entry's rows `rows[starts[c]..starts[c + 1]]`.
    Categorical {
        dict: &'a [String],
        starts: &'a [u64],
        rows: Rows<'a>,
    },
}

/// A column's stored rows (`rows`, in key or posting order) and the
/// bitmaps of its dense runs.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    /// Stored row numbers.
    pub rows: &'a [u32],
    bytes: &'a [u8],
    dense: &'a [[u64; 3]],
    words: usize,
}

impl<'a> Rows<'a> {
    /// Sets in `words` (a bitmap over stored rows) the bits of rows
    /// `rows[lo..hi]`: dense runs inside the range by ORing their bitmaps,
    /// the rest row by row.
    pub fn set_into(&self, lo: usize, hi: usize, words: &mut [u64]) {
        let set = |words: &mut [u64], rows: &[u32]| {
            for &r in rows {
                if let Some(w) = words.get_mut(r as usize / 64) {
                    *w |= 1u64 << (r % 64);
                }
            }
        };
        let mut at = lo;
        for &[a, b, offset] in self.dense {
            let (a, b) = (a as usize, b as usize);
            if a < at || b > hi {
                continue;
            }
            // Validated at decode: the bitmap lies in the section.
            let Ok(bits) = slice::<u64>(self.bytes, [offset, self.words as u64], 8) else {
                continue;
            };
            set(words, &self.rows[at..a]);
            for (w, x) in words.iter_mut().zip(bits) {
                *w |= x;
            }
            at = b;
        }
        if at < hi {
            set(words, &self.rows[at..hi]);
        }
    }
}

/// The decoded header of an `ATTR` section (the arrays stay in the map).
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    n: u64,
    columns: Vec<ColumnHeader>,
}

impl Attributes {
    /// Parses and validates `bytes` (the section payload, 64-aligned in the
    /// map) for a file of `n` rows: every span inside the section and
    /// aligned, shapes that fit the type, stored rows below `n`, keys
    /// sorted, posting starts non-decreasing, the dictionary sorted.
    pub fn decode(bytes: &[u8], n: u64) -> Result<Self, String> {
        let what = "attribute section";
        if bytes.len() < 8 {
            return Err(format!("{what} is {} bytes, too short", bytes.len()));
        }
        let j = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default()) as usize;
        let json = bytes
            .get(8..8usize.saturating_add(j))
            .ok_or_else(|| format!("{what}: header length {j} runs past the section"))?;
        let h: Header = serde_json::from_slice(json)
            .map_err(|e| format!("{what}: header is not valid: {e}"))?;
        if h.n != n {
            return Err(format!("{what} covers {} rows, the file has {n}", h.n));
        }
        let a = Attributes {
            n,
            columns: h.columns,
        };
        let mut names = std::collections::HashSet::new();
        for c in &a.columns {
            if !names.insert(&c.name) {
                return Err(format!("{what}: column {:?} appears twice", c.name));
            }
            a.check_column(bytes, c, n)
                .map_err(|r| format!("{what}: column {:?}: {r}", c.name))?;
        }
        Ok(a)
    }

    fn check_column(&self, bytes: &[u8], c: &ColumnHeader, n: u64) -> Result<(), String> {
        let rows: &[u32] = slice(bytes, c.rows, 4)?;
        if rows.iter().any(|&r| u64::from(r) >= n) {
            return Err("a stored row is out of range".into());
        }
        // Dense runs: in order, inside the rows, and each bitmap exactly
        // its run's rows (as many bits, every one of them set).
        let mut end = 0;
        for &[lo, hi, offset] in &c.dense {
            if lo < end || lo >= hi || hi > rows.len() as u64 {
                return Err("a dense run is out of order or out of range".into());
            }
            end = hi;
            let bits: &[u64] = slice(bytes, [offset, n.div_ceil(64)], 8)?;
            let ones: u64 = bits.iter().map(|w| u64::from(w.count_ones())).sum();
            let run = &rows[lo as usize..hi as usize];
            let all = run
                .iter()
                .all(|&r| bits[r as usize / 64] >> (r % 64) & 1 == 1);
            if ones != hi - lo || !all {
                return Err("a dense bitmap differs from its rows".into());
            }
        }
        match c.ty {
            AttrType::Int | AttrType::Bool | AttrType::Float => {
                if !c.dict.is_empty() || c.starts.is_some() {
                    return Err("a numeric column has a dictionary".into());
                }
                let keys = c.keys.ok_or("keys are missing")?;
                if keys[1] != n || c.rows[1] != n {
                    return Err("keys or rows do not cover every row".into());
                }
                let sorted = if c.ty == AttrType::Float {
                    let k: &[f64] = slice(bytes, keys, 8)?;
                    k.iter().all(|x| x.is_finite()) && k.windows(2).all(|w| w[0] <= w[1])
                } else {
                    let k: &[i64] = slice(bytes, keys, 8)?;
                    let bools = c.ty != AttrType::Bool || k.iter().all(|&x| x == 0 || x == 1);
                    bools && k.windows(2).all(|w| w[0] <= w[1])
                };
                if !sorted {
                    return Err("keys are not sorted".into());
                }
            }
            AttrType::Str | AttrType::Tags => {
                if c.keys.is_some() {
                    return Err("a categorical column has keys".into());
                }
                if !c.dict.windows(2).all(|w| w[0] < w[1]) {
                    return Err("the dictionary is not sorted".into());
                }
                let starts: &[u64] = slice(bytes, c.starts.ok_or("starts are missing")?, 8)?;
                let ok = starts.len() == c.dict.len() + 1
                    && starts.first() == Some(&0)
                    && starts.last() == Some(&c.rows[1])
                    && starts.windows(2).all(|w| w[0] <= w[1]);
                if !ok || (c.ty == AttrType::Str && c.rows[1] != n) {
                    return Err("postings do not fit the dictionary".into());
                }
            }
        }
        Ok(())
    }

    /// Whether the file has no attributes.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// `(name, type)` of every column, in stored order.
    pub fn schema(&self) -> Vec<(String, AttrType)> {
        self.columns
            .iter()
            .map(|c| (c.name.clone(), c.ty))
            .collect()
    }

    /// Every column's values for every stored row, in stored order (a
    /// live collection rewrites segments from them).
    pub fn to_input(&self, bytes: &[u8], n: usize) -> AttributesInput {
        let mut out = AttributesInput::default();
        for c in &self.columns {
            let Some(col) = self.column(bytes, &c.name) else {
                continue;
            };
            let input = match (c.ty, col) {
                (ty, Column::Numeric { keys, rows }) => {
                    let mut ints = vec![0i64; n];
                    let mut floats = vec![0f64; n];
                    for (i, &r) in rows.rows.iter().enumerate() {
                        match keys {
                            Keys::Int(k) => ints[r as usize] = k[i],
                            Keys::Float(k) => floats[r as usize] = k[i],
                        }
                    }
                    match ty {
                        AttrType::Float => ColumnInput::Float(floats),
                        AttrType::Bool => ColumnInput::Bool(ints.iter().map(|&x| x != 0).collect()),
                        _ => ColumnInput::Int(ints),
                    }
                }
                (AttrType::Str, Column::Categorical { dict, starts, rows }) => {
                    let mut codes = vec![0u32; n];
                    for code in 0..dict.len() {
                        for &r in &rows.rows[starts[code] as usize..starts[code + 1] as usize] {
                            codes[r as usize] = code as u32;
                        }
                    }
                    ColumnInput::Str {
                        dict: dict.to_vec(),
                        codes,
                    }
                }
                (_, Column::Categorical { dict, starts, rows }) => {
                    let mut per_row: Vec<Vec<u32>> = vec![Vec::new(); n];
                    for code in 0..dict.len() {
                        for &r in &rows.rows[starts[code] as usize..starts[code + 1] as usize] {
                            per_row[r as usize].push(code as u32);
                        }
                    }
                    let mut offsets = vec![0u64];
                    let mut codes = Vec::new();
                    for t in per_row {
                        codes.extend(t);
                        offsets.push(codes.len() as u64);
                    }
                    ColumnInput::Tags {
                        dict: dict.to_vec(),
                        offsets,
                        codes,
                    }
                }
            };
            out.columns.push((c.name.clone(), input));
        }
        out
    }

    /// The type of column `name`.
    pub fn type_of(&self, name: &str) -> Option<AttrType> {
        self.columns.iter().find(|c| c.name == name).map(|c| c.ty)
    }

    /// Column `name` over `bytes` (the section the header was decoded from).
    pub fn column<'a>(&'a self, bytes: &'a [u8], name: &str) -> Option<Column<'a>> {
        let c = self.columns.iter().find(|c| c.name == name)?;
        // Validated at decode: these casts succeed.
        let rows = Rows {
            rows: slice(bytes, c.rows, 4).ok()?,
            bytes,
            dense: &c.dense,
            words: (self.n as usize).div_ceil(64),
        };
        Some(match c.ty {
            AttrType::Float => Column::Numeric {
                keys: Keys::Float(slice(bytes, c.keys?, 8).ok()?),
                rows,
            },
            AttrType::Int | AttrType::Bool => Column::Numeric {
                keys: Keys::Int(slice(bytes, c.keys?, 8).ok()?),
                rows,
            },
            AttrType::Str | AttrType::Tags => Column::Categorical {
                dict: &c.dict,
                starts: slice(bytes, c.starts?, 8).ok()?,
                rows,
            },
        })
    }
}

/// The `[offset, count]` array of `T` in `bytes`, checked.
fn slice<T: bytemuck::Pod>(bytes: &[u8], span: Span, align: usize) -> Result<&[T], String> {
    let size = std::mem::size_of::<T>() as u64;
    let [at, count] = span;
    let end = count
        .checked_mul(size)
        .and_then(|len| at.checked_add(len))
        .filter(|&end| end <= bytes.len() as u64)
        .ok_or_else(|| format!("array [{at}, {count}] runs past the section"))?;
    if !(at as usize).is_multiple_of(align) {
        return Err(format!("array at {at} is not {align}-byte aligned"));
    }
    bytemuck::try_cast_slice(&bytes[at as usize..end as usize])
        .map_err(|e| format!("array at {at}: {e}"))
}
