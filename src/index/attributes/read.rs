//! Reading the `ATTR` section: the header decoded and validated at open
//! ([`Attributes`]), and typed views of its columns over the mapped bytes.
use super::layout::{ColumnHeader, Header, Span};
use super::{AttrType, AttributesInput, ColumnInput};

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
        let set = crate::math::bits::set_bits;
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
            let ones = crate::math::bits::count_ones(bits) as u64;
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
